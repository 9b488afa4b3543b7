"""Offline RMIA against a target model that was not trained by this workflow.

Input: a table of candidate records (Parquet or CSV/TSV) with columns

* ``record_id``, ``patient_id``;
* ``member``: bool, whether the candidate was in the target's training data (a
  labelled candidate list; used only to evaluate the attack, never to score);
* ``target``: the target model's φ on the candidate (see :mod:`mia_audit.query.membership_signal`);
* ``reference_1`` and optionally ``reference_2``: φ of one or two reference models;
* optionally ``reference_1_member`` / ``reference_2_member``: bool, the candidates each
  reference trained on (needed to tune RMIA's ``a`` on a pair of references).

Output: per-candidate scores (with the offline LiRA and loss baselines for comparison),
per-patient scores (maximum over the patient's candidates) and a summary of AUC and TPR at
low FPR per attack.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mia_audit.audit import attacks
from mia_audit.errors import DataError


def read_candidates(path) -> pd.DataFrame:
    """A candidate table (Parquet, or CSV/TSV with its separator sniffed); ``record_id`` and
    ``patient_id`` read as text (``01`` and ``1`` are two patients, as in the data sets)."""
    from mia_audit.data.adapters.table import read_table

    path = str(path)
    if path.endswith((".parquet", ".pq")):
        df = read_table(path, text_columns=["record_id", "patient_id"])
    else:
        df = pd.read_csv(path, sep=None, engine="python", dtype={"record_id": str, "patient_id": str})
    need = ["record_id", "patient_id", "member", "target", "reference_1"]
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise DataError(f"{path}: candidate table lacks column(s) {missing}; expected {need} (+ optional reference_2)")
    for col in ["target", "reference_1", "reference_2"]:
        if col in df and not np.isfinite(pd.to_numeric(df[col], errors="coerce")).all():
            raise DataError(f"{path}: column {col!r} must hold finite confidences φ for every candidate")
    if df["record_id"].duplicated().any():
        raise DataError(f"{path}: record_id values are not unique")
    if df["member"].nunique() != 2:
        raise DataError(f"{path}: column 'member' must contain both members and non-members")
    return df


def attack_external(df: pd.DataFrame, population_size: int = 500, a: float | None = None, seed: int = 0):
    """Offline attacks on the candidates of :func:`read_candidates`, per candidate and per patient.

    The attacks are those of :data:`mia_audit.audit.attacks.EXTERNAL_ATTACKS` whose references
    the table has (:class:`mia_audit.audit.attacks.Attack`'s ``min_out``: LiRA offline needs two):
    offline RMIA by :func:`mia_audit.audit.attacks.rmia_offline_external` (population of
    ``population_size`` other candidates; ``a`` as documented there), the others by their
    registry scoring function. ``member`` is used for evaluation only.

    Returns the scores (``record_id, patient_id, member`` and one column per attack), the
    per-patient maxima (``patient_id, member, n_candidates`` and the attacks,
    :func:`mia_audit.audit.attacks.patient_maximum`) and the summary (``attack, auc,
    tpr_at_fpr_…, n_scored, n_excluded, a``, :func:`mia_audit.audit.attacks.summary_table`).
    """
    refs = [c for c in ("reference_1", "reference_2") if c in df]
    ref_conf = df[refs].to_numpy(dtype=np.float64).T
    ref_member = None
    if all(f"{c}_member" in df for c in refs):
        ref_member = df[[f"{c}_member" for c in refs]].to_numpy(dtype=bool).T
    y = df["member"].to_numpy(dtype=bool)
    target = df["target"].to_numpy(dtype=np.float64)
    names = [k for k in attacks.EXTERNAL_ATTACKS if attacks.ATTACKS[k].min_out <= len(refs)]
    pop = min(population_size, len(df) - 1)
    rmia = attacks.rmia_offline_external(
        target, ref_conf, y, population_size=pop, a=a, seed=seed, reference_member=ref_member
    )
    rm = np.zeros_like(ref_conf, dtype=bool) if ref_member is None else ref_member
    out = df[["record_id", "patient_id", "member"]].copy()
    for name in names:
        score = attacks.ATTACKS[name].score
        out[name] = rmia["score"].to_numpy() if name == "rmia_offline" else score(target[None], ref_conf, rm)[0]
    patients = attacks.patient_maximum(out, names).rename(columns={"n_records": "n_candidates"})
    summary = attacks.summary_table(out, names).drop(columns=["n_members", "n_nonmembers"])
    summary["a"] = [rmia.attrs["a"] if "a" in attacks.ATTACKS[k].options else np.nan for k in summary["attack"]]
    return out, patients[["patient_id", "member", "n_candidates", *names]], summary
