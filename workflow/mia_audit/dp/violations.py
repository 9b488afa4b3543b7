"""Violations of a DP bound: distribution-free tests of each record's attack against its bound,
adjusted across an experiment's records (docs/methods.md, "Differential privacy: the flag").

Two one-sided tests per record, both valid whatever the distribution of the signals:

* :func:`auc_pvalues`: the empirical (Mann–Whitney) AUC against the AUC bound, by Bernstein's
  inequality for two-sample U-statistics (Hoeffding 1963, §5);
* :func:`tpr_pvalues`: the number of in-models above the j-th largest out-signal against the
  run's trade-off curve (the largest TPR at each FPR, :func:`mia_audit.dp.bounds.tpr_cap`),
  exact: the threshold's FPR is a Beta order statistic and the count given it is binomial
  (the Clopper–Pearson construction).

:func:`record_pvalues` combines them (Bonferroni within the record); :func:`holm_adjust`
across records. :func:`binormal_pvalues`, the earlier test of the bi-normal AUC, is reported
beside them but no longer decides: it assumes normal signals, and DP bounds the true ROC,
not the bi-normal summary.
"""

from __future__ import annotations

import numpy as np

ArrayLike = float | np.ndarray

#: Grid of A (the true AUC under H₀) on which :func:`auc_pvalues` bounds the supremum.
AUC_GRID = 400

#: Geometric grid of FPR values (from 10⁻¹², plus 0 and 1) on which :func:`tpr_pvalues`
#: integrates over the threshold's FPR.
FPR_GRID = 4000


# ---------------------------------------------------------------------------
# Distribution-free tests of one record against its bound
# ---------------------------------------------------------------------------


def auc_pvalues(auc_emp, n_in, n_out, bound) -> np.ndarray:
    r"""One-sided p-value of H₀: A ≤ bound, with A = P(X_in > X_out) + ½P(X_in = X_out) the
    record's true AUC and ``auc_emp`` its Mann–Whitney estimate Â from n_in and n_out models.

    Â is a two-sample U-statistic with kernel ψ ∈ [0, 1] of variance v ≤ A(1 − A), so by
    Bernstein's inequality for U-statistics (Hoeffding 1963, §5: Â is an average of averages
    of k = min(n_in, n_out) independent kernels), for t > 0::

        P(Â − A ≥ t) ≤ exp(−k t² / (2A(1 − A) + 2t/3)).

    The p-value is the supremum of that bound over A ≤ bound at t = Â − A, taken on a grid of
    :data:`AUC_GRID` cells with each cell's bound made an upper bound (the smallest t and the
    largest A(1 − A) in the cell), so it is valid for every distribution of the signals, ties
    included. 1 where Â ≤ bound or bound ≥ 1; NaN where a side has fewer than 2 models or an
    input is NaN. Vectorised with broadcasting.
    """
    a, n1, n0, b = np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in (auc_emp, n_in, n_out, bound)))
    shape = a.shape
    a, n1, n0, b = (v.ravel() for v in (a, n1, n0, b))
    p = np.full(a.shape, np.nan)
    defined = (np.minimum(n1, n0) >= 2) & ~np.isnan(a) & ~np.isnan(b)
    p[defined] = 1.0
    test = defined & (a > b) & (b < 1.0)
    if test.any():
        k = np.minimum(n1, n0)[test][:, None]
        at, bt = a[test][:, None], np.clip(b[test], 0.0, 1.0)[:, None]
        edges = bt * np.linspace(0.0, 1.0, AUC_GRID + 1)[None, :]
        lo, hi = edges[:, :-1], edges[:, 1:]
        var = np.maximum(lo * (1 - lo), hi * (1 - hi))
        var = np.where((lo <= 0.5) & (hi >= 0.5), 0.25, var)
        t_min, t_max = at - hi, at - lo
        with np.errstate(over="ignore"):
            cell = np.exp(-k * t_min**2 / (2.0 * var + 2.0 * t_max / 3.0))
        p[test] = np.minimum(1.0, cell.max(axis=1))
    return p.reshape(shape) if shape else float(p[0])


