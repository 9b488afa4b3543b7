"""The headline with its uncertainty: every equally good model, and intervals for each source of error.

The audit's headline is the share of patients whose AUC clears each threshold
(``audit/patient_thresholds.tsv``). Three sources of error stand behind it, and
``audit/headline.tsv`` shows each:

* **the patients** (the cohort is a sample): the binomial interval over patients
  (``ci_low, ci_high``) and, beside it,
* **the models** (each patient's AUC is estimated from finitely many models, and the models
  are shared by all patients): the joint bootstrap over models and patients
  (``ci_low_boot, ci_high_boot``; :meth:`mia_audit.audit.patients.PatientAccumulator.headline_bootstrap`),
  and the share of patients whose *true* AUC clears the threshold, corrected for the
  measurement error by deconvolution (``share_eb`` with ``ci_low_eb, ci_high_eb``;
  :mod:`mia_audit.audit.deconvolution`);
* **the choice among equally good models**: the model selection rarely separates its best
  candidates (:func:`mia_audit.train.selection.tied`), and each tied candidate is audited with
  the full target-model design (:func:`mia_audit.audit.candidate.audit_candidate`); ``headline.tsv`` has one row per
  threshold and candidate and the range across the tied candidates (``range_*``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mia_audit.audit import deconvolution, patients

#: columns of ``audit/headline.tsv`` that describe the candidate (then every threshold column)
CANDIDATE_COLUMNS = ["candidate", "chosen", "tied", "val_loss_vs_chosen", "val_loss_vs_chosen_se", "test_auc"]
#: columns of the range across the tied candidates (per threshold)
RANGE_COLUMNS = ["range_count_low", "range_count_high", "range_share_low", "range_share_high", "range_candidates"]


def threshold_rows(
    patient_table: pd.DataFrame,
    thresholds,
    boot: np.ndarray | None,
    n_boot: int,
    seed: int,
) -> pd.DataFrame:
    """``patient_thresholds.tsv`` of one audited model set: :func:`mia_audit.audit.patients.threshold_table`
    with the joint bootstrap replicates ``boot`` and the deconvolved shares
    (:func:`mia_audit.audit.deconvolution.deconvolved_shares`, ``n_boot`` patient-bootstrap
    replicates) where the patient table has ``auc_bc`` and ``max_se``."""
    eb = None
    if "max_se" in patient_table and patient_table["max_se"].notna().any():
        eb = deconvolution.deconvolved_shares(
            patient_table["auc_bc"], patient_table["max_se"], thresholds, n_boot=n_boot, seed=seed
        )
    return patients.threshold_table(patient_table, thresholds, boot=boot, deconvolved=eb)


def headline_table(parts: list[tuple[dict, pd.DataFrame]]) -> pd.DataFrame:
    """``audit/headline.tsv``: one row per threshold and candidate, and the range across the tied ones.

    ``parts``: (candidate description, its ``patient_thresholds.tsv``) for each audited
    candidate, the chosen one first; a description has the :data:`CANDIDATE_COLUMNS` (NaN where
    unknown). Every threshold column follows; ``range_count_low/high``, ``range_share_low/high``
    are the smallest and largest count and share over the tied candidates at that threshold and
    ``range_candidates`` how many were audited.
    """
    rows = []
    for desc, table in parts:
        t = table.copy()
        for i, col in enumerate(CANDIDATE_COLUMNS):
            t.insert(i, col, desc.get(col, np.nan))
        rows.append(t)
    out = pd.concat(rows, ignore_index=True)
    tied = out[out["tied"].astype(bool)]
    rng = tied.groupby("threshold").agg(
        range_count_low=("count", "min"),
        range_count_high=("count", "max"),
        range_share_low=("share", "min"),
        range_share_high=("share", "max"),
        range_candidates=("candidate", "nunique"),
    )
    out = out.join(rng, on="threshold")
    order = {c: i for i, c in enumerate(dict.fromkeys(out["candidate"]))}
    return out.sort_values(["threshold", "candidate"], key=lambda s: s.map(order) if s.name == "candidate" else s)


def candidate_description(name: str, chosen: bool, selection_table: pd.DataFrame | None, test_auc: float) -> dict:
    """The :data:`CANDIDATE_COLUMNS` of one candidate from the selection table (a row per
    candidate; None for an experiment without selection: ``tied`` True)."""
    row = {"candidate": name, "chosen": chosen, "tied": True, "test_auc": test_auc}
    if selection_table is not None:
        sel = selection_table.set_index(selection_table["candidate"].astype(str))
        if name in sel.index:
            r = sel.loc[name]
            row.update(
                tied=bool(r.get("tied", chosen)),
                val_loss_vs_chosen=float(r["val_loss_vs_chosen"]),
                val_loss_vs_chosen_se=float(r["val_loss_vs_chosen_se"]),
            )
    return row
