"""The DP guarantee in the audit: each record's and patient's AUC bound, and violations.

:func:`add_dp_bounds` gives every record and patient the bound of its privacy group (one unit
at patient level, the patient's k records at record level) from the run's privacy profile
(:func:`mia_audit.dp.bounds.profile_auc_bounds`) and from its single (ε, δ) point, tests each
record's AUC against it (:func:`mia_audit.dp.violations.violation_pvalues`), combines a
patient's records by Bonferroni and flags with Holm's adjustment at ``audit.dp_alpha``.
:func:`utility_row` is one row of ``dp_utility.tsv``. Method: docs/methods.md, "Differential
privacy".
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from mia_audit.dp import bounds, violations
from mia_audit.errors import ConfigError

#: Columns added to record_risk and patient_risk of a DP experiment.
DP_AUDIT_COLUMNS = ("dp_group_size", "dp_bound", "dp_bound_single_point", "dp_p", "dp_p_adj", "dp_violation")

_RUN_COLUMNS = ("dp_noise_multiplier", "dp_sample_rate", "dp_steps")


def spec_from_metrics(metrics: pd.DataFrame, path: str = "models/metrics.tsv") -> dict | None:
    """The guarantee every model of an experiment meets, from ``models/metrics.tsv``.

    Returns ``{"epsilon": max_m ε_m, "delta": max_m δ_m, "level": level, "runs": [(σ, q, T),
    …]}`` (the single-point bound is increasing in ε and δ, so the largest is the one that
    holds for all models; ``runs`` are the distinct noise multiplier, sample rate and step
    count, one per experiment as planned), or None when the table has no ``dp_epsilon``
    column (a non-DP experiment).
    """
    if "dp_epsilon" not in metrics:
        return None
    for col in ("dp_delta", "dp_level", *_RUN_COLUMNS):
        if col not in metrics:
            raise KeyError(f"{path}: model metrics have dp_epsilon but lack column {col!r}")
    levels = metrics["dp_level"].astype(str).unique()
    if len(levels) != 1:
        raise ValueError(f"{path}: model metrics mix DP levels {sorted(levels)}; expected one per experiment")
    eps = pd.to_numeric(metrics["dp_epsilon"], errors="coerce").astype(float)
    runs = metrics[list(_RUN_COLUMNS)].astype(float).drop_duplicates()
    if runs.isna().any().any():
        raise ValueError(f"{path}: columns {list(_RUN_COLUMNS)} must be numbers, got NaN")
    return {
        "epsilon": float(eps.max()),
        "delta": float(metrics["dp_delta"].astype(float).max()),
        "level": levels[0],
        "runs": [(float(s), float(q), int(t)) for s, q, t in runs.itertuples(index=False)],
    }


def bounds_for_groups(spec: dict, group_sizes) -> tuple[np.ndarray, np.ndarray]:
    """(profile-based bound, single-point bound) for each group size under ``spec``.

    The profile bound is the largest over the spec's runs (one bound per distinct (σ, q,
    T, k), cached), and never above the single-point bound (both are valid upper bounds).
    ε = inf (no noise) gives 1 for both.
    """
    k = np.asarray(group_sizes, dtype=np.int64)
    eps, delta = float(spec["epsilon"]), float(spec["delta"])
    if math.isinf(eps):
        return np.ones(k.shape), np.ones(k.shape)
    e_k, d_k = bounds.group_privacy(eps, delta, k)
    single = np.minimum(np.asarray(bounds.max_auc_bound(e_k, d_k), dtype=float), 1.0).reshape(k.shape)
    runs = spec.get("runs") or []
    profile = np.ones(k.shape) if not runs else np.zeros(k.shape)
    for sigma, q, steps in runs:
        profile = np.maximum(profile, bounds.profile_auc_bounds(sigma, q, steps, k))
    return np.minimum(profile, single), single


def add_dp_bounds(
    record_risk: pd.DataFrame, patient_risk: pd.DataFrame, spec: dict, alpha: float = 0.05
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Add :data:`DP_AUDIT_COLUMNS` to the record and patient risk tables.

    ``record_risk`` needs ``patient_id, mu_in, mu_out, sd_in, sd_out, n_in, n_out`` (as
    written by the audit), ``patient_risk`` needs ``patient_id, n_records``; ``spec`` comes
    from :func:`spec_from_metrics`. See docs/methods.md for the unit, the bound and the
    test. Returns new tables; the inputs are not modified.
    """
    need_rec = ("patient_id", "mu_in", "mu_out", "sd_in", "sd_out", "n_in", "n_out")
    for name, df, cols in (
        ("record risk", record_risk, need_rec),
        ("patient risk", patient_risk, ("patient_id", "n_records")),
    ):
        for c in cols:
            if c not in df:
                raise KeyError(f"{name} table lacks column {c!r}")
    level = spec["level"]
    if level not in ("record", "patient"):
        raise ValueError(f"dp level must be 'record' or 'patient', got {level!r}")
    if not (0 < float(alpha) < 1):
        raise ConfigError(f"audit.dp_alpha must lie strictly between 0 and 1, got {alpha!r}")

    pat = patient_risk.copy()
    k = np.maximum(pat["n_records"].to_numpy(dtype=np.int64), 1)
    pat["dp_group_size"] = k if level == "record" else np.ones_like(k)
    pat["dp_bound"], pat["dp_bound_single_point"] = bounds_for_groups(spec, pat["dp_group_size"].to_numpy())

    rec = record_risk.copy()
    per_patient = pat.set_index("patient_id")[["dp_group_size", "dp_bound", "dp_bound_single_point"]]
    joined = per_patient.reindex(rec["patient_id"].to_numpy())
    if joined["dp_bound"].isna().any():
        missing = rec.loc[joined["dp_bound"].isna().to_numpy(), "patient_id"].unique()[:3]
        raise ValueError(f"record risk has patients missing from patient risk: {list(missing)}")
    for c in per_patient.columns:
        rec[c] = joined[c].to_numpy()
    rec["dp_p"] = violations.violation_pvalues(
        rec["mu_in"], rec["mu_out"], rec["sd_in"], rec["sd_out"], rec["n_in"], rec["n_out"], rec["dp_bound"]
    )
    rec["dp_p_adj"] = violations.holm_adjust(rec["dp_p"])
    rec["dp_violation"] = (rec["dp_p_adj"] <= alpha).to_numpy()

    defined = rec["dp_p"].notna()
    by_patient = rec.loc[defined].groupby("patient_id")["dp_p"].agg(["min", "size"])
    bonf = np.minimum(1.0, by_patient["min"] * by_patient["size"])
    pat["dp_p"] = bonf.reindex(pat["patient_id"].to_numpy()).to_numpy(dtype=float)
    pat["dp_p_adj"] = violations.holm_adjust(pat["dp_p"])
    pat["dp_violation"] = (pat["dp_p_adj"] <= alpha).to_numpy()
    return rec, pat


