"""Figures of the audit, in one consistent style, sized for a paper column."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from . import stats  # noqa: E402

COLUMN_WIDTH_IN = 3.5  # one column of a two-column paper
STYLE = {
    "font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8, "legend.fontsize": 7,
    "xtick.labelsize": 7, "ytick.labelsize": 7, "axes.spines.top": False, "axes.spines.right": False,
    "figure.dpi": 150, "savefig.dpi": 300, "savefig.bbox": "tight", "pdf.fonttype": 42,
}


def save(fig, png, pdf) -> None:
    fig.savefig(png)
    fig.savefig(pdf)
    plt.close(fig)


def risk_contrast(patients: pd.DataFrame, attacks: pd.DataFrame, roc: pd.DataFrame, title: str = ""):
    """Left: ROC of the aggregate attack (log–log); right: survival function of patient AUC (log y)."""
    with plt.rc_context(STYLE):
        fig, (ax_roc, ax_sf) = plt.subplots(1, 2, figsize=(2 * COLUMN_WIDTH_IN, 2.6))
        for (attack, _), cur in roc.groupby(["attack", "target"], sort=False):
            ax_roc.plot(cur["fpr"].clip(lower=1e-4), cur["tpr"].clip(lower=1e-4), color="tab:blue", alpha=0.35, lw=0.8)
        mean_auc = attacks.groupby("attack")["auc"].mean()
        ax_roc.plot([1e-4, 1], [1e-4, 1], ls="--", color="grey", lw=0.8)
        ax_roc.set(xscale="log", yscale="log", xlim=(1e-4, 1), ylim=(1e-4, 1),
                   xlabel="false-positive rate", ylabel="true-positive rate",
                   title="aggregate attack: " + ", ".join(f"{a} AUC {v:.3f}" for a, v in mean_auc.items()))
        auc = patients["auc"].dropna().to_numpy()
        sf = stats.survival_function(auc)
        ax_sf.step(sf["threshold"], sf["share"], where="post", color="tab:red", lw=1.2, label="patients")
        ax_sf.fill_between(sf["threshold"], sf["ci_low"], sf["ci_high"], step="post", color="tab:red", alpha=0.2,
                           lw=0, label="95% CI")
        for t in (0.9, 0.99):
            n = int((auc >= t).sum())
            ax_sf.axvline(t, color="grey", lw=0.6, ls=":")
            ax_sf.annotate(f"{n} ≥ {t}", (t, max(1.0 / len(auc), (auc >= t).mean())), fontsize=6,
                           xytext=(-2, 4), textcoords="offset points", ha="right")
        ax_sf.set(yscale="log", xlim=(0.5, 1.0), ylim=(0.5 / len(auc), 1.05), xlabel="patient MIA AUC (worst record)",
                  ylabel="share of patients with AUC ≥ x", title=f"patient risk ({len(auc)} patients)")
        ax_sf.legend(frameon=False, loc="lower left")
        if title:
            fig.suptitle(title, fontsize=8)
        fig.tight_layout()
    return fig
