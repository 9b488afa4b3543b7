"""The headline's intervals (mia_audit.audit.headline, .deconvolution, the joint bootstrap of
mia_audit.audit.patients), checked against independent computations and reduced-size
simulations with known truth (the full simulations: benchmarks/bench_headline.py, figures in
docs/methods.md)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from benchmark_modules import load_benchmark
from scipy import optimize
from scipy import stats as sps

from mia_audit.audit import deconvolution, headline, patients


def test_g_model_gradient_is_the_numerical_one():
    """The penalised marginal log-likelihood's analytic gradient against finite differences."""
    rng = np.random.default_rng(0)
    y = rng.normal(0.5, 0.8, 60)
    s = rng.uniform(0.05, 0.3, 60)
    w = rng.poisson(1.0, 60).astype(float)
    grid = deconvolution.default_grid(y)
    q = deconvolution.basis(grid)
    lik = sps.norm.pdf((y[:, None] - grid[None, :]) / s[:, None]) / s[:, None]

    def objective(alpha):  # written out again: −(Σ w log Σ_j g_j L_pj − c0 |α|²)
        g = np.exp(q @ alpha)
        g /= g.sum()
        return -(w @ np.log(lik @ g) - deconvolution.PENALTY * alpha @ alpha)

    _, alpha = deconvolution.fit_g(y, s, grid, weights=w)
    assert np.abs(optimize.approx_fprime(alpha, objective, 1e-6)).max() < 1e-2  # a stationary point
    a0 = rng.normal(size=q.shape[1])
    g_lib, _ = deconvolution.fit_g(y, s, grid, weights=w, start=a0)
    res = optimize.minimize(objective, a0, method="Nelder-Mead", options={"maxiter": 20000, "xatol": 1e-8})
    g_nm = np.exp(q @ res.x)
    g_nm /= g_nm.sum()
    np.testing.assert_allclose(g_lib, g_nm, atol=2e-3)  # the same optimum by a derivative-free search


def _mixture_truth(t):
    """P(θ ≥ Φ⁻¹(t)) for θ ~ 0.6 N(0.4, 0.5²) + 0.4 N(1.3, 0.45²) (the test's own population)."""
    d = sps.norm.ppf(t)
    return 0.6 * sps.norm.sf(d, 0.4, 0.5) + 0.4 * sps.norm.sf(d, 1.3, 0.45)


def test_deconvolved_share_covers_the_true_share_in_a_small_simulation():
    """Patients with true probit AUCs from a two-component mixture and normal measurement errors of
    known SD (generated here, not by the library): the deconvolved share's interval covers the
    population share of *true* AUCs; the naive share of the estimates is biased upwards in the
    tail. 60 data sets (the benchmark: 200 cube-level data sets)."""
    rng = np.random.default_rng(11)
    th = np.array([0.8, 0.9, 0.95])
    truth = _mixture_truth(th)
    covers, est, naive = [], [], []
    for _ in range(60):
        comp = rng.random(250) < 0.6
        theta = np.where(comp, rng.normal(0.4, 0.5, 250), rng.normal(1.3, 0.45, 250))
        s = rng.uniform(0.1, 0.3, 250)
        y = theta + s * rng.standard_normal(250)
        out = deconvolution.deconvolved_shares(sps.norm.cdf(y), s, th, n_boot=60, seed=int(rng.integers(1e9)))
        covers.append((out["ci_low_eb"] <= truth) & (truth <= out["ci_high_eb"]))
        est.append(out["share_eb"])
        naive.append((y[:, None] >= sps.norm.ppf(th)).mean(axis=0))
    cov = np.mean(covers, axis=0)
    assert (cov >= 0.85).all(), cov  # 60 sets: 0.95 − 3.5 SE
    # the penalised g-model shrinks towards a smooth prior: a small bias (−0.025 at 0.9 here,
    # against a standard error of one estimate of about 0.027) that the interval absorbs
    bias = np.mean(est, axis=0) - truth
    assert (np.abs(bias) < 0.035).all(), bias
    assert np.mean(naive, axis=0)[2] - truth[2] > 0.01  # noise pushes estimates over a high threshold


def test_deconvolution_needs_patients_and_never_claims_more_than_a_count():
    few = deconvolution.deconvolved_shares([0.9] * 5, [0.1] * 5, [0.8], n_boot=10)
    assert few["share_eb"].isna().all() and few["n_eb"].item() == 5
    rng = np.random.default_rng(2)
    y = rng.normal(0.2, 0.4, 250)
    out = deconvolution.deconvolved_shares(sps.norm.cdf(y), np.full(250, 0.1), [0.99], n_boot=40)
    # a tiny share: the interval is at least the binomial interval of 250 patients at that share
    from statsmodels.stats.proportion import proportion_confint

    lo, hi = proportion_confint(out["count_eb"].item(), 250, method="beta")
    assert out["ci_high_eb"].item() >= hi - 1e-12 and out["ci_low_eb"].item() <= lo + 1e-12


