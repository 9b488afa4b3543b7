"""Figures of record and patient risk: the central contrast, record AUC, standard errors,
and survival functions of patient AUC across experiments."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mia_audit.audit import stats
from mia_audit.plots.attacks import mean_roc_panel
from mia_audit.plots.style import COLUMN_WIDTH_IN, STYLE, legend_below, plt


def _utility_lines(util: dict | None) -> str:
    """The models' utility in one line (and the overfitting warning in a second), or ""."""
    if not util:
        return ""
    ci = ""
    if np.isfinite(util.get("test_auc_ci_low", np.nan)):
        ci = f" [{util['test_auc_ci_low']:.3f}, {util['test_auc_ci_high']:.3f}]"
    line = (
        f"target models: test AUC {util['test_auc']:.3f}{ci} (train {util['train_auc']:.3f}), "
        f"loss test {util['test_loss']:.3g} / train {util['train_loss']:.3g}"
    )
    best = util.get("best_baseline")
    if isinstance(best, str) and best:
        line += f"; best baseline ({best.replace('_', ' ')}) test AUC {util['best_baseline_auc']:.3f}"
    return line


def _headline_marks(ax, headline: pd.DataFrame) -> str:
    """At each threshold of ``headline`` (audit/headline.tsv): the range of the share across the
    tied candidates (a vertical bar) and the deconvolved share with its interval (a diamond);
    returns the legend text of the range."""
    rows = headline.drop_duplicates("threshold")
    n_cand = int(rows["range_candidates"].max()) if len(rows) else 1
    for i, r in enumerate(rows.itertuples()):
        if n_cand > 1:
            ax.vlines(
                r.threshold,
                max(r.range_share_low, 1e-9),
                max(r.range_share_high, 1e-9),
                color="black",
                lw=2.2,
                zorder=4,
                label=f"range over {n_cand} equally good candidates" if i == 0 else None,
            )
        if np.isfinite(getattr(r, "share_eb", np.nan)):
            ax.errorbar(
                r.threshold + 0.004,
                max(r.share_eb, 1e-9),
                yerr=[[max(r.share_eb - r.ci_low_eb, 0)], [max(r.ci_high_eb - r.share_eb, 0)]],
                fmt="D",
                ms=3,
                color="tab:green",
                lw=0.8,
                zorder=4,
                label="true AUC, deconvolved (95 % CI)" if i == 0 else None,
            )
    if n_cand <= 1:
        return ""
    return "; ".join(
        f"AUC ≥ {r.threshold:g}: {int(r.range_count_low)}–{int(r.range_count_high)}" for r in rows.itertuples()
    )


def risk_contrast(
    patients: pd.DataFrame,
    attacks_table: pd.DataFrame,
    roc: pd.DataFrame,
    util: dict | None = None,
    headline: pd.DataFrame | None = None,
    title: str = "",
):
    """Left: mean ROC of the aggregate attacks (log–log); right: survival function of patient AUC (log y).

    The survival function is drawn for the paper's patient AUC (the worst record, with its
    95 % band) and, where the table has it, for the cross-fitted direct patient-level attack
    (``attack_auc``, dashed; :mod:`mia_audit.audit.patients`). ``headline`` (audit/headline.tsv,
    :mod:`mia_audit.audit.headline`) adds, at each threshold, the range of the share across the
    candidates tied in the model selection and the deconvolved share of patients whose true
    AUC clears it. ``util`` (a row of models/utility.tsv, :mod:`mia_audit.train.model_utility`)
    puts the models' train and test loss and AUC under the title, and its overfitting warning in red.
    """
    with plt.rc_context(STYLE):
        fig, (ax_roc, ax_sf) = plt.subplots(1, 2, figsize=(2 * COLUMN_WIDTH_IN, 2.8))
        shown = [a for a in ("lira_online", "rmia_offline", "loss_threshold") if a in set(roc["attack"])]
        mean_roc_panel(ax_roc, roc, attacks_table, shown or None)
        ax_roc.set_title("aggregate attacks (standard protocol)")
        auc = patients["auc"].dropna().to_numpy()
        sf = stats.survival_function(auc)
        ax_sf.step(sf["threshold"], sf["share"], where="post", color="tab:red", lw=1.2, label="patients")
        ax_sf.fill_between(
            sf["threshold"], sf["ci_low"], sf["ci_high"], step="post", color="tab:red", alpha=0.2, lw=0, label="95% CI"
        )
        if "attack_auc" in patients and patients["attack_auc"].notna().any():
            sf_att = stats.survival_function(patients["attack_auc"].dropna().to_numpy())
            ax_sf.step(
                sf_att["threshold"],
                sf_att["share"],
                where="post",
                color="tab:purple",
                lw=1.0,
                ls="--",
                label="direct patient attack",
            )
        tied = _headline_marks(ax_sf, headline) if headline is not None and len(headline) else ""
        n90, n99 = (int((auc >= t).sum()) for t in (0.9, 0.99))
        for t in (0.9, 0.99):
            ax_sf.axvline(
                t, color="grey", lw=0.6, ls=":", label=f"AUC 0.9 and 0.99: {n90} and {n99} patients at or above"
            )
        ax_sf.set(
            yscale="log",
            xlim=(0.5, 1.0),
            ylim=(0.5 / len(auc), 1.05),
            xlabel="patient MIA AUC (solid: worst record)",
            ylabel="share of patients with AUC ≥ x",
            title=f"patient risk ({len(auc)} patients)",
        )
        tied = f"patients across the equally good candidates: {tied}" if tied else ""
        head = "\n".join(t for t in (title, _utility_lines(util), tied) if t)
        if head:
            fig.suptitle(head, fontsize=7 if util else 8)
        fig.tight_layout()
        warning = (util or {}).get("warning") or ""
        if warning:
            # above the title: the saved figure's tight bounding box takes it in
            import textwrap

            text = "\n".join(textwrap.wrap("WARNING: " + warning, 130))
            fig.text(0.5, 1.0, text, ha="center", va="bottom", fontsize=6, color="tab:red")
        legend_below(fig, ax_roc)
        legend_below(fig, ax_sf)
    return fig


