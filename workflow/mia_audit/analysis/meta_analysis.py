"""Meta-analysis of tail composition: are small groups the over-represented ones?

Every group of every attribute, data set and experiment of a run is one point (its share of
the units, its tail residual); per level the summary gives Pearson's r and Spearman's ρ with
95 % CIs and the share of large positive residuals that come from small groups with an exact
CI. Method and references: docs/methods.md, "Meta-analysis".
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats as sps

POINT_COLUMNS = [
    "dataset",
    "experiment",
    "attribute",
    "level",
    "group",
    "share_overall",
    "n_overall",
    "n_tail",
    "expected",
    "residual",
    "rel_change",
    "p_adj",
    "large_positive",
    "small_group",
]


def spearman_ci(rho: float, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Fisher-z CI of Spearman's ρ with the Bonett–Wright (2000) SE √((1 + ρ²/2)/(n − 3))."""
    if n < 4 or not np.isfinite(rho):
        return (np.nan, np.nan)
    z = np.arctanh(np.clip(rho, -1 + 1e-15, 1 - 1e-15))
    half = sps.norm.ppf(0.5 + confidence / 2) * np.sqrt((1 + rho**2 / 2) / (n - 3))
    return (float(np.tanh(z - half)), float(np.tanh(z + half)))


def correlations(x, y, confidence: float = 0.95) -> dict:
    """Pearson and Spearman correlation of x and y with CIs and p-values (NaN pairs dropped).

    Fewer than 4 pairs, or a constant x or y: NaN values and a ``note``.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    n = int(x.size)
    out = {
        "n_points": n,
        "pearson_r": np.nan,
        "pearson_ci_low": np.nan,
        "pearson_ci_high": np.nan,
        "pearson_p": np.nan,
        "spearman_rho": np.nan,
        "spearman_ci_low": np.nan,
        "spearman_ci_high": np.nan,
        "spearman_p": np.nan,
        "note": "",
    }
    if n < 4:
        out["note"] = f"{n} point(s): a correlation and its CI need at least 4"
        return out
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        out["note"] = "constant share or residual: correlation undefined"
        return out
    pr = sps.pearsonr(x, y)
    ci = pr.confidence_interval(confidence_level=confidence)
    sr = sps.spearmanr(x, y)
    lo, hi = spearman_ci(float(sr.statistic), n, confidence)
    out.update(
        pearson_r=float(pr.statistic),
        pearson_ci_low=float(ci.low),
        pearson_ci_high=float(ci.high),
        pearson_p=float(pr.pvalue),
        spearman_rho=float(sr.statistic),
        spearman_ci_low=lo,
        spearman_ci_high=hi,
        spearman_p=float(sr.pvalue),
    )
    return out


def points(tests: pd.DataFrame, large_residual: float = 2.0, small_group_share: float = 0.2) -> pd.DataFrame:
    """One row per group with a defined residual, from attributes with at least two groups."""
    missing = [c for c in POINT_COLUMNS[:11] if c not in tests.columns]
    if missing:
        raise KeyError(f"subgroup test table lacks column(s) {missing}")
    key = ["dataset", "experiment", "attribute", "level"]
    k = tests.groupby(key)["group"].transform("size")
    pts = tests[(k >= 2) & np.isfinite(tests["residual"].astype(float))].copy()
    if "p_adj" not in pts:
        pts["p_adj"] = np.nan
    pts["large_positive"] = pts["residual"] > large_residual
    pts["small_group"] = pts["share_overall"] < small_group_share
    return pts[POINT_COLUMNS].reset_index(drop=True)


def summary(
    pts: pd.DataFrame, large_residual: float = 2.0, small_group_share: float = 0.2, confidence: float = 0.95
) -> pd.DataFrame:
    """Per level: correlations of residual with group share, and who gives the large residuals."""
    from statsmodels.stats.proportion import proportion_confint

    rows = []
    for level in ("record", "patient"):
        cur = pts[pts["level"] == level]
        row = {"level": level, "n_tests": int(cur.groupby(["dataset", "experiment", "attribute"]).ngroups)}
        row.update(correlations(cur["share_overall"], cur["residual"], confidence))
        big = cur[cur["large_positive"]]
        n_big, n_big_small = len(big), int(big["small_group"].sum())
        lo, hi = (
            proportion_confint(n_big_small, n_big, alpha=1 - confidence, method="beta") if n_big else (np.nan, np.nan)
        )
        row.update(
            large_residual=large_residual,
            small_group_share=small_group_share,
            n_large_positive=n_big,
            n_large_positive_small=n_big_small,
            share_large_positive_small=n_big_small / n_big if n_big else np.nan,
            share_ci_low=float(lo),
            share_ci_high=float(hi),
            share_small_groups_all=float(cur["small_group"].mean()) if len(cur) else np.nan,
        )
        if not n_big:
            row["note"] = "; ".join(filter(None, [row["note"], f"no residual > {large_residual:g}"]))
        rows.append(row)
    return pd.DataFrame(rows)
