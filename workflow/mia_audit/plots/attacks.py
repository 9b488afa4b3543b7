"""ROC figures of the membership-inference attacks (log–log axes)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mia_audit.audit.attacks import ATTACKS, EXTERNAL_ATTACKS, STATUS_OK, mean_roc
from mia_audit.plots.style import COLUMN_WIDTH_IN, FLOOR, STYLE, legend_below, plt


def mean_roc_panel(ax, roc: pd.DataFrame, attacks_table: pd.DataFrame, attacks=None) -> None:
    """Mean ROC over targets with a ±1 SD band, log–log, each line labelled with its mean AUC
    (the caller places the legend, outside the axes)."""
    mean_auc = attacks_table.groupby("attack")["auc"].mean()
    names = [a for a in (attacks or roc["attack"].unique()) if a in set(roc["attack"])]
    for i, name in enumerate(names):
        cur = roc[roc["attack"] == name]
        color = plt.cm.tab10(i % 10)
        x = cur["fpr"].clip(lower=FLOOR)
        ax.plot(
            x,
            cur["tpr_mean"].clip(lower=FLOOR),
            color=color,
            lw=1.1,
            label=f"{ATTACKS[name].label} (AUC {mean_auc.get(name, np.nan):.3f})",
        )
        ax.fill_between(
            x,
            (cur["tpr_mean"] - cur["tpr_sd"]).clip(lower=FLOOR),
            (cur["tpr_mean"] + cur["tpr_sd"]).clip(upper=1),
            color=color,
            alpha=0.15,
            lw=0,
        )
    ax.plot([FLOOR, 1], [FLOOR, 1], ls="--", color="grey", lw=0.8)
    if "min_resolvable_fpr" in roc and roc["min_resolvable_fpr"].notna().any():
        resolvable_marker(ax, float(roc["min_resolvable_fpr"].max()))
    ax.set(
        xscale="log",
        yscale="log",
        xlim=(FLOOR, 1),
        ylim=(FLOOR, 1.05),
        xlabel="false-positive rate",
        ylabel="true-positive rate",
    )


def resolvable_marker(ax, min_fpr: float) -> None:
    """Shade the FPRs below 1/non-members, where no ROC point can be measured (the curves stop there)."""
    if min_fpr > FLOOR:
        ax.axvspan(FLOOR, min_fpr, color="grey", alpha=0.12, lw=0)
        ax.text(1.3 * FLOOR, 0.5, f"FPR < 1/n:\nnot measurable\n(1/n = {min_fpr:.2g})", fontsize=5, ha="left", va="top")


def attack_roc(roc: pd.DataFrame, attacks_table: pd.DataFrame, title: str = ""):
    """All aggregate attacks: mean ROC over target models ± 1 SD, log–log axes."""
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(COLUMN_WIDTH_IN, COLUMN_WIDTH_IN))
        mean_roc_panel(ax, roc, attacks_table)
        n_t = attacks_table["target"].nunique()
        ax.set_title((title + "\n" if title else "") + f"aggregate attacks, mean over {n_t} target models")
        fig.tight_layout()
        legend_below(fig, ax)
    return fig


def public_roc(scores: pd.DataFrame, summary: pd.DataFrame, title: str = ""):
    """ROC per target (log–log), each attack's AUC and TPR at 1 % FPR in the legend.

    The curve is :func:`mia_audit.audit.attacks.mean_roc` of the target alone: TPR at each FPR
    level α is the largest TPR with FPR ≤ α, as in the summary's ``tpr_at_fpr_…``.
    """
    targets = list(dict.fromkeys(scores["target"]))
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(
            1, len(targets), figsize=(COLUMN_WIDTH_IN * len(targets), COLUMN_WIDTH_IN), squeeze=False
        )
        for ax, target in zip(axes[0], targets, strict=True):
            d = scores[(scores["target"] == target) & (scores["status"] == STATUS_OK)]
            start = FLOOR
            for i, k in enumerate(EXTERNAL_ATTACKS):
                cur = mean_roc([d[k].to_numpy()], [d["member"].to_numpy()])
                start = max(start, float(cur["min_resolvable_fpr"].iloc[0]))
                row = summary[(summary["target"] == target) & (summary["attack"] == k) & (summary["level"] == "record")]
                auc, t1 = row["auc"].iloc[0], row["tpr_at_fpr_0.01"].iloc[0]
                t1_text = f"{t1:.3f}" if np.isfinite(t1) else "n/a"
                ax.plot(
                    cur["fpr"].clip(lower=FLOOR),
                    cur["tpr_mean"].clip(lower=FLOOR),
                    color=plt.cm.tab10(i),
                    lw=1.1,
                    label=f"{ATTACKS[k].label} (AUC {auc:.3f}, TPR@1% {t1_text})",
                )
            ax.plot([FLOOR, 1], [FLOOR, 1], ls="--", color="grey", lw=0.8)
            resolvable_marker(ax, start)
            ax.set(
                xscale="log",
                yscale="log",
                xlim=(FLOOR, 1),
                ylim=(FLOOR, 1.05),
                xlabel="false-positive rate",
                ylabel="true-positive rate",
                title=(f"{title}: " if title else "") + f"target {target} (n = {len(d)})",
            )
        fig.tight_layout()
        for ax in axes[0]:
            legend_below(fig, ax)
    return fig
