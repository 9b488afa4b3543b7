"""Figures of how an audit's headlines converge with the number of target models."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mia_audit.audit.attacks import ATTACKS
from mia_audit.plots.style import COLUMN_WIDTH_IN, STYLE, plt

ESTIMATOR_STYLE = {"binormal": {"ls": "-", "marker": "o"}, "moderated": {"ls": "--", "marker": "s"}}


def _log2_axis(ax, sizes) -> None:
    ax.set_xscale("log", base=2)
    ax.set_xticks(sizes)
    ax.set_xticklabels([str(int(k)) for k in sizes])
    ax.minorticks_off()
    ax.set_xlabel("target models")


def convergence(table: pd.DataFrame, summary: pd.DataFrame, title: str = ""):
    """Four panels: (a) share of patients ≥ each threshold with its exact interval, the all-model
    interval shaded, both estimators; (b) the survival function of patient AUC per number of
    models; (c) mean aggregate-attack AUC with its interval over targets; (d) share of subgroup
    residuals within, and of test decisions equal to, the all-model ones."""
    sizes = np.sort(table["n_models"].unique())
    colours = plt.get_cmap("viridis")(np.linspace(0.1, 0.85, max(2, sizes.size)))
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(2, 2, figsize=(2 * COLUMN_WIDTH_IN, 5.0))
        ax = axes[0, 0]
        shares = table[table["quantity"] == "share_at_or_above"]
        keys = list(dict.fromkeys(shares["key"]))
        palette = plt.get_cmap("tab10")
        for i, key in enumerate(keys):
            for est, style in ESTIMATOR_STYLE.items():
                g = shares[(shares["key"] == key) & (shares["estimator"] == est)].sort_values("n_models")
                if g.empty:
                    continue
                if est == "binormal":
                    ax.axhspan(g["final_low"].iloc[-1], g["final_high"].iloc[-1], color=palette(i), alpha=0.12, lw=0)
                offset = 1.03 if est == "moderated" else 1.0
                ax.errorbar(
                    g["n_models"] * offset,
                    g["estimate"],
                    yerr=[g["estimate"] - g["ci_low"], g["ci_high"] - g["estimate"]],
                    color=palette(i),
                    ms=3,
                    lw=1,
                    elinewidth=0.6,
                    capsize=1.5,
                    label=f"AUC ≥ {key}" if est == "binormal" else None,
                    **style,
                )
        _log2_axis(ax, sizes)
        ax.set(ylabel="share of patients", title="(a) patients at or above each threshold")
        ax.set_ylim(0, min(1.0, ax.get_ylim()[1] * 1.35))  # room for the legend
        ax.legend(
            frameon=False, fontsize=6, loc="upper right", ncol=2, title="— bi-normal, -- moderated", title_fontsize=6
        )

        ax = axes[0, 1]
        surv = table[(table["quantity"] == "survival") & (table["estimator"] == "binormal")].copy()
        surv["t"] = surv["key"].astype(float)
        final = surv[surv["n_models"] == sizes[-1]].sort_values("t")
        ax.fill_between(final["t"], final["ci_low"], final["ci_high"], step="post", color="grey", alpha=0.25, lw=0)
        for c, k in zip(colours, sizes, strict=False):
            g = surv[surv["n_models"] == k].sort_values("t")
            ax.step(g["t"], g["estimate"], where="post", color=c, lw=1, label=f"{int(k)} models")
        ax.set(
            xlim=(0.5, 1.0),
            xlabel="patient MIA AUC",
            ylabel="share of patients with AUC ≥ x",
            title="(b) survival function (bi-normal)",
        )
        ax.legend(frameon=False, fontsize=6)

        ax = axes[1, 0]
        att = table[table["quantity"] == "attack_auc"]
        for i, name in enumerate(dict.fromkeys(att["key"])):
            g = att[att["key"] == name].sort_values("n_models")
            ax.errorbar(
                g["n_models"],
                g["estimate"],
                yerr=[g["estimate"] - g["ci_low"], g["ci_high"] - g["estimate"]],
                color=palette(i),
                marker="o",
                ms=3,
                lw=1,
                elinewidth=0.6,
                capsize=1.5,
                label=ATTACKS[name].label if name in ATTACKS else name,
            )
        _log2_axis(ax, sizes)
        ax.set(ylabel="mean AUC over target models", title="(c) aggregate attacks")
        if len(att):
            lo, hi = np.nanmin(att["ci_low"]), np.nanmax(att["ci_high"])
            ax.set_ylim(lo - 0.6 * (hi - lo), hi + 0.05 * (hi - lo))  # room for the legend below the curves
        ax.legend(frameon=False, fontsize=6, ncol=2, loc="lower right")

        ax = axes[1, 1]
        for est, style in ESTIMATOR_STYLE.items():
            for quantity, colour, label in (("residual", "tab:purple", "residuals"), ("test", "tab:green", "tests")):
                g = table[(table["quantity"] == quantity) & (table["estimator"] == est)]
                if g.empty:
                    continue
                frac = g.groupby("n_models")["within_final"].mean()
                ax.plot(
                    frac.index,
                    frac.to_numpy(),
                    color=colour,
                    ms=3,
                    lw=1,
                    label=f"{label} ({est})",
                    **style,
                )
        _log2_axis(ax, sizes)
        ax.set(ylim=(-0.02, 1.02), ylabel="share agreeing with all models", title="(d) subgroup residuals and tests")
        ax.legend(frameon=False, fontsize=6)
        if title:
            fig.suptitle(title, fontsize=8)
        fig.tight_layout()
    return fig