def record_auc(records: pd.DataFrame, patients: pd.DataFrame, title: str = ""):
    """Histogram of record-level MIA AUC (log counts), the mean patient AUC marked."""
    auc = records["auc"].to_numpy(dtype=float)
    defined = auc[np.isfinite(auc)]
    mean_patient = float(np.nanmean(patients["auc"].to_numpy(dtype=float)))
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(COLUMN_WIDTH_IN, 2.4))
        lo = min(0.5, np.floor(defined.min(initial=0.5) * 10) / 10)
        ax.hist(defined, bins=np.linspace(lo, 1.0, 51), color="tab:blue", alpha=0.8, lw=0)
        ax.axvline(mean_patient, color="tab:red", lw=1.2, label=f"mean patient AUC {mean_patient:.3f}")
        ax.axvline(defined.mean(), color="black", lw=0.8, ls="--", label=f"mean record AUC {defined.mean():.3f}")
        ax.axvline(0.5, color="grey", lw=0.6, ls=":")
        ax.set(
            yscale="log",
            xlabel="record MIA AUC (bi-normal)",
            ylabel="records",
            title=(f"{title}\n" if title else "")
            + f"{defined.size} records with a defined AUC, {auc.size - defined.size} without",
        )
        ax.set_ylim(0.5, ax.get_ylim()[1] * 1.5)
        fig.tight_layout()
        legend_below(fig, ax)
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
        ax_h.set(
            xlabel="standard error of record AUC",
            ylabel="records",
            yscale="log",
            title=f"median SE: delta {ok['se'].median():.3f}, H–M {ok['se_hm'].median():.3f}",
        )
        ax_s.scatter(ok["auc"], ok["se"], s=2, color="tab:blue", alpha=0.5, lw=0, label="delta method")
        ax_s.scatter(ok["auc"], ok["se_hm"], s=2, color="tab:orange", alpha=0.5, lw=0, label="Hanley–McNeil")
        ax_s.set(xlabel="record MIA AUC", ylabel="standard error", title="SE against AUC")
        if title:
            fig.suptitle(title, fontsize=8)
        fig.tight_layout()
        legend_below(fig, [ax_h, ax_s], ncol=2)
    return fig


def esf_by_experiment(patients: dict[str, pd.DataFrame], title: str = "", utilities: dict[str, dict] | None = None):
    """Empirical survival function of patient AUC, one line (with 95 % band) per experiment;
    with ``utilities`` (experiment → row of models/utility.tsv) each legend entry names the
    models' test AUC and train/test loss (:func:`mia_audit.train.model_utility.legend`)."""
    from mia_audit.train.model_utility import legend as utility_legend

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
            ax.step(
                sf["threshold"],
                sf["share"],
                where="post",
                color=f"C{i % 10}",
                lw=1.2,
                label=f"{name} ({auc.size} patients"
                + (f"; {utility_legend(utilities[name])}" if utilities and name in utilities else "")
                + ")",
            )
            ax.fill_between(
                sf["threshold"], sf["ci_low"], sf["ci_high"], step="post", color=f"C{i % 10}", alpha=0.15, lw=0
            )
        ax.set(
            yscale="log",
            xlim=(0.5, 1.0),
            ylim=(0.5 / n_min, 1.05),
            xlabel="patient MIA AUC (worst record)",
            ylabel="share of patients with AUC ≥ x",
            title=title,
        )
        fig.tight_layout()
        legend_below(fig, ax)
    return fig


