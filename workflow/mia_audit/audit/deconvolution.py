r"""The headline corrected for measurement error: empirical-Bayes deconvolution of patient AUCs.

Each patient's AUC is estimated from a finite number of models, so the share of patients
whose *estimated* AUC clears a threshold is not the share whose *true* AUC does: noise moves
patients across the threshold (mostly upwards in the tail, where more patients sit below it
than above), and the maximum over a patient's records adds a selection bias. This module
estimates the distribution of the true patient AUCs and reads the shares off it.

**Measurement model.** On the probit scale a patient's bias-corrected maximum
:math:`y_p = \Phi^{-1}(\mathrm{auc\_bc}_p)` (:mod:`mia_audit.audit.patients`) is taken as
:math:`y_p = \theta_p + \varepsilon_p`, :math:`\varepsilon_p \sim N(0, s_p^2)` with
:math:`s_p` the bootstrap SD of the patient's maximum over models (``max_se``), and the true
probit AUCs :math:`\theta_p` as draws from an unknown distribution g.

**g-modeling** (Efron 2016, "Empirical Bayes deconvolution estimates", Biometrika 103:1–20;
Narasimhan & Efron 2020, J. Stat. Softw. 94(11), the R package deconvolveR). g lives on a
grid :math:`\theta_1..\theta_m` as :math:`g(\alpha) = e^{Q\alpha}/\sum_j e^{(Q\alpha)_j}`,
Q a smooth basis (here Legendre polynomials of degree 1–5 on the grid, centred and scaled);
α maximises the penalised marginal log-likelihood
:math:`\sum_p w_p \log \sum_j g_j\, \varphi((y_p - \theta_j)/s_p)/s_p - c_0\lVert\alpha\rVert^2`
(L-BFGS with its analytic gradient). The share of patients with true AUC ≥ t is
:math:`\sum_j g_j 1[\theta_j \ge \Phi^{-1}(t)]`.

**Interval.** A bootstrap over patients (independent Poisson(1) weights :math:`w_p`, the
Poisson bootstrap; every replicate refitted from the estimate) gives the estimate's variance;
the interval is the exact binomial interval at the deconvolved share with the effective sample
size that variance implies, never narrower than the binomial interval of the n patients
(:func:`mia_audit.audit.patients.joint_interval`, Korn & Graubard 1998). The floor matters in
the tail: a smooth g extrapolates the share of patients above a high threshold from the body
of the distribution, with a precision that its shape, not the data, provides (on the default
cohort the bootstrap alone gave 0.13–0.29 % for a share of 0.19 % of 250 patients), and by
simulation the bootstrap alone is about 10 % too narrow. It covers the population share of
patients whose true AUC clears the threshold (not of their estimates); coverage by
simulation: ``benchmarks/bench_headline.py`` (docs/methods.md).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import optimize
from scipy import stats as sps

from mia_audit.audit.patients import joint_interval

#: polynomial degree of the log-density basis and the ridge penalty c0 (Efron 2016's defaults: 5, 1)
DEGREE = 5
PENALTY = 1.0
#: grid points of g
GRID_POINTS = 120
#: smallest measurement SD used (probit scale)
MIN_SD = 0.02
#: AUC range of the probit response
AUC_CLIP = (1e-4, 1 - 1e-4)


def basis(grid: np.ndarray, degree: int = DEGREE) -> np.ndarray:
    """(grid points, degree) Legendre polynomials of degree 1..``degree`` on the grid mapped to
    [−1, 1], each centred and scaled to SD 1."""
    x = 2 * (grid - grid.min()) / (grid.max() - grid.min()) - 1
    q = np.polynomial.legendre.legvander(x, degree)[:, 1:]
    return (q - q.mean(axis=0)) / q.std(axis=0)


#: the fixed range of g on the probit scale: AUC 0.023 to 0.99997 (a grid that moved with the data
#: would change the model from sample to sample, a variance the bootstrap cannot see)
GRID_RANGE = (-2.0, 4.0)


def default_grid(y: np.ndarray | None = None) -> np.ndarray:
    """The grid of g: :data:`GRID_POINTS` points over :data:`GRID_RANGE`, widened to the data
    (± 1) where they reach beyond it."""
    lo, hi = GRID_RANGE
    if y is not None and len(y):
        lo, hi = min(lo, float(np.min(y)) - 1.0), max(hi, float(np.max(y)) + 1.0)
    return np.linspace(lo, hi, GRID_POINTS)


def fit_g(y, s, grid, weights=None, penalty: float = PENALTY, degree: int = DEGREE, start=None):
    """Efron's g-model fitted to (y, s): returns (g on ``grid``, α). ``weights`` per observation
    (default 1); ``start`` the α to start from."""
    y = np.asarray(y, dtype=np.float64)
    s = np.asarray(s, dtype=np.float64)
    w = np.ones_like(y) if weights is None else np.asarray(weights, dtype=np.float64)
    q = basis(grid, degree)
    lik = sps.norm.pdf((y[:, None] - grid[None, :]) / s[:, None]) / s[:, None]

    def objective(alpha):
        e = q @ alpha
        g = np.exp(e - e.max())
        g /= g.sum()
        f = np.maximum(lik @ g, 1e-300)
        dlog = (lik * g) @ (q - g @ q) / f[:, None]  # ∂ log f_p / ∂α
        return -(w @ np.log(f) - penalty * alpha @ alpha), -(w @ dlog - 2 * penalty * alpha)

    alpha0 = np.zeros(q.shape[1]) if start is None else start
    res = optimize.minimize(objective, alpha0, jac=True, method="L-BFGS-B")
    e = q @ res.x
    g = np.exp(e - e.max())
    return g / g.sum(), res.x


def response(auc_bc, max_se) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(y, s, used) from a patient table's ``auc_bc`` and ``max_se``: the probit of the
    bias-corrected maximum (AUC clipped to :data:`AUC_CLIP`) and its SD (at least
    :data:`MIN_SD`); ``used`` marks the patients with both defined."""
    a = np.asarray(auc_bc, dtype=np.float64)
    sd = np.asarray(max_se, dtype=np.float64)
    used = np.isfinite(a) & np.isfinite(sd)
    y = sps.norm.ppf(np.clip(a[used], *AUC_CLIP))
    return y, np.maximum(sd[used], MIN_SD), used


