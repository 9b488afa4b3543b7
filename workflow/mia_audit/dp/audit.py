"""The DP guarantee in the audit: each record's and patient's AUC bound, and violations.

:func:`add_dp_bounds` gives every record and patient the bound of its privacy group (one unit
at patient level, the patient's k records at record level) from the run's privacy profile
(:func:`mia_audit.dp.bounds.profile_auc_bounds`; attained only when the group's clipped
gradients are aligned and every iterate is released) and from its single (ε, δ) point, tests
each record with two distribution-free tests (:mod:`mia_audit.dp.violations`: the empirical
AUC against the bound, ``dp_p_auc``; the TPR at ``audit.dp_fprs`` against the run's trade-off
curve, ``dp_p_tpr``), combines them and a patient's records by Bonferroni and flags with
Holm's adjustment at ``audit.dp_alpha``, whatever the signals' distribution. ``dp_p_binormal``
(the bi-normal test) is reported and decides nothing. :func:`utility_row` is one row of
``dp_utility.tsv``. Method: docs/methods.md, "Differential privacy".
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from mia_audit.dp import bounds, violations
from mia_audit.errors import ConfigError
from mia_audit.train import accounting

#: Columns added to record_risk and patient_risk of a DP experiment.
DP_AUDIT_COLUMNS = (
    "dp_group_size",
    "dp_bound",
    "dp_bound_single_point",
    "dp_p_auc",
    "dp_p_tpr",
    "dp_p",
    "dp_p_adj",
    "dp_violation",
    "dp_p_binormal",
)

_RUN_COLUMNS = ("dp_noise_multiplier", "dp_sample_rate", "dp_steps")

#: records per call of the p-value functions (bounds their (records × grid) arrays)
_CHUNK = 2048


def spec_from_metrics(metrics: pd.DataFrame, path: str = "models/metrics.tsv") -> dict | None:
    """The guarantee every model of an experiment meets, from ``models/metrics.tsv``.

    Returns ``{"epsilon": max_m ε_m, "delta": max_m δ_m, "level": level, "accountant": …,
    "runs": [(σ, q, T), …]}`` (the single-point bound is increasing in ε and δ, so the largest
    is the one that holds for all models; ``runs`` are the distinct noise multiplier, sample
    rate and step count, one per experiment as planned; ``accountant`` from
    ``dp_accountant``, ``rdp`` for tables written before that column), or None when the table
    has no ``dp_epsilon`` column (a non-DP experiment).
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
    accountants = metrics["dp_accountant"].astype(str).unique() if "dp_accountant" in metrics else ["rdp"]
    return {
        "epsilon": float(eps.max()),
        "delta": float(metrics["dp_delta"].astype(float).max()),
        "level": levels[0],
        "accountant": str(accountants[0]),
        "runs": [(float(s), float(q), int(t)) for s, q, t in runs.itertuples(index=False)],
    }


def _vacuous(spec: dict) -> bool:
    """No noise, or an ε beyond :data:`mia_audit.train.accounting.MAX_EPSILON` (whose PLD would
    not fit in memory): every bound is 1, computed without a PLD."""
    return not float(spec["epsilon"]) <= accounting.MAX_EPSILON


def bounds_for_groups(spec: dict, group_sizes) -> tuple[np.ndarray, np.ndarray]:
    """(profile-based bound, single-point bound) for each group size under ``spec``.

    The profile bound is the largest over the spec's runs (one bound per distinct (σ, q,
    T, k), cached), and never above the single-point bound (both are valid upper bounds).
    ε = inf (no noise) and ε above :data:`mia_audit.train.accounting.MAX_EPSILON` give 1 for
    both.
    """
    k = np.asarray(group_sizes, dtype=np.int64)
    eps, delta = float(spec["epsilon"]), float(spec["delta"])
    if _vacuous(spec):
        return np.ones(k.shape), np.ones(k.shape)
    e_k, d_k = bounds.group_privacy(eps, delta, k)
    single = np.minimum(np.asarray(bounds.max_auc_bound(e_k, d_k), dtype=float), 1.0).reshape(k.shape)
    runs = spec.get("runs") or []
    profile = np.ones(k.shape) if not runs else np.zeros(k.shape)
    for sigma, q, steps in runs:
        profile = np.maximum(profile, bounds.profile_auc_bounds(sigma, q, steps, k))
    return np.minimum(profile, single), single