def binormal_check(records: pd.DataFrame, title: str = ""):
    """Left: bi-normal against empirical (Mann–Whitney) record AUC, flagged records marked;
    right: the distribution of their difference."""
    ok = records.dropna(subset=["auc", "auc_emp"])
    flag = ok["binormal_flag"].astype(bool).to_numpy()
    diff = (ok["auc"] - ok["auc_emp"]).to_numpy(dtype=float)
    with plt.rc_context(STYLE):
        fig, (ax_s, ax_h) = plt.subplots(1, 2, figsize=(2 * COLUMN_WIDTH_IN, 2.6))
        ax_s.scatter(ok["auc_emp"][~flag], ok["auc"][~flag], s=3, color="tab:blue", alpha=0.5, lw=0, label="agree")
        ax_s.scatter(
            ok["auc_emp"][flag], ok["auc"][flag], s=6, color="tab:red", lw=0, label=f"flagged ({int(flag.sum())})"
        )
        lo = float(min(ok[["auc", "auc_emp"]].min().min(), 0.5)) if len(ok) else 0.0
        ax_s.plot([lo, 1], [lo, 1], color="grey", lw=0.6, ls=":")
        ax_s.set(
            xlabel="empirical (Mann–Whitney) AUC",
            ylabel="bi-normal AUC",
            title=f"{int(flag.sum())} of {len(ok)} records flagged ({100 * flag.mean() if len(ok) else 0:.1f} %)",
        )
        ax_s.legend(frameon=False, loc="upper left", markerscale=2)
        bins = np.linspace(-max(0.02, np.abs(diff).max(initial=0.0)), max(0.02, np.abs(diff).max(initial=0.0)), 41)
        ax_h.hist(diff, bins=bins, color="tab:blue", alpha=0.7, lw=0, label="all")
        ax_h.hist(diff[flag], bins=bins, color="tab:red", alpha=0.8, lw=0, label="flagged")
        ax_h.axvline(0, color="black", lw=0.5)
        ax_h.set(
            yscale="log",
            xlabel="bi-normal − empirical AUC",
            ylabel="records",
            title=f"mean |Δ| {np.abs(diff).mean() if diff.size else np.nan:.3f}, "
            f"95th percentile {np.quantile(np.abs(diff), 0.95) if diff.size else np.nan:.3f}",
        )
        ax_h.legend(frameon=False)
        if title:
            fig.suptitle(title, fontsize=8)
        fig.tight_layout()
    return fig


def patient_intervals(patients: pd.DataFrame, title: str = "", top: int = 60):
    """Left: the ``top`` most exposed patients: worst-record AUC, bias-corrected maximum and the
    interval of the maximum (:mod:`mia_audit.audit.patients`); right: direct patient attack AUC
    against the worst-record AUC, by number of records."""
    d = patients.dropna(subset=["auc"]).sort_values("auc", ascending=False)
    head = d.head(top).iloc[::-1]
    with plt.rc_context(STYLE):
        fig, (ax_c, ax_s) = plt.subplots(1, 2, figsize=(2 * COLUMN_WIDTH_IN, 3.2))
        y = np.arange(len(head))
        ax_c.hlines(y, head["max_ci_low"], head["max_ci_high"], color="grey", lw=1.0, label="95 % interval of the max")
        ax_c.scatter(head["auc"], y, s=8, color="black", zorder=3, label="worst record (max)")
        ax_c.scatter(head["auc_bc"], y, s=10, marker="|", color="tab:red", zorder=4, label="bias-corrected max")
        ax_c.set_yticks(y, head["patient_id"].astype(str), fontsize=4)
        ax_c.set(
            xlabel="patient MIA AUC",
            title=f"{len(head)} most exposed of {len(d)} patients",
            ylim=(-1, len(head)),
        )
        ax_c.legend(frameon=False, loc="upper left", fontsize=5)
        if "attack_auc" in d:
            sc = ax_s.scatter(d["auc"], d["attack_auc"], c=d["n_records"], s=6, cmap="viridis", lw=0, alpha=0.8, vmin=1)
            fig.colorbar(sc, ax=ax_s, label="records of the patient")
        ax_s.plot([0.4, 1], [0.4, 1], color="grey", lw=0.6, ls=":")
        ax_s.set(
            xlabel="worst-record AUC (max)",
            ylabel="direct patient attack AUC (empirical)",
            title="all records of a patient combined",
        )
        if title:
            fig.suptitle(title, fontsize=8)
        fig.tight_layout()
    return fig
