"""Figures of the differential-privacy comparison (the paper's Fig. 2d/e)."""

from __future__ import annotations

import numpy as np

from .. import stats
from .style import COLUMN_WIDTH_IN, STYLE, legend_below, plt


def esf_by_epsilon(curves: list[dict], level: str, title: str = ""):
    """Survival function of patient AUC, one step curve per ε, on one log-y axis.

    ``curves``: dicts with ``label``, ``auc`` (patient AUCs) and ``violations`` (patients
    above their DP bound, or None without DP); the count goes into the legend.
    """
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(COLUMN_WIDTH_IN, 2.6))
        colors = plt.cm.viridis(np.linspace(0.0, 0.9, max(1, len(curves))))
        n_min = 1
        for c, color in zip(curves, colors, strict=False):
            auc = np.asarray(c["auc"], dtype=float)
            auc = auc[np.isfinite(auc)]
            if auc.size == 0:
                continue
            n_min = max(n_min, auc.size)
            sf = stats.survival_function(auc)
            viol = c.get("violations")
            label = c["label"] + ("" if viol is None else f" ({int(viol)} above bound)")
            ax.step(sf["threshold"], sf["share"], where="post", color=color, lw=1.1, label=label)
        ax.set(
            yscale="log",
            xlim=(0.5, 1.0),
            ylim=(0.5 / n_min, 1.05),
            xlabel="patient MIA AUC (worst record)",
            ylabel="share of patients with AUC ≥ x",
            title=title or f"{level}-level DP: patient risk per ε",
        )
        fig.tight_layout()
        legend_below(fig, ax, fontsize=6)
    return fig
