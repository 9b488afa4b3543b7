"""Violations of a DP bound: a test of each record's AUC against its bound, adjusted across an
experiment's records (docs/methods.md, "Differential privacy").
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # torch is imported by the DP-SGD functions only: the audit's DP bounds do without it
    pass

ArrayLike = float | np.ndarray


# ---------------------------------------------------------------------------
# Violations: a test of each record against its bound, with multiplicity control
# ---------------------------------------------------------------------------


def violation_pvalues(mu_in, mu_out, sd_in, sd_out, n_in, n_out, bound) -> np.ndarray:
    """One-sided p-value of H₀: the record's bi-normal AUC ≤ its DP bound.

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