def tpr_cap_for_group(spec: dict, group_size: int):
    """The largest TPR any attack reaches at each FPR against a group of k under ``spec``: a
    function of the FPR. Per run the trade-off envelope of its privacy profile
    (:func:`mia_audit.dp.bounds.tradeoff_lines`), the largest over the runs, and never above
    the single-point statement (kε, k e^{(k−1)ε} δ); 1 everywhere when :func:`_vacuous` or
    when the group is larger than :data:`mia_audit.dp.bounds.MAX_GROUP_SIZES` (as its bound)."""
    k = int(group_size)
    if _vacuous(spec):
        return lambda u: np.ones_like(np.asarray(u, dtype=float))
    e_k, d_k = bounds.group_privacy(float(spec["epsilon"]), float(spec["delta"]), k)
    single = bounds._envelope_lines([e_k], [d_k])
    runs = spec.get("runs") or []
    if k > bounds.MAX_GROUP_SIZES or not runs:
        run_lines = []
    else:
        run_lines = [bounds.tradeoff_lines(s, q, t, k) for s, q, t in runs]

    def cap(u):
        prof = np.max([bounds.tpr_cap(u, lines) for lines in run_lines], axis=0) if run_lines else 1.0
        return np.minimum(prof, bounds.tpr_cap(u, single))

    return cap


def record_statistics(conf, member, fprs) -> pd.DataFrame:
    """Per record (column of ``conf``, models × records): what the distribution-free tests need.

    ``auc_emp`` (Mann–Whitney, ties ½; :func:`mia_audit.audit.stats.mann_whitney_auc`),
    ``n_in``, ``n_out`` (finite signals), and per FPR level i of ``fprs``: ``rank_i`` (j of
    :func:`mia_audit.dp.violations.order_statistic_rank`) and ``tp_i``, the in-signals strictly
    above the j-th largest out-signal; a level whose j repeats an earlier level's is NaN (it
    would be the same test). Non-finite signals are left out.
    """
    from mia_audit.audit import stats

    x = np.asarray(conf, dtype=np.float64)
    mem = np.asarray(member, dtype=bool)
    finite = np.isfinite(x)
    is_in, is_out = mem & finite, ~mem & finite
    n_in, n_out = is_in.sum(axis=0), is_out.sum(axis=0)
    out_sorted = -np.sort(-np.where(is_out, x, -np.inf), axis=0)  # descending, −inf padding
    cols = {"auc_emp": stats.mann_whitney_auc(x, mem)["auc_emp"], "n_in": n_in, "n_out": n_out}
    seen = np.zeros((len(fprs), x.shape[1]), dtype=np.int64)
    idx = np.arange(x.shape[1])
    for i, fpr in enumerate(fprs):
        j = violations.order_statistic_rank(fpr, n_out)
        usable = (n_out >= 1) & (j <= n_out) & ~(seen[:i] == j).any(axis=0)
        tau = out_sorted[np.clip(j - 1, 0, max(x.shape[0] - 1, 0)), idx] if x.shape[0] else np.full(idx.size, np.nan)
        tp = np.sum(is_in & (x > tau[None, :]), axis=0)
        seen[i] = j
        cols[f"rank_{i}"] = np.where(usable, j, np.nan)
        cols[f"tp_{i}"] = np.where(usable, tp, np.nan)
    return pd.DataFrame(cols)


def record_statistics_from_cube(cube_path, fprs, n_models: int | None = None, block_records: int = 65536):
    """:func:`record_statistics` of every pool record of a cube, in cube order (the order of
    ``record_risk.parquet``), with ``record_id``; read in record blocks. With a ``view``
    dimension the signal is the mean φ over views, as in the audit; ``n_models``: only the
    first models (an adaptive audit), None = all."""
    import zarr

    root = zarr.open_group(str(cube_path), mode="r")
    conf_arr, mem_arr = root["confidence"], root["member"]
    n_records = conf_arr.shape[1]
    split = np.asarray(root["split"][...]).astype(str) if "split" in root else np.full(n_records, "pool")
    pool = np.flatnonzero(split == "pool")
    parts = []
    for start in range(0, pool.size, block_records):
        sel = pool[start : start + block_records]
        lo, hi = int(sel.min()), int(sel.max()) + 1
        conf = np.asarray(conf_arr[:n_models, lo:hi])[:, sel - lo]
        if conf.ndim == 3:
            with np.errstate(invalid="ignore"):
                conf = conf.mean(axis=2)
        member = np.asarray(mem_arr[:n_models, lo:hi])[:, sel - lo]
        df = record_statistics(conf, member, fprs)
        df.insert(0, "record_id", np.asarray(root["record_id"][lo:hi])[sel - lo].astype(str))
        parts.append(df)
    return pd.concat(parts, ignore_index=True)


