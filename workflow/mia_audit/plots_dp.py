"""Figures and tables of the differential-privacy comparison (the paper's Fig. 2d/e)."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from . import stats  # noqa: E402
from .plots import COLUMN_WIDTH_IN, STYLE  # noqa: E402


def epsilon_label(epsilon) -> str:
    """'no DP' for None, 'ε = ∞' for inf, else 'ε = <value>'."""
    if epsilon is None:
        return "no DP"
    e = float("inf") if str(epsilon).lower() == "inf" else float(epsilon)
    return "ε = ∞ (no noise)" if math.isinf(e) else f"ε = {e:g}"


def epsilon_sort_key(epsilon) -> float:
    """Order: no DP, ε = ∞, then decreasing ε."""
    if epsilon is None:
        return -math.inf
    e = float("inf") if str(epsilon).lower() == "inf" else float(epsilon)
    return -e


def esf_by_epsilon(curves: list[dict], level: str, title: str = ""):
    """Survival function of patient AUC, one step curve per ε, on one log-y axis.

    ``curves``: dicts with ``label``, ``auc`` (patient AUCs) and ``violations`` (patients
    above their DP bound, or None without DP); the count goes into the legend.
    """
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(COLUMN_WIDTH_IN, 2.6))
        colors = plt.cm.viridis(np.linspace(0.0, 0.9, max(1, len(curves))))
        n_min = 1
        for c, color in zip(curves, colors):
            auc = np.asarray(c["auc"], dtype=float)
            auc = auc[np.isfinite(auc)]
            if auc.size == 0:
                continue
            n_min = max(n_min, auc.size)
            sf = stats.survival_function(auc)
            viol = c.get("violations")
            label = c["label"] + ("" if viol is None else f" ({int(viol)} above bound)")
            ax.step(sf["threshold"], sf["share"], where="post", color=color, lw=1.1, label=label)
        ax.set(yscale="log", xlim=(0.5, 1.0), ylim=(0.5 / n_min, 1.05), xlabel="patient MIA AUC (worst record)",
               ylabel="share of patients with AUC ≥ x",
               title=title or f"{level}-level DP: patient risk per ε")
        ax.legend(frameon=False, loc="lower left", fontsize=6)
        fig.tight_layout()
    return fig


def utility_row(experiment: str, level, epsilon, metrics: pd.DataFrame, records: pd.DataFrame,
                patients: pd.DataFrame) -> dict:
    """One row of the utility-vs-privacy table for one experiment."""
    test = metrics["test_auc"].astype(float)
    dp = "dp_epsilon" in metrics
    row = {
        "experiment": experiment, "level": level if dp else "none",
        "epsilon_target": "none" if epsilon is None else str(epsilon),
        "epsilon_achieved_max": float(metrics["dp_epsilon"].astype(float).max()) if dp else math.inf,
        "delta_max": float(metrics["dp_delta"].max()) if dp else float("nan"),
        "noise_multiplier": float(metrics["dp_noise_multiplier"].iloc[0]) if dp else 0.0,
        "sample_rate": float(metrics["dp_sample_rate"].iloc[0]) if dp else float("nan"),
        "steps": int(metrics["dp_steps"].iloc[0]) if dp else -1,
        "n_models": len(metrics),
        "test_auc_median": float(test.median()), "test_auc_q25": float(test.quantile(0.25)),
        "test_auc_q75": float(test.quantile(0.75)),
        "patients": len(patients), "patient_auc_median": float(patients["auc"].median()),
        "patients_auc_ge_0.9": int((patients["auc"] >= 0.9).sum()),
        "record_violations": int(records["dp_violation"].sum()) if "dp_violation" in records else 0,
        "patient_violations": int(patients["dp_violation"].sum()) if "dp_violation" in patients else 0,
    }
    return row
