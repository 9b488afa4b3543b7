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


ATTACK_LABELS = {
    "lira_online": "LiRA online", "lira_offline": "LiRA offline", "lira_online_fixed": "LiRA online, fixed var.",
    "lira_offline_fixed": "LiRA offline, fixed var.", "rmia_online": "RMIA online", "rmia_offline": "RMIA offline",
    "loss_threshold": "loss threshold",
}
FLOOR = 1e-4  # log axes start here


def _mean_roc(ax, roc: pd.DataFrame, attacks_table: pd.DataFrame, attacks=None) -> None:
    """Mean ROC over targets with a ±1 SD band, log–log, AUC in the legend."""
    mean_auc = attacks_table.groupby("attack")["auc"].mean()
    names = [a for a in (attacks or roc["attack"].unique()) if a in set(roc["attack"])]
    for i, name in enumerate(names):
        cur = roc[roc["attack"] == name]
        color = plt.cm.tab10(i % 10)
        x = cur["fpr"].clip(lower=FLOOR)
        ax.plot(x, cur["tpr_mean"].clip(lower=FLOOR), color=color, lw=1.1,
                label=f"{ATTACK_LABELS.get(name, name)} (AUC {mean_auc.get(name, np.nan):.3f})")
        ax.fill_between(x, (cur["tpr_mean"] - cur["tpr_sd"]).clip(lower=FLOOR),
                        (cur["tpr_mean"] + cur["tpr_sd"]).clip(upper=1), color=color, alpha=0.15, lw=0)
    ax.plot([FLOOR, 1], [FLOOR, 1], ls="--", color="grey", lw=0.8)
    ax.set(xscale="log", yscale="log", xlim=(FLOOR, 1), ylim=(FLOOR, 1.05),
           xlabel="false-positive rate", ylabel="true-positive rate")
    ax.legend(frameon=False, loc="lower right")


def attack_roc(roc: pd.DataFrame, attacks_table: pd.DataFrame, title: str = ""):
    """All aggregate attacks: mean ROC over target models ± 1 SD, log–log axes."""
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(COLUMN_WIDTH_IN, COLUMN_WIDTH_IN))
        _mean_roc(ax, roc, attacks_table)
        n_t = attacks_table["target"].nunique()
        ax.set_title((title + "\n" if title else "") + f"aggregate attacks, mean over {n_t} target models")
        fig.tight_layout()
    return fig


def risk_contrast(patients: pd.DataFrame, attacks_table: pd.DataFrame, roc: pd.DataFrame, title: str = ""):
    """Left: mean ROC of the aggregate attacks (log–log); right: survival function of patient AUC (log y)."""
    with plt.rc_context(STYLE):
        fig, (ax_roc, ax_sf) = plt.subplots(1, 2, figsize=(2 * COLUMN_WIDTH_IN, 2.8))
        shown = [a for a in ("lira_online", "rmia_offline", "loss_threshold") if a in set(roc["attack"])]
        _mean_roc(ax_roc, roc, attacks_table, shown or None)
        ax_roc.set_title("aggregate attacks (standard protocol)")
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