def order_statistic_rank(fpr, n_out) -> np.ndarray:
    """Rank j (1 = the largest) of the out-signal used as the threshold for a target FPR:
    max(1, ⌊fpr·(n_out + 1)⌋), so that the threshold's expected FPR j/(n_out + 1) ≤ fpr
    where the models allow it (with 100 out-models every fpr below 0.02 gives j = 1)."""
    n = np.asarray(n_out, dtype=float)
    return np.maximum(1, np.floor(float(fpr) * (n + 1.0))).astype(np.int64)


def tpr_pvalues(tp, n_in, rank, n_out, cap) -> np.ndarray:
    r"""One-sided p-value of H₀: the record's attack obeys the trade-off curve, from the count
    of in-models above a threshold set by the out-models.

    The threshold τ is the ``rank``-th largest (j-th) of the n_out out-signals and ``tp`` the
    number of the n_in in-signals strictly above it. For any distribution the threshold's
    false-positive rate U = P(X_out > τ) is stochastically at most Beta(j, n_out − j + 1)
    (a uniform order statistic), and given τ the count is Binomial(n_in, TPR(τ)) with
    TPR(τ) ≤ g(U) under H₀, g = ``cap`` (a non-decreasing function of the FPR, e.g.
    :func:`mia_audit.dp.bounds.tpr_cap` of the run's trade-off lines). So

        p = ∫ P(Binomial(n_in, g(u)) ≥ tp) dBeta(u; j, n_out − j + 1)

    bounds P(count ≥ tp) under H₀: an exact test (the Clopper–Pearson construction applied to
    both rates). It is evaluated as an upper sum on a geometric grid of :data:`FPR_GRID`
    values of u (each cell's integrand at its right end), hence conservative. Vectorised over
    records sharing one curve; NaN where a side has fewer than 1 model or an input is NaN.
    """
    from scipy.stats import beta, binom

    tp, n1, j, n0 = np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in (tp, n_in, rank, n_out)))
    shape = tp.shape
    tp, n1, j, n0 = (v.ravel() for v in (tp, n1, j, n0))
    p = np.full(tp.shape, np.nan)
    ok = ~np.isnan(tp) & ~np.isnan(n1) & ~np.isnan(j) & (n1 >= 1) & (n0 >= 1) & (j >= 1) & (j <= n0)
    if ok.any():
        u = np.r_[0.0, np.geomspace(1e-12, 1.0, FPR_GRID)]
        g = np.clip(np.asarray(cap(u[1:]), dtype=float), 0.0, 1.0)
        # records share few distinct (count, n_in, j, n_out): each is computed once
        keys, inv = np.unique(np.column_stack([tp[ok], n1[ok], j[ok], n0[ok]]), axis=0, return_inverse=True)
        t_, n1_, j_, n0_ = (keys[:, i][:, None] for i in range(4))
        mass = np.diff(beta.cdf(u[None, :], j_, n0_ - j_ + 1.0), axis=1)  # (cases, cells)
        tail = binom.sf(t_ - 1.0, n1_, g[None, :])
        p[ok] = np.minimum(1.0, np.sum(mass * tail, axis=1))[inv.ravel()]
    return p.reshape(shape) if shape else float(p[0])


def record_pvalues(p_auc, p_tpr) -> tuple[np.ndarray, np.ndarray]:
    """Each record's p-value from its tests: Bonferroni over the tests it has,
    min(1, m · min p) with m the number of defined p-values among ``p_auc`` and the columns of
    ``p_tpr`` (records × FPR levels; NaN where a level repeats a threshold or is undefined).
    Returns (p, m)."""
    allp = np.column_stack([np.asarray(p_auc, dtype=float), np.asarray(p_tpr, dtype=float).reshape(len(p_auc), -1)])
    m = np.sum(~np.isnan(allp), axis=1)
    with np.errstate(invalid="ignore"):
        low = np.where(m > 0, np.nanmin(np.where(np.isnan(allp), np.inf, allp), axis=1), np.nan)
    return np.where(m > 0, np.minimum(1.0, m * low), np.nan), m


