"""The DP guarantee in the audit: each record's and patient's AUC bound, and violations.

An (ε, δ)-DP training run bounds the AUC of *any* membership-inference attack on one
privacy unit by ``max_auc_bound(ε, δ) = 1 − (1 − δ)² / (1 + e^ε)``
(:func:`mia_audit.dp.max_auc_bound`). Under record-level DP a patient with k records is
protected only as a group: (kε, k e^{(k−1)ε} δ) (:func:`mia_audit.dp.group_privacy`); under
patient-level DP the unit bound holds for the patient and for each of their records.
A record or patient whose measured AUC exceeds its bound beyond sampling error
(AUC − 1.96·SE > bound, :func:`mia_audit.dp.flag_violations`) is a violation: either the
training or the accounting is broken, or the estimate is off.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from . import dp


def spec_from_metrics(metrics: pd.DataFrame) -> dict | None:
    """The guarantee every model of an experiment meets, from ``models/metrics.tsv``.

    Returns ``{"epsilon": max_m ε_m, "delta": max_m δ_m, "level": level}`` (the bound is
    increasing in both, so the largest is the guarantee that holds for all models), or
    None when the table has no ``dp_epsilon`` column (a non-DP experiment).
    """
    if "dp_epsilon" not in metrics:
        return None
    for col in ("dp_delta", "dp_level"):
        if col not in metrics:
            raise KeyError(f"model metrics have dp_epsilon but lack column {col!r}")
    levels = metrics["dp_level"].astype(str).unique()
    if len(levels) != 1:
        raise ValueError(f"model metrics mix DP levels {sorted(levels)}; expected one per experiment")
    eps = pd.to_numeric(metrics["dp_epsilon"], errors="coerce").astype(float)
    return {"epsilon": float(eps.max()), "delta": float(metrics["dp_delta"].astype(float).max()), "level": levels[0]}


def add_dp_bounds(
    record_risk: pd.DataFrame, patient_risk: pd.DataFrame, spec: dict, z: float = 1.96
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Add ``dp_bound`` and ``dp_violation`` to the record and patient risk tables.

    ``spec``: ``{"epsilon", "delta", "level"}`` with the *achieved* ε (see
    :func:`spec_from_metrics`). Record level: a record's bound is max_auc_bound(ε, δ); a
    patient's is the group bound over their k = ``n_records`` pool records
    (:func:`mia_audit.dp.patient_bounds` with level "record"). Patient level: the unit bound
    for records and patients alike. ε = inf gives bound 1 (nothing is flagged).
    Violation: AUC − z·SE > bound. Returns new tables; the inputs are not modified.
    """
    for name, df, cols in (
        ("record risk", record_risk, ("auc", "se")),
        ("patient risk", patient_risk, ("auc", "se", "n_records")),
    ):
        for c in cols:
            if c not in df:
                raise KeyError(f"{name} table lacks column {c!r}")
    eps, delta, level = float(spec["epsilon"]), float(spec["delta"]), spec["level"]
    if level not in ("record", "patient"):
        raise ValueError(f"dp level must be 'record' or 'patient', got {level!r}")
    unit = 1.0 if math.isinf(eps) else dp.max_auc_bound(eps, delta)
    rec = record_risk.copy()
    rec["dp_bound"] = np.full(len(rec), unit, dtype=float)
    rec["dp_violation"] = dp.flag_violations(rec["auc"], rec["se"], rec["dp_bound"], z)
    pat = patient_risk.copy()
    k = pat["n_records"].to_numpy()
    if math.isinf(eps):
        pat["dp_bound"] = np.ones(len(pat))
    else:
        pat["dp_bound"] = dp.patient_bounds(eps, delta, np.maximum(k, 1), level)
    pat["dp_violation"] = dp.flag_violations(pat["auc"], pat["se"], pat["dp_bound"], z)
    return rec, pat


def utility_row(
    experiment: str, level, epsilon, metrics: pd.DataFrame, records: pd.DataFrame, patients: pd.DataFrame
) -> dict:
    """One row of the utility-vs-privacy table for one experiment."""
    test = metrics["test_auc"].astype(float)
    dp = "dp_epsilon" in metrics
    row = {
        "experiment": experiment,
        "level": level if dp else "none",
        "epsilon_target": "none" if epsilon is None else str(epsilon),
        "epsilon_achieved_max": float(metrics["dp_epsilon"].astype(float).max()) if dp else math.inf,
        "delta_max": float(metrics["dp_delta"].max()) if dp else float("nan"),
        "noise_multiplier": float(metrics["dp_noise_multiplier"].iloc[0]) if dp else 0.0,
        "sample_rate": float(metrics["dp_sample_rate"].iloc[0]) if dp else float("nan"),
        "steps": int(metrics["dp_steps"].iloc[0]) if dp else -1,
        "n_models": len(metrics),
        "test_auc_median": float(test.median()),
        "test_auc_q25": float(test.quantile(0.25)),
        "test_auc_q75": float(test.quantile(0.75)),
        "patients": len(patients),
        "patient_auc_median": float(patients["auc"].median()),
        "patients_auc_ge_0.9": int((patients["auc"] >= 0.9).sum()),
        "record_violations": int(records["dp_violation"].sum()) if "dp_violation" in records else 0,
        "patient_violations": int(patients["dp_violation"].sum()) if "dp_violation" in patients else 0,
    }
    return row