def add_dp_bounds(
    record_risk: pd.DataFrame,
    patient_risk: pd.DataFrame,
    spec: dict,
    statistics: pd.DataFrame,
    alpha: float = 0.05,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Add :data:`DP_AUDIT_COLUMNS` to the record and patient risk tables.

    ``record_risk`` needs ``record_id, patient_id, mu_in, mu_out, sd_in, sd_out, n_in, n_out``
    (as written by the audit), ``patient_risk`` needs ``patient_id, n_records``; ``spec``
    comes from :func:`spec_from_metrics`, ``statistics`` from :func:`record_statistics` of the
    same records in the same order (checked by ``record_id``). See docs/methods.md for the
    unit, the bound and the tests. Returns new tables; the inputs are not modified.
    """
    need_rec = ("record_id", "patient_id", "mu_in", "mu_out", "sd_in", "sd_out", "n_in", "n_out")
    for name, df, cols in (
        ("record risk", record_risk, need_rec),
        ("patient risk", patient_risk, ("patient_id", "n_records")),
        ("record statistics", statistics, ("record_id", "auc_emp", "n_in", "n_out")),
    ):
        for c in cols:
            if c not in df:
                raise KeyError(f"{name} table lacks column {c!r}")
    if len(statistics) != len(record_risk) or not np.array_equal(
        statistics["record_id"].astype(str).to_numpy(), record_risk["record_id"].astype(str).to_numpy()
    ):
        raise ValueError("record statistics and record risk list different records (or in another order)")
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

    st = statistics.reset_index(drop=True)
    levels = sorted(int(c[len("tp_") :]) for c in st.columns if c.startswith("tp_"))
    rec["dp_p_auc"] = violations.auc_pvalues(st["auc_emp"], st["n_in"], st["n_out"], rec["dp_bound"])
    p_tpr = np.full((len(rec), len(levels)), np.nan)
    groups = rec["dp_group_size"].to_numpy(dtype=np.int64)
    for g in np.unique(groups):
        rows = np.flatnonzero(groups == g)
        cap = tpr_cap_for_group(spec, int(g))
        for i, lv in enumerate(levels):
            for c0 in range(0, rows.size, _CHUNK):
                r = rows[c0 : c0 + _CHUNK]
                p_tpr[r, i] = violations.tpr_pvalues(
                    st[f"tp_{lv}"].to_numpy()[r], st["n_in"].to_numpy()[r], st[f"rank_{lv}"].to_numpy()[r],
                    st["n_out"].to_numpy()[r], cap,
                )  # fmt: skip
    low = np.min(np.where(np.isnan(p_tpr), np.inf, p_tpr), axis=1, initial=np.inf)
    rec["dp_p_tpr"] = np.where(np.isfinite(low), low, np.nan)
    rec["dp_p"], _ = violations.record_pvalues(rec["dp_p_auc"].to_numpy(), p_tpr)
    rec["dp_p_adj"] = violations.holm_adjust(rec["dp_p"])
    rec["dp_violation"] = (rec["dp_p_adj"] <= alpha).to_numpy()
    rec["dp_p_binormal"] = violations.binormal_pvalues(
        rec["mu_in"], rec["mu_out"], rec["sd_in"], rec["sd_out"], rec["n_in"], rec["n_out"], rec["dp_bound"]
    )

    for col in ("dp_p_auc", "dp_p_tpr", "dp_p", "dp_p_binormal"):
        by_patient = rec.loc[rec[col].notna()].groupby("patient_id")[col].agg(["min", "size"])
        bonf = np.minimum(1.0, by_patient["min"] * by_patient["size"])
        pat[col] = bonf.reindex(pat["patient_id"].to_numpy()).to_numpy(dtype=float)
    pat["dp_p_adj"] = violations.holm_adjust(pat["dp_p"])
    pat["dp_violation"] = (pat["dp_p_adj"] <= alpha).to_numpy()
    return rec, pat


def epsilon_at(spec: dict, delta: float) -> float:
    """The experiment's ε at another δ: the largest over its runs, by its own accountant (the
    one that calibrated σ; PLD grid step from the run's ε). inf without noise."""
    eps = []
    for sigma, q, steps in spec.get("runs") or []:
        scale = float(spec["epsilon"]) if math.isfinite(float(spec["epsilon"])) else None
        eps.append(accounting.achieved_epsilon(sigma, q, steps, float(delta), spec["accountant"], epsilon_scale=scale))
    return float(max(eps)) if eps else math.inf


def utility_row(
    experiment: str,
    level,
    epsilon,
    metrics: pd.DataFrame,
    records: pd.DataFrame,
    patients: pd.DataFrame,
    candidate: str | None = None,
) -> dict:
    """One row of the utility-vs-privacy table for one experiment.

    ``epsilon_achieved_max`` at the run's δ (``delta_max``) and ``epsilon_ref_delta`` at the
    fixed δ = ``ref_delta`` (:data:`mia_audit.train.accounting.REFERENCE_DELTA`), comparable
    across experiments whatever their δ; ``dp_bound`` / ``dp_bound_single_point``: the AUC
    bound for one privacy unit (a record at record level, a patient at patient level) from
    the privacy profile (needs no δ) and from the single (ε, δ) point;
    ``dp_bound_patient_median`` / ``_max``: over the patients' bounds (group bounds at
    record level). NaN without DP. ``selected_candidate``: the candidate model selection
    chose (empty without selection).
    """
    test = metrics["test_auc"].astype(float)
    spec = spec_from_metrics(metrics)
    is_dp = spec is not None
    unit, unit_single = bounds_for_groups(spec, [1]) if is_dp else (np.array([np.nan]), np.array([np.nan]))
    pat_bounds = patients["dp_bound"].astype(float) if "dp_bound" in patients else pd.Series(dtype=float)
    ref = accounting.REFERENCE_DELTA
    row = {
        "experiment": experiment,
        "level": level if is_dp else "none",
        "epsilon_target": "none" if epsilon is None else str(epsilon),
        "selected_candidate": candidate or "",
        "accountant": spec["accountant"] if is_dp else "",
        "epsilon_achieved_max": float(metrics["dp_epsilon"].astype(float).max()) if is_dp else math.inf,
        "delta_max": float(metrics["dp_delta"].max()) if is_dp else float("nan"),
        "epsilon_ref_delta": epsilon_at(spec, ref) if is_dp and not _vacuous(spec) else math.inf,
        "ref_delta": ref,
        "noise_multiplier": float(metrics["dp_noise_multiplier"].iloc[0]) if is_dp else 0.0,
        "sample_rate": float(metrics["dp_sample_rate"].iloc[0]) if is_dp else float("nan"),
        "steps": int(metrics["dp_steps"].iloc[0]) if is_dp else -1,
        "dp_bound": float(unit[0]),
        "dp_bound_single_point": float(unit_single[0]),
        "dp_bound_patient_median": float(pat_bounds.median()) if len(pat_bounds) else float("nan"),
        "dp_bound_patient_max": float(pat_bounds.max()) if len(pat_bounds) else float("nan"),
        "n_models": len(metrics),
        "train_auc_median": float(metrics["train_auc"].astype(float).median()) if "train_auc" in metrics else math.nan,
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
    notice = (
        f"; ε above {accounting.MAX_EPSILON:g} or no noise: every bound is 1 (no PLD computed)"
        if _vacuous(spec) and math.isfinite(float(spec["epsilon"]))
        else ""
    )
    return (
        f"DP {spec['level']} level, achieved ε {spec['epsilon']:.4g} at δ {spec['delta']:.3g} "
        f"({spec['accountant']} accountant; {runs}): "
        f"patient bounds {pb.min():.4g}–{pb.max():.4g} from the privacy profile "
        f"(single point {patients['dp_bound_single_point'].min():.4g}–{patients['dp_bound_single_point'].max():.4g}); "
        f"{int(records['dp_violation'].sum())} records and {int(patients['dp_violation'].sum())} patients "
        f"flagged by the distribution-free tests (Holm-adjusted p ≤ {alpha}); the bi-normal test alone "
        f"would have flagged {int((violations.holm_adjust(records['dp_p_binormal']) <= alpha).sum())} records" + notice
    )