def utility_row(
    experiment: str, level, epsilon, metrics: pd.DataFrame, records: pd.DataFrame, patients: pd.DataFrame
) -> dict:
    """One row of the utility-vs-privacy table for one experiment.

    ``dp_bound`` / ``dp_bound_single_point``: the bound for one privacy unit (a record at
    record level, a patient at patient level), from the privacy profile and from the single
    (ε, δ) point; ``dp_bound_patient_median`` / ``_max``: over the patients' bounds (group
    bounds at record level). NaN without DP.
    """
    test = metrics["test_auc"].astype(float)
    spec = spec_from_metrics(metrics)
    is_dp = spec is not None
    unit, unit_single = bounds_for_groups(spec, [1]) if is_dp else (np.array([np.nan]), np.array([np.nan]))
    pat_bounds = patients["dp_bound"].astype(float) if "dp_bound" in patients else pd.Series(dtype=float)
    row = {
        "experiment": experiment,
        "level": level if is_dp else "none",
        "epsilon_target": "none" if epsilon is None else str(epsilon),
        "epsilon_achieved_max": float(metrics["dp_epsilon"].astype(float).max()) if is_dp else math.inf,
        "delta_max": float(metrics["dp_delta"].max()) if is_dp else float("nan"),
        "noise_multiplier": float(metrics["dp_noise_multiplier"].iloc[0]) if is_dp else 0.0,
        "sample_rate": float(metrics["dp_sample_rate"].iloc[0]) if is_dp else float("nan"),
        "steps": int(metrics["dp_steps"].iloc[0]) if is_dp else -1,
        "dp_bound": float(unit[0]),
        "dp_bound_single_point": float(unit_single[0]),
        "dp_bound_patient_median": float(pat_bounds.median()) if len(pat_bounds) else float("nan"),
        "dp_bound_patient_max": float(pat_bounds.max()) if len(pat_bounds) else float("nan"),
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


def summary(records: pd.DataFrame, patients: pd.DataFrame, spec: dict, alpha: float) -> str:
    """A log line: the guarantee, the bounds and the flags of a DP experiment's audit."""
    runs = ", ".join(f"σ = {s:.4g}, q = {q:.4g}, T = {t}" for s, q, t in spec.get("runs") or [])
    pb = patients["dp_bound"]
    return (
        f"DP {spec['level']} level, achieved ε {spec['epsilon']:.4g} at δ {spec['delta']:.3g} ({runs}): "
        f"patient bounds {pb.min():.4g}–{pb.max():.4g} from the privacy profile "
        f"(single point {patients['dp_bound_single_point'].min():.4g}–{patients['dp_bound_single_point'].max():.4g}); "
        f"{int(records['dp_violation'].sum())} records and {int(patients['dp_violation'].sum())} patients "
        f"flagged (Holm-adjusted p ≤ {alpha})"
    )