# ---------------------------------------------------------------------------
# The bi-normal test (reported; it no longer decides a flag)
# ---------------------------------------------------------------------------


def binormal_pvalues(mu_in, mu_out, sd_in, sd_out, n_in, n_out, bound) -> np.ndarray:
    """One-sided p-value of H₀: the record's bi-normal AUC ≤ its DP bound (reported as
    ``dp_p_binormal``; valid only for normal signals, see the module docstring).

    The record's AUC is Φ(d) with d = (μ_in − μ_out)/√(σ_in² + σ_out²), so H₀ is d ≤ d₀ =
    Φ⁻¹(bound). The statistic is Welch's t = (x̄_in − x̄_out)/√(s_in²/n_in + s_out²/n_out);
    under normal signals at d = d₀ with n_in = n_out = n its numerator has mean d₀√n times
    its standard error, so t is close to a noncentral t with noncentrality λ₀ = d₀√n. The
    p-value is

        p = P(T ≥ t),   T ~ t'(ν, λ₀),   ν = min(n_in, n_out) − 1,   λ₀ = d₀·√max(n_in, n_out).

    ν = min(n) − 1 is the conservative choice for the unknown variance ratio (for the
    central t it bounds the Behrens–Fisher distribution for every ratio: Mickey & Brown
    1966, Ann. Math. Statist. 37:639; Scheffé 1970, JASA 65:1501), and √max(n) the largest
    noncentrality any variance ratio gives, so the test keeps its level whatever the ratio
    (Welch–Satterthwaite degrees of freedom do not: up to 4× the nominal rate at p = 10⁻⁴
    in simulation with a 4:1 SD ratio). Simulated sizes: ``benchmarks/bench_dp_bounds.py``.
    NaN where a side has fewer than 2 models or an input is NaN; 1 where the bound is ≥ 1.
    Vectorised with broadcasting.
    """
    from scipy.stats import nct, norm

    arrs = np.broadcast_arrays(
        *(np.asarray(a, dtype=float) for a in (mu_in, mu_out, sd_in, sd_out, n_in, n_out, bound))
    )
    mi, mo, si, so, ni, no, b = arrs
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (mi - mo) / np.sqrt(si**2 / ni + so**2 / no)
        defined = (np.minimum(ni, no) >= 2) & ~np.isnan(t) & ~np.isnan(b)
        trivial = defined & (b >= 1.0)
        test = defined & ~trivial
        p = np.full(t.shape, np.nan)
        p[trivial] = 1.0
        df = np.minimum(ni, no)[test] - 1.0
        lam = norm.ppf(np.clip(b[test], 0.5, 1.0)) * np.sqrt(np.maximum(ni, no)[test])
        p[test] = nct.sf(t[test], df, lam)
    return p if p.ndim else float(p)


def holm_adjust(pvalues) -> np.ndarray:
    """Holm (1979) step-down adjusted p-values; NaN stays NaN and is not counted.

    With the m defined p-values sorted, p_(1) ≤ … ≤ p_(m), the adjusted value of p_(i) is
    max_{j ≤ i} min(1, (m − j + 1) p_(j)). Rejecting where it is ≤ α bounds the chance of
    any false rejection among them by α under any dependence (family-wise error).
    """
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(~np.isnan(p.ravel()))
    if ok.size:
        vals = np.clip(p.ravel()[ok], 0.0, 1.0)
        order = np.argsort(vals, kind="mergesort")
        m = vals.size
        stepped = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * vals[order]))
        flat = out.ravel()
        flat[ok[order]] = stepped
        out = flat.reshape(p.shape)
    return out
