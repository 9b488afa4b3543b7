"""Figures of who carries the risk: tail composition per attribute, and the meta-analysis."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mia_audit.plots.style import COLUMN_WIDTH_IN, STYLE, legend_below, plt, stars

LEVEL_COLOURS = {"record": "tab:blue", "patient": "tab:red"}


def subgroup_composition(table: pd.DataFrame, attribute: str, title: str = "", alpha: float = 0.05):
    """Per level, overall vs tail share of each group (bars) and the Pearson residual (markers).

    The panel title gives the tail (size, ``tail_rule``, AUC threshold), the test and its
    adjusted p with stars (* < 0.05, ** < 0.01, *** < 0.001; n/a where no test was valid),
    and says when the tail is too small to test every group (``n_tail_needed``). The stars
    are those of the patient-clustered p (``p_cluster_adj``: at record level a patient's
    records count as one cluster; at patient level the permutation test of patients); at
    record level the title also gives the naive adjusted p (records as independent), the
    number of patients in the tail and the design effect. Residual markers beyond ±2 are filled.
    """
    levels = [lv for lv in ("record", "patient") if (table["level"] == lv).any()]
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, max(1, len(levels)), figsize=(2 * COLUMN_WIDTH_IN, 2.9), squeeze=False)
        rights = []
        for ax, level in zip(axes[0], levels, strict=False):
            cur = table[table["level"] == level].reset_index(drop=True)
            x = np.arange(len(cur))
            ax.bar(x - 0.2, cur["share_overall"], 0.4, color="lightgrey", label="share of all units")
            ax.bar(
                x + 0.2, cur["share_tail"].fillna(0), 0.4, color=LEVEL_COLOURS[level], label=f"share of tail {level}s"
            )
            ax.set_xticks(
                x,
                cur["group"],
                rotation=30 if cur["group"].str.len().max() > 4 else 0,
                ha="right" if cur["group"].str.len().max() > 4 else "center",
            )
            ax.set(ylabel="share", ylim=(0, 1.05))
            r = ax.twinx()
            r.spines["right"].set_visible(True)
            res = cur["residual"].to_numpy(dtype=float)
            big = np.abs(res) > 2
            r.scatter(
                x[~big],
                res[~big],
                marker="D",
                s=14,
                facecolor="white",
                edgecolor="black",
                lw=0.8,
                zorder=3,
                label="Pearson residual (right axis)",
            )
            r.scatter(x[big], res[big], marker="D", s=14, color="black", zorder=3, label="|residual| > 2")
            r.axhline(0, color="black", lw=0.5)
            for s in (-2, 2):
                r.axhline(s, color="grey", lw=0.5, ls=":")
            lim = max(3.0, np.nanmax(np.abs(res), initial=0.0) * 1.15)
            r.set(ylim=(-lim, lim), ylabel="Pearson residual (tail)")
            ax.set_title(_panel_title(cur.iloc[0], level))
            rights.append(r)
        fig.suptitle(title or attribute, fontsize=8)
        fig.tight_layout()
        shown = list(axes[0][: len(levels)])
        handles, labels = [], []
        for a in shown + rights:
            for h, lab in zip(*a.get_legend_handles_labels(), strict=True):
                if lab not in labels:
                    handles.append(h)
                    labels.append(lab)
        legend_below(fig, shown + rights, handles, labels, ncol=min(4, len(labels)))
    return fig


def _panel_title(t: pd.Series, level: str) -> str:
    """Tail size and rule, the patient-clustered adjusted p (stars), at record level the naive one beside it."""
    head = f"{level}s: tail {int(t['n_tail_total'])} of {int(t['n_total'])}"
    rule = str(t["tail_rule"]) if "tail_rule" in t else ""  # tables from before the tail rules
    small = "too small for a useful test" in str(t["note"])
    p_naive = float(t["p_adj"])
    p_main = float(t["p_cluster_adj"]) if "p_cluster_adj" in t else p_naive  # tables from before the clustered test
    if not np.isfinite(p_main):
        return f"{head}{f' ({rule})' if rule else ''}\nno test ({str(t['note']).split(':')[0]})"
    head += f" ({rule + ', ' if rule else ''}AUC ≥ {t['threshold']:.3f})"
    warn = "\n(tail too small to test every group)" if small else ""
    if level == "record" and "p_cluster_adj" in t:
        return (
            f"{head}, {int(t['n_tail_patients'])} patients\n"
            f"patient-clustered adj. p = {p_main:.2g} {stars(p_main)}{warn}\n"
            f"(naive {t['test']} adj. p {p_naive:.2g}; design effect {float(t['design_effect']):.1f})"
        )
    test = "permutation" if rule else t["test"]  # patients: a permutation test since the tail rules
    return f"{head}\n{test}, adj. p = {p_main:.2g} {stars(p_main)}{warn}"


def meta_scatter(
    points: pd.DataFrame, summary: pd.DataFrame, large_residual: float = 2.0, small_group_share: float = 0.2
):
    """Residual against group share across attributes, data sets and experiments, per level."""
    levels = ("record", "patient")
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, 2, figsize=(2 * COLUMN_WIDTH_IN, 2.6), sharey=False)
        for ax, level in zip(axes, levels, strict=True):
            cur = points[points["level"] == level]
            for i, (attr, g) in enumerate(cur.groupby("attribute", sort=True)):
                ax.scatter(g["share_overall"], g["residual"], s=10, color=f"C{i % 10}", alpha=0.8, lw=0, label=attr)
            ax.axhline(large_residual, color="grey", lw=0.6, ls=":")
            ax.axhline(0, color="black", lw=0.5)
            ax.axvline(small_group_share, color="grey", lw=0.6, ls="--")
            row = summary.set_index("level").loc[level] if level in set(summary["level"]) else None
            sub = ""
            if row is not None and np.isfinite(row["pearson_r"]):
                sub = (
                    f"\nr = {row['pearson_r']:.2f} [{row['pearson_ci_low']:.2f}, {row['pearson_ci_high']:.2f}], "
                    f"ρ = {row['spearman_rho']:.2f} [{row['spearman_ci_low']:.2f}, {row['spearman_ci_high']:.2f}]"
                )
            ax.set(
                xscale="log",
                xlabel="group share of all units",
                ylabel="Pearson residual in the tail",
                title=f"{level}s ({len(cur)} groups){sub}",
            )
        fig.tight_layout()
        legend_below(fig, list(axes), ncol=6, fontsize=6)
    return fig


def exposure_forest(table: pd.DataFrame, title: str = ""):
    """Forest plot of the exposure model (``subgroups/exposure_model.tsv``): each coefficient with
    its 95 % interval, grouped by attribute (the label and the records-per-patient terms last),
    the reference group and the attribute's joint p-value in its label."""
    coef = table[table["group"].astype(str) != "(all)"].dropna(subset=["estimate"]).reset_index(drop=True)
    joint = table[table["group"].astype(str) == "(all)"].set_index("attribute")["p"]
    n = len(coef)
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(COLUMN_WIDTH_IN * 1.3, 0.9 + 0.17 * max(n, 1)))
        y = np.arange(n)[::-1]
        sig = (coef["p"] < 0.05).to_numpy()
        ax.hlines(y, coef["ci_low"], coef["ci_high"], color=np.where(sig, "tab:red", "grey"), lw=1.2)
        ax.scatter(coef["estimate"], y, s=12, color=np.where(sig, "tab:red", "black"), zorder=3)
        ax.axvline(0, color="black", lw=0.6)
        labels = []
        for r in coef.itertuples():
            ref = f" vs {r.reference}" if isinstance(r.reference, str) and r.reference else ""
            p = joint.get(r.attribute, np.nan)
            labels.append(f"{r.attribute}: {r.group}{ref}" + (f" (joint p {p:.2g})" if np.isfinite(p) else ""))
        ax.set_yticks(y, labels, fontsize=5)
        resp = str(table["response"].dropna().iloc[0]) if table["response"].notna().any() else "auc"
        npat = int(table["n_patients"].dropna().iloc[0]) if table["n_patients"].notna().any() else 0
        ax.set(
            xlabel=f"difference in probit patient AUC ({resp}), 95 % CI",
            title=(f"{title}\n" if title else "")
            + f"exposure model: all attributes together, {npat} patients (red: p < 0.05, unadjusted)",
            ylim=(-1, max(n, 1)),
        )
        fig.tight_layout()
    return fig
