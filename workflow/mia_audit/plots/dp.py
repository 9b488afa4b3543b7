"""Figures of the differential-privacy comparison (the paper's Fig. 2d/e)."""

from __future__ import annotations

import numpy as np

from mia_audit.audit import stats
from mia_audit.plots.style import COLUMN_WIDTH_IN, STYLE, legend_below, plt


def bound_label(bounds) -> str:
    """'bound 0.598' for one value, 'bounds 0.598–0.99' for a range, '' for none."""
    b = np.asarray(bounds if bounds is not None else [], dtype=float)
    b = b[np.isfinite(b)]
    if b.size == 0:
        return ""
    lo, hi = float(b.min()), float(b.max())
    return f"bound {lo:.3g}" if np.isclose(lo, hi, rtol=0, atol=5e-4) else f"bounds {lo:.3g}–{hi:.3g}"


def esf_by_epsilon(curves: list[dict], level: str, title: str = ""):
    """Survival function of patient AUC, one step curve per ε, on one log-y axis.

    ``curves``: dicts with ``label``, ``auc`` (patient AUCs), and optionally ``bounds``
    (each patient's DP bound) and ``violations`` (flagged patients); both go into the legend.
    With bounds, the survival function of the bounds is drawn dashed in the same colour:
    if every patient's AUC is at most their bound, the solid curve lies on or below the
    dashed one at every x (the share of patients with AUC ≥ x cannot exceed the share with
    bound ≥ x). Bounds of 1 (no noise, or a saturated group bound) lie off the axis.
    """
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(COLUMN_WIDTH_IN, 2.8))
        colors = plt.cm.viridis(np.linspace(0.0, 0.9, max(1, len(curves))))
        n_min = 1
        for c, color in zip(curves, colors, strict=False):
            auc = np.asarray(c["auc"], dtype=float)
            auc = auc[np.isfinite(auc)]
            if auc.size == 0:
                continue
            n_min = max(n_min, auc.size)
            sf = stats.survival_function(auc)
            notes = [bound_label(c.get("bounds"))]
            if c.get("violations") is not None:
                notes.append(f"{int(c['violations'])} flagged")
            notes = [n for n in notes if n]
            label = c["label"] + (f" ({'; '.join(notes)})" if notes else "")
            ax.step(sf["threshold"], sf["share"], where="post", color=color, lw=1.1, label=label)
            bnd = np.asarray(c["bounds"] if c.get("bounds") is not None else [], dtype=float)
            bnd = bnd[np.isfinite(bnd)]
            if bnd.size and (bnd < 1.0).any():
                sfb = stats.survival_function(bnd)
                last = sfb["threshold"].iloc[-1]
                xs = np.r_[0.5, sfb["threshold"], last]
                ys = np.r_[1.0, sfb["share"], 1e-12]  # the drop at the largest bound
                ax.step(xs, ys, where="post", color=color, lw=0.8, ls="--")
        ax.set(
            yscale="log",
            xlim=(0.5, 1.0),
            ylim=(0.5 / n_min, 1.05),
            xlabel="patient MIA AUC (worst record)",
            ylabel="share of patients with AUC ≥ x",
            title=title or f"{level}-level DP: patient risk per ε",
        )
        ax.plot([], [], color="0.4", lw=0.8, ls="--", label="DP bound (privacy profile)")
        fig.tight_layout()
        legend_below(fig, ax, fontsize=6)
    return fig
