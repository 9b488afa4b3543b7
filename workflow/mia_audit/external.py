"""Offline RMIA against a target model that was not trained by this workflow.

Input: a table of candidate records (Parquet or CSV/TSV) with columns

* ``record_id``, ``patient_id``;
* ``member``: bool, whether the candidate was in the target's training data (a
  labelled candidate list; used only to evaluate the attack, never to score);
* ``target``: the target model's φ on the candidate (see :mod:`mia_audit.signal`);
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

from . import attacks


def read_candidates(path) -> pd.DataFrame:
    path = str(path)
    df = pd.read_parquet(path) if path.endswith((".parquet", ".pq")) else pd.read_csv(path, sep=None, engine="python")
    need = ["record_id", "patient_id", "member", "target", "reference_1"]
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: candidate table lacks column(s) {missing}; expected {need} (+ optional reference_2)")
    for col in ["target", "reference_1", "reference_2"]:
        if col in df and not np.isfinite(pd.to_numeric(df[col], errors="coerce")).all():
            raise ValueError(f"{path}: column {col!r} must hold finite confidences φ for every candidate")
    if df["record_id"].duplicated().any():
        raise ValueError(f"{path}: record_id values are not unique")
    if df["member"].nunique() != 2:
        raise ValueError(f"{path}: column 'member' must contain both members and non-members")
    return df


def attack_external(df: pd.DataFrame, population_size: int = 500, a: float | None = None, seed: int = 0):
    """Scores (``record_id, patient_id, member, rmia_offline, lira_offline, loss_threshold``),
    per-patient maxima, and the summary table (``attack, auc, tpr_at_fpr_…, n_scored, a``)."""
    refs = [c for c in ("reference_1", "reference_2") if c in df]
    ref_conf = df[refs].to_numpy(dtype=np.float64).T
    ref_member = None
    if all(f"{c}_member" in df for c in refs):
        ref_member = df[[f"{c}_member" for c in refs]].to_numpy(dtype=bool).T
    y = df["member"].to_numpy(dtype=bool)
    target = df["target"].to_numpy(dtype=np.float64)
    pop = min(population_size, len(df) - 1)
    rmia = attacks.rmia_offline_external(target, ref_conf, y, population_size=pop, a=a, seed=seed,
                                         reference_member=ref_member)
    out = df[["record_id", "patient_id", "member"]].copy()
    out["rmia_offline"] = rmia["score"].to_numpy()
    rm = np.zeros_like(ref_conf, dtype=bool) if ref_member is None else ref_member
    if ref_conf.shape[0] >= 2:
        out["lira_offline"] = attacks.lira_offline(target[None], ref_conf, rm)[0]
    out["loss_threshold"] = target
    rows = []
    for name in [c for c in ("rmia_offline", "lira_offline", "loss_threshold") if c in out]:
        s = out[name].to_numpy()
        ok = np.isfinite(s)
        rows.append({"attack": name, **attacks.roc_metrics(s[ok], y[ok]),
                     "a": rmia.attrs["a"] if name == "rmia_offline" else np.nan})
    patients = out.groupby("patient_id").agg(
        member=("member", "max"), n_candidates=("record_id", "size"),
        **{k: (k, "max") for k in ("rmia_offline", "lira_offline", "loss_threshold") if k in out},
    ).reset_index()
    return out, patients, pd.DataFrame(rows)