def deconvolved_shares(
    auc_bc, max_se, thresholds, n_boot: int = 500, seed: int = 0, confidence: float = 0.95
) -> pd.DataFrame:
    """Per threshold: ``count_eb`` (share × patients), ``share_eb``, ``ci_low_eb``, ``ci_high_eb``
    (module notes; NaN without replicates) and ``n_eb`` (the patients used). NaN throughout for
    fewer than 10 patients with a defined ``auc_bc`` and ``max_se``."""
    t = np.asarray(thresholds, dtype=np.float64)
    y, s, used = response(auc_bc, max_se)
    out = pd.DataFrame({"threshold": t, "count_eb": np.nan, "n_eb": int(used.sum())})
    out["share_eb"], out["ci_low_eb"], out["ci_high_eb"] = np.nan, np.nan, np.nan
    if y.size < 10:
        return out
    grid = default_grid(y)
    above = grid[:, None] >= sps.norm.ppf(t)[None, :]
    g, alpha = fit_g(y, s, grid)
    share = g @ above
    out["share_eb"], out["count_eb"] = share, share * y.size
    if n_boot:
        rng = np.random.default_rng([int(seed), 31])
        reps = np.empty((int(n_boot), t.size))
        for b in range(int(n_boot)):
            gb, _ = fit_g(y, s, grid, weights=rng.poisson(1.0, y.size), start=alpha)
            reps[b] = gb @ above
        low, high, _ = joint_interval(share * y.size, np.full(t.size, y.size), reps, 1 - confidence)
        out["ci_low_eb"], out["ci_high_eb"] = low, high
    return out
