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


def epsilon_label_ref(label: str, epsilon_ref: float | None) -> str:
    """'ε = 1 [ε = 1.32 at δ = 1e-5]': the configured label with the run's ε at the reference δ
    (:data:`mia_audit.train.accounting.REFERENCE_DELTA`), so that labels compare across δ;
    unchanged without DP or without noise."""
    from mia_audit.train.accounting import REFERENCE_DELTA

    if epsilon_ref is None or not np.isfinite(epsilon_ref):
        return label
    return f"{label} [ε = {epsilon_ref:.3g} at δ = {REFERENCE_DELTA:g}]"


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


def _epsilon_positions(targets) -> tuple[np.ndarray, list, list]:
    """x of each target ε on a log10 axis (∞ one decade right of the largest finite ε), and the
    ticks and their labels."""
    vals = np.array([float(t) for t in targets], dtype=float)
    finite = vals[np.isfinite(vals)]
    inf_x = (np.log10(finite.max()) + 1.0) if finite.size else 1.0
    x = np.where(np.isfinite(vals), np.log10(np.where(np.isfinite(vals), vals, 1.0)), inf_x)
    uniq = sorted(set(vals.tolist()))
    ticks = [float(np.log10(v)) if np.isfinite(v) else inf_x for v in uniq]
    labels = [f"{v:g}" if np.isfinite(v) else "∞" for v in uniq]
    return x, ticks, labels


def bounds_by_epsilon(table, title: str = ""):
    """Upper (filled) and lower (open) bounds per target ε: AUC (left) and ε (right, log).

    ``table``: rows of ``dp_empirical.tsv`` (:data:`mia_audit.dp.empirical.COLUMNS`). One
    colour per DP level, circles for one-record canaries, squares for canary patients, a
    vertical line from each lower to its upper bound (the gap). Upper bounds of 1 (AUC) or ∞
    (ε) are drawn at the top edge.
    """
    with plt.rc_context(STYLE):
        fig, (ax_auc, ax_eps) = plt.subplots(1, 2, figsize=(2 * COLUMN_WIDTH_IN, 2.8))
        x_all, ticks, labels = _epsilon_positions(table["epsilon_target"])
        colors = {"record": "#1b6ca8", "patient": "#d1495b"}
        markers = {"record": "o", "patient": "s"}
        finite_eps = table["epsilon_upper"].replace([np.inf], np.nan)
        eps_top = (
            float(np.nanmax(np.r_[finite_eps.to_numpy(dtype=float), table["epsilon_lower"].to_numpy(dtype=float), 1.0]))
            * 3
        )
        for (level, canary), sub in table.groupby(["level", "canary"], sort=False):
            idx = sub.index.to_numpy()
            x = (
                x_all[table.index.get_indexer(idx)]
                + (0.06 if level == "patient" else -0.06)
                + (0.03 if canary == "patient" else 0.0)
            )
            color, mk = colors.get(level, "0.3"), markers.get(canary, "^")
            name = f"{level}-level DP, {'canary records' if canary == 'record' else 'canary patients'}"
            auc_up, auc_lo = sub["auc_upper"].to_numpy(float), sub["auc_lower"].to_numpy(float)
            ax_auc.vlines(x, auc_lo, auc_up, color=color, lw=0.8, alpha=0.6)
            ax_auc.scatter(x, auc_up, marker=mk, color=color, s=16, label=f"{name}: upper")
            ax_auc.scatter(x, auc_lo, marker=mk, facecolors="white", edgecolors=color, s=16, label=f"{name}: lower")
            e_up = sub["epsilon_upper"].to_numpy(float)
            e_up = np.where(np.isfinite(e_up), e_up, eps_top)
            e_lo = np.maximum(sub["epsilon_lower"].to_numpy(float), 1e-3)
            ax_eps.vlines(x, e_lo, e_up, color=color, lw=0.8, alpha=0.6)
            ax_eps.scatter(x, e_up, marker=mk, color=color, s=16)
            ax_eps.scatter(x, e_lo, marker=mk, facecolors="white", edgecolors=color, s=16)
        for ax in (ax_auc, ax_eps):
            ax.set_xticks(ticks, labels)
            ax.set_xlim(min(ticks) - 0.4, max(ticks) + 0.4)
            ax.set_xlabel("target ε of the training run")
        ax_auc.set(ylim=(0.48, 1.02), ylabel="AUC of the best attack on a canary")
        ax_eps.set(yscale="log", ylim=(1e-3, eps_top * 1.5), ylabel="ε at δ = 1e-5 (top edge: ∞)")
        fig.suptitle(title or "DP bounds from both sides", fontsize=8)
        fig.tight_layout()
        legend_below(fig, [ax_auc, ax_eps], fontsize=6, ncol=2)
    return fig
