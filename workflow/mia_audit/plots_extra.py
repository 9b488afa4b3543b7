"""Further figures of the audit: record AUC, standard errors, subgroups, meta-analysis, eSF by experiment.

Same style and size as :mod:`mia_audit.plots` (its ``STYLE`` and ``COLUMN_WIDTH_IN``), so every
figure reads at paper column width. Each function returns a matplotlib figure; save it with
:func:`mia_audit.plots.save`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from . import stats
from .plots import COLUMN_WIDTH_IN, STYLE, plt

LEVEL_COLOURS = {"record": "tab:blue", "patient": "tab:red"}


def _stars(p: float) -> str:
    if not np.isfinite(p):
        return "n/a"
    return "***" if p < 0.001 else "**" if p < 0.01 else "*" if p < 0.05 else "n.s."


def record_auc(records: pd.DataFrame, patients: pd.DataFrame, title: str = ""):
    """Histogram of record-level MIA AUC (log counts), the mean patient AUC marked."""
    auc = records["auc"].to_numpy(dtype=float)
    defined = auc[np.isfinite(auc)]
    mean_patient = float(np.nanmean(patients["auc"].to_numpy(dtype=float)))
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(COLUMN_WIDTH_IN, 2.4))
        lo = min(0.5, np.floor(defined.min(initial=0.5) * 10) / 10)
        ax.hist(defined, bins=np.linspace(lo, 1.0, 51), color="tab:blue",
                alpha=0.8, lw=0)
        ax.axvline(mean_patient, color="tab:red", lw=1.2, label=f"mean patient AUC {mean_patient:.3f}")
        ax.axvline(defined.mean(), color="black", lw=0.8, ls="--", label=f"mean record AUC {defined.mean():.3f}")
        ax.axvline(0.5, color="grey", lw=0.6, ls=":")
        ax.set(yscale="log", xlabel="record MIA AUC (bi-normal)", ylabel="records",
               title=title or f"{defined.size} records ({auc.size - defined.size} undefined)")
        ax.set_ylim(0.5, ax.get_ylim()[1] * 8)  # room for the legend above the bars
        ax.legend(frameon=False, loc="upper left")
        fig.tight_layout()
    return fig


def standard_errors(records: pd.DataFrame, title: str = ""):
    """Left: distributions of the delta-method and Hanley–McNeil SEs; right: both against AUC."""
    ok = records[np.isfinite(records["auc"]) & np.isfinite(records["se"]) & np.isfinite(records["se_hm"])]
    with plt.rc_context(STYLE):
        fig, (ax_h, ax_s) = plt.subplots(1, 2, figsize=(2 * COLUMN_WIDTH_IN, 2.4))
        hi = max(float(ok[["se", "se_hm"]].to_numpy().max(initial=0.0)), 1e-3)
        bins = np.linspace(0, hi, 41)
        ax_h.hist(ok["se"], bins=bins, color="tab:blue", alpha=0.6, lw=0, label="delta method")
        ax_h.hist(ok["se_hm"], bins=bins, color="tab:orange", alpha=0.6, lw=0, label="Hanley–McNeil")
        ax_h.set(xlabel="standard error of record AUC", ylabel="records", yscale="log",
                 title=f"median SE: delta {ok['se'].median():.3f}, H–M {ok['se_hm'].median():.3f}")
        ax_h.legend(frameon=False)
        ax_s.scatter(ok["auc"], ok["se"], s=2, color="tab:blue", alpha=0.5, lw=0, label="delta method")
        ax_s.scatter(ok["auc"], ok["se_hm"], s=2, color="tab:orange", alpha=0.5, lw=0, label="Hanley–McNeil")
        ax_s.set(xlabel="record MIA AUC", ylabel="standard error", title="SE against AUC")
        ax_s.legend(frameon=False, markerscale=4)
        if title:
            fig.suptitle(title, fontsize=8)
        fig.tight_layout()
    return fig


def subgroup_composition(table: pd.DataFrame, attribute: str, title: str = "", alpha: float = 0.05):
    """Per level, overall vs tail share of each group (bars) and the Pearson residual (markers).

    The panel title gives the test, its adjusted p and stars (* < 0.05, ** < 0.01,
    *** < 0.001 on the adjusted p; n/a where no test was valid). Residual markers beyond ±2
    are filled.
    """
    levels = [lv for lv in ("record", "patient") if (table["level"] == lv).any()]
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, max(1, len(levels)), figsize=(2 * COLUMN_WIDTH_IN, 2.6), squeeze=False)
        for ax, level in zip(axes[0], levels):
            cur = table[table["level"] == level].reset_index(drop=True)
            x = np.arange(len(cur))
            ax.bar(x - 0.2, cur["share_overall"], 0.4, color="lightgrey", label="all")
            ax.bar(x + 0.2, cur["share_tail"].fillna(0), 0.4, color=LEVEL_COLOURS[level], label="tail")
            ax.set_xticks(x, cur["group"], rotation=30 if cur["group"].str.len().max() > 4 else 0, ha="right"
                          if cur["group"].str.len().max() > 4 else "center")
            ax.set(ylabel="share", ylim=(0, 1.05))
            r = ax.twinx()
            r.spines["right"].set_visible(True)
            res = cur["residual"].to_numpy(dtype=float)
            big = np.abs(res) > 2
            r.scatter(x[~big], res[~big], marker="D", s=14, facecolor="white", edgecolor="black", lw=0.8, zorder=3)
            r.scatter(x[big], res[big], marker="D", s=14, color="black", zorder=3, label="|residual| > 2")
            r.axhline(0, color="black", lw=0.5)
            for s in (-2, 2):
                r.axhline(s, color="grey", lw=0.5, ls=":")
            lim = max(3.0, np.nanmax(np.abs(res), initial=0.0) * 1.15)
            r.set(ylim=(-lim, lim), ylabel="Pearson residual (tail)")
            t = cur.iloc[0]
            ax.set_title(f"{level}s: tail {int(t['n_tail_total'])} of {int(t['n_total'])} "
                         f"(AUC ≥ {t['threshold']:.3f})\n{t['test']}, adj. p = {t['p_adj']:.2g} {_stars(t['p_adj'])}"
                         if np.isfinite(t["p_adj"]) else
                         f"{level}s: tail {int(t['n_tail_total'])} of {int(t['n_total'])}\nno test ({str(t['note']).split(':')[0]})")
            if level == levels[0]:
                h1, l1 = ax.get_legend_handles_labels()
                ax.legend(h1, l1, frameon=False, loc="upper right")
        fig.suptitle(title or attribute, fontsize=8)
        fig.tight_layout()
    return fig


def meta_scatter(points: pd.DataFrame, summary: pd.DataFrame, large_residual: float = 2.0,
                 small_group_share: float = 0.2):
    """Residual against group share across attributes, data sets and experiments, per level."""
    levels = ("record", "patient")
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, 2, figsize=(2 * COLUMN_WIDTH_IN, 2.6), sharey=False)
        for ax, level in zip(axes, levels):
            cur = points[points["level"] == level]
            for i, (attr, g) in enumerate(cur.groupby("attribute", sort=True)):
                ax.scatter(g["share_overall"], g["residual"], s=10, color=f"C{i % 10}", alpha=0.8, lw=0, label=attr)
            ax.axhline(large_residual, color="grey", lw=0.6, ls=":")
            ax.axhline(0, color="black", lw=0.5)
            ax.axvline(small_group_share, color="grey", lw=0.6, ls="--")
            row = summary.set_index("level").loc[level] if level in set(summary["level"]) else None
            sub = ""
            if row is not None and np.isfinite(row["pearson_r"]):
                sub = (f"\nr = {row['pearson_r']:.2f} [{row['pearson_ci_low']:.2f}, {row['pearson_ci_high']:.2f}], "
                       f"ρ = {row['spearman_rho']:.2f} [{row['spearman_ci_low']:.2f}, {row['spearman_ci_high']:.2f}]")
            ax.set(xscale="log", xlabel="group share of all units", ylabel="Pearson residual in the tail",
                   title=f"{level}s ({len(cur)} groups){sub}")
            if len(cur):
                ax.legend(frameon=False, fontsize=6, loc="upper right")
        fig.tight_layout()
    return fig


def esf_by_experiment(patients: dict[str, pd.DataFrame], title: str = ""):
    """Empirical survival function of patient AUC, one line (with 95 % band) per experiment."""
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(COLUMN_WIDTH_IN, 2.6))
        n_min = 1
        for i, (name, df) in enumerate(patients.items()):
            auc = df["auc"].to_numpy(dtype=float)
            auc = auc[np.isfinite(auc)]
            if not auc.size:
                continue
            sf = stats.survival_function(auc)
            n_min = max(n_min, auc.size)
            ax.step(sf["threshold"], sf["share"], where="post", color=f"C{i % 10}", lw=1.2,
                    label=f"{name} ({auc.size} patients)")
            ax.fill_between(sf["threshold"], sf["ci_low"], sf["ci_high"], step="post", color=f"C{i % 10}",
                            alpha=0.15, lw=0)
        ax.set(yscale="log", xlim=(0.5, 1.0), ylim=(0.5 / n_min, 1.05), xlabel="patient MIA AUC (worst record)",
               ylabel="share of patients with AUC ≥ x", title=title)
        ax.legend(frameon=False, loc="lower left")
        fig.tight_layout()
    return fig