def test_joint_interval_covers_the_designs_share_in_a_small_simulation():
    """Reduced-size run of benchmarks/bench_headline.py: 40 cohorts of 120 patients, 60 models. The
    joint interval (Clopper–Pearson at the bootstrap's effective sample size) covers the mean
    plug-in share (its estimand) in about 95 % of cohorts, and its design effect is at least 1."""
    bench = load_benchmark("bench_headline")
    df = bench.run(sets=40, n_patients=120, n_models=60, rho=0.47, model_effect=0.3, boot=100, eb_boot=0, seed=3)
    for _, d in df.groupby("threshold"):
        plug = d["share"].mean()
        cov = ((d["ci_low_boot"] <= plug) & (plug <= d["ci_high_boot"])).mean()
        assert cov >= 0.85, (d["threshold"].iloc[0], cov)
    assert (df["deff_boot"] >= 1).all() and (df["ci_low_boot"] <= df["share"]).all()


def test_headline_bootstrap_adds_only_the_models_covariance():
    """The replicate formula of PatientAccumulator.headline_bootstrap recomputed from its running sums:
    patient resample plus the model resample scaled by λ = √(1 − within/Var)."""
    rng = np.random.default_rng(4)
    conf, member, ids = _cohort(rng, [1, 3, 2, 5, 1, 4] * 6, n_models=40)
    codes, uniq = pd.factorize(pd.Series(ids))
    acc = patients.PatientAccumulator(
        codes, len(uniq), 40, 80, np.random.default_rng([1, 13]), thresholds=[0.6, 0.7], attack_permutations=0
    )
    acc.update(conf, member, np.arange(conf.shape[1]))
    reps = acc.headline_bootstrap()
    hb = acc.hb
    pat = hb["patients"] / hb["weight"][:, None]
    mod = hb["models"] / hb["n"]
    lam = np.sqrt(np.clip(1 - hb["within"] / hb["n"] ** 2 / mod.var(axis=0), 0, 1))
    np.testing.assert_allclose(reps, np.clip(pat + lam * (mod - mod.mean(axis=0)), 0, 1))
    assert reps.shape == (80, 2) and (lam < 1).all()  # the within-patient part is taken out


def _cohort(rng, sizes, n_models=24, shift=1.0, rho=0.5):
    confs, members, ids = [], [], []
    for p, k in enumerate(sizes):
        inside = np.zeros(n_models, dtype=bool)
        inside[rng.choice(n_models, n_models // 2, replace=False)] = True
        z = np.sqrt(rho) * rng.standard_normal((n_models, 1)) + np.sqrt(1 - rho) * rng.standard_normal((n_models, k))
        confs.append(z + shift * rng.uniform(0, 2, k) * inside[:, None])
        members.append(np.repeat(inside[:, None], k, axis=1))
        ids += [f"p{p}"] * k
    return np.hstack(confs), np.hstack(members), np.array(ids)


def test_headline_table_ranges_over_the_tied_candidates():
    def part(counts):
        return pd.DataFrame({"threshold": [0.8, 0.9], "count": counts, "n": 250, "share": np.array(counts) / 250})

    parts = [
        (headline.candidate_description("a", True, None, 0.8), part([2, 1])),
        ({"candidate": "b", "chosen": False, "tied": True, "test_auc": 0.79}, part([19, 6])),
        ({"candidate": "c", "chosen": False, "tied": True, "test_auc": 0.81}, part([7, 1])),
        ({"candidate": "d", "chosen": False, "tied": False, "test_auc": 0.7}, part([90, 40])),
    ]
    t = headline.headline_table(parts)
    assert list(t.columns[:6]) == headline.CANDIDATE_COLUMNS
    assert t["candidate"].tolist() == ["a", "b", "c", "d"] * 2  # by threshold, the chosen one first
    at = t[t["threshold"] == 0.8].iloc[0]
    assert (at["range_count_low"], at["range_count_high"], at["range_candidates"]) == (2, 19, 3)  # d is not tied
    assert t[t["threshold"] == 0.9]["range_share_high"].iloc[0] == pytest.approx(6 / 250)
    sel = pd.DataFrame(
        {
            "candidate": ["a", "b"],
            "tied": [True, False],
            "val_loss_vs_chosen": [0, 0.05],
            "val_loss_vs_chosen_se": [0, 0.01],
        }
    )
    assert headline.candidate_description("b", False, sel, 0.7)["tied"] is False
