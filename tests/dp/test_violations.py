"""The distribution-free violation tests (mia_audit.dp.violations), checked against independent
computations and by simulation of correct runs with non-normal signals and the exact
likelihood-ratio attack (the full-size table: benchmarks/bench_dp_bounds.py flags)."""

import math

import numpy as np
import pytest
from scipy import optimize
from scipy.stats import norm

from mia_audit.dp import audit, bounds, violations


def gaussian_cap(mu):
    """TPR cap of the Gaussian mechanism with sensitivity/σ = μ in closed form (Dong, Roth & Su
    2022, G_μ): Φ(Φ⁻¹(α) + μ), independent of dp-accounting."""
    return lambda u: norm.cdf(norm.ppf(np.clip(u, 1e-300, 1.0)) + mu)


def test_auc_pvalue_is_the_bernstein_bound_maximised_over_the_null():
    # an independent maximisation of exp(−k t²/(2A(1−A) + 2t/3)) over A ≤ bound
    for a, k, b in [(0.95, 100, 0.8), (0.9, 40, 0.6), (1.0, 20, 0.94), (0.7, 200, 0.62)]:

        def neg_log(A, a=a, k=k):
            t = a - A
            return k * t * t / (2 * A * (1 - A) + 2 * t / 3)

        res = optimize.minimize_scalar(neg_log, bounds=(0.0, b), method="bounded", options={"xatol": 1e-10})
        exact = math.exp(-min(res.fun, neg_log(b)))
        got = violations.auc_pvalues(a, k, k + 7, b)  # k = min(n_in, n_out)
        assert exact <= got <= exact * 1.05 + 1e-12  # the grid's cells make it a little larger, never smaller
    assert violations.auc_pvalues(0.7, 50, 50, 0.75) == 1.0  # below the bound
    assert violations.auc_pvalues(0.99, 50, 50, 1.0) == 1.0  # a trivial bound
    got = violations.auc_pvalues([0.9, np.nan, 0.9], [50, 50, 1], 50, 0.6)
    assert got[0] < 0.05 and np.isnan(got[1]) and np.isnan(got[2])


def test_tpr_pvalue_against_monte_carlo_of_its_definition():
    # P(count ≥ tp) when U ~ Beta(j, n_out − j + 1) and count ~ Binomial(n_in, g(U)), by
    # simulation, against the function's quadrature (an upper sum: never below, close above)
    rng = np.random.default_rng(0)
    cap = gaussian_cap(1.0)
    for tp, n_in, j, n_out in [(12, 100, 1, 100), (40, 100, 10, 100), (3, 20, 2, 20)]:
        u = rng.beta(j, n_out - j + 1, 400_000)
        mc = np.mean(rng.binomial(n_in, cap(u)) >= tp)
        se = math.sqrt(mc * (1 - mc) / u.size)
        got = violations.tpr_pvalues(tp, n_in, j, n_out, cap)
        assert mc - 4 * se <= got <= mc + 4 * se + 0.01 * mc
    # one trade-off envelope from dp-accounting's PLD (q = 1, T = 1: the Gaussian mechanism)
    # gives the closed form's p-values up to its pessimistic discretisation
    lines = bounds.tradeoff_lines(1.0, 1.0, 1, 1)
    for tp in (5, 12, 20):
        closed = violations.tpr_pvalues(tp, 100, 1, 100, cap)
        assert closed <= violations.tpr_pvalues(tp, 100, 1, 100, lambda u: bounds.tpr_cap(u, lines)) <= closed * 1.05


def test_tpr_test_is_exact_when_the_attack_attains_the_tradeoff_curve():
    # Gaussian mechanism, μ = 1: the signal itself is the likelihood ratio's monotone transform,
    # so every threshold test sits on the curve; p-values are (discretely) uniform, not smaller
    rng = np.random.default_rng(1)
    reps, n = 4000, 50
    x_in, x_out = rng.normal(1.0, 1.0, (n, reps)), rng.normal(0.0, 1.0, (n, reps))
    conf = np.vstack([x_in, x_out])
    member = np.zeros_like(conf, dtype=bool)
    member[:n] = True
    st = audit.record_statistics(conf, member, [0.01, 0.2])
    for i, j in ((0, 1), (1, 10)):
        assert (st[f"rank_{i}"] == j).all()
        p = violations.tpr_pvalues(st[f"tp_{i}"], n, j, n, gaussian_cap(1.0))
        for level in (0.05, 0.2):
            rate = np.mean(p <= level)
            assert rate <= level + 3 * math.sqrt(level / reps)
            assert rate >= 0.5 * level  # exact up to the count's discreteness
    # the AUC test is valid too (and far more conservative)
    p = violations.auc_pvalues(st["auc_emp"], n, n, norm.cdf(1 / math.sqrt(2)))
    assert np.mean(p <= 0.05) <= 0.05


def test_non_normal_signals_at_the_bound_are_not_flagged_and_the_binormal_test_is_fooled():
    # one subsampled Gaussian step, q = 0.5, σ = 0.2 (patient level): member signals are
    # Bernoulli(q) + σZ, bimodal; the signal is the exact likelihood ratio's monotone transform
    sigma, q = 0.2, 0.5
    lines = bounds.tradeoff_lines(sigma, q, 1, 1)
    bound = bounds.profile_auc_bound(sigma, q, 1, 1)
    assert bound == pytest.approx(0.7515, abs=5e-4)
    rng = np.random.default_rng(2)
    reps, n = 3000, 100
    x_in = rng.binomial(1, q, (n, reps)) + sigma * rng.standard_normal((n, reps))
    x_out = sigma * rng.standard_normal((n, reps))
    conf = np.vstack([x_in, x_out])
    member = np.zeros_like(conf, dtype=bool)
    member[:n] = True
    st = audit.record_statistics(conf, member, [0.001, 0.01, 0.1])
    p_auc = violations.auc_pvalues(st["auc_emp"], n, n, bound)
    p_tpr = np.column_stack(
        [
            violations.tpr_pvalues(st[f"tp_{i}"], n, st[f"rank_{i}"], n, lambda u: bounds.tpr_cap(u, lines))
            for i in range(3)
        ]
    )
    p, m = violations.record_pvalues(p_auc, p_tpr)
    assert (m == 3).all()  # the AUC and two distinct thresholds (j = 1 for 0.001 and 0.01, j = 10)
    assert np.mean(p <= 0.05) <= 0.05 and np.mean(p <= 0.01) <= 0.01
    # the bi-normal test of the same records rejects far beyond its level
    mi, mo = x_in.mean(0), x_out.mean(0)
    si, so = x_in.std(0, ddof=1), x_out.std(0, ddof=1)
    assert np.mean(violations.binormal_pvalues(mi, mo, si, so, n, n, bound) <= 0.05) > 0.3


def test_a_broken_run_is_flagged():
    # the same step with half the noise the accounting claims: the TPR test finds it
    sigma, q = 0.2, 0.5
    lines = bounds.tradeoff_lines(2 * sigma, q, 1, 1)
    rng = np.random.default_rng(3)
    n, reps = 100, 200
    conf = np.vstack(
        [rng.binomial(1, q, (n, reps)) + sigma * rng.standard_normal((n, reps)), sigma * rng.standard_normal((n, reps))]
    )
    member = np.zeros_like(conf, dtype=bool)
    member[:n] = True
    st = audit.record_statistics(conf, member, [0.01])
    p = violations.tpr_pvalues(st["tp_0"], n, st["rank_0"], n, lambda u: bounds.tpr_cap(u, lines))
    assert np.mean(p <= 0.05) > 0.9  # each column one record of a broken run: flagged at 5 %


def test_record_statistics_by_brute_force():
    rng = np.random.default_rng(4)
    conf = rng.standard_normal((30, 6))
    conf[3, 2] = np.nan  # a diverged model
    conf[:, 5] = np.round(conf[:, 5])  # ties
    member = rng.random((30, 6)) < 0.5
    st = audit.record_statistics(conf, member, [0.001, 0.02, 0.3])
    for r in range(6):
        ok = np.isfinite(conf[:, r])
        xi, xo = conf[ok & member[:, r], r], conf[ok & ~member[:, r], r]
        assert st["n_in"][r] == xi.size and st["n_out"][r] == xo.size
        auc = (np.sum(xi[:, None] > xo[None, :]) + 0.5 * np.sum(xi[:, None] == xo[None, :])) / (xi.size * xo.size)
        assert st["auc_emp"][r] == pytest.approx(auc)
        ranks = [max(1, math.floor(f * (xo.size + 1))) for f in (0.001, 0.02, 0.3)]
        seen = set()
        for i, j in enumerate(ranks):
            if j in seen:
                assert np.isnan(st[f"rank_{i}"][r]) and np.isnan(st[f"tp_{i}"][r])
                continue
            seen.add(j)
            tau = np.sort(xo)[::-1][j - 1]
            assert st[f"rank_{i}"][r] == j and st[f"tp_{i}"][r] == np.sum(xi > tau)


def test_record_pvalues_is_bonferroni_over_defined_tests():
    p, m = violations.record_pvalues(
        np.array([0.01, np.nan, 0.5]), np.array([[0.02, np.nan], [np.nan, np.nan], [0.1, 0.9]])
    )
    np.testing.assert_allclose(p, [0.02, np.nan, 0.3])
    assert m.tolist() == [2, 0, 3]


def test_an_uninformative_curve_gives_the_beta_binomial_tail():
    # the p-value of a trivial cap (TPR ≤ 1) is 1, and of the curve TPR = FPR (no information)
    # the beta-binomial tail P(count ≥ tp) with count ~ Binomial(n_in, U), U ~ Beta(j, n_out − j + 1)
    from scipy.stats import betabinom

    assert violations.tpr_pvalues(100, 100, 1, 100, lambda u: np.ones_like(u)) == pytest.approx(1.0)
    for tp, n_in, j, n_out in [(3, 30, 1, 40), (9, 30, 5, 40)]:
        exact = betabinom.sf(tp - 1, n_in, j, n_out - j + 1)
        assert exact <= violations.tpr_pvalues(tp, n_in, j, n_out, lambda u: u) <= exact * 1.02


def test_false_flag_table_reduced_correct_runs_with_the_exact_lr_attack_are_rarely_flagged():
    # A reduced benchmarks/bench_dp_bounds.py flags: whole experiments of correct runs through the
    # workflow's audit path (record_risk → record_statistics → add_dp_bounds, Holm at 0.05), with
    # signals drawn here, independently of mia_audit.dp.simulation: every unit scored by its exact
    # log-likelihood ratio Σ_t log(1 − q + q·exp((2x_t − 1)/(2σ²))), x_t = B_t + σZ_t (non-normal,
    # and the most powerful attack: each unit's ROC is the run's trade-off curve).
    from mia_audit.audit import stats
    from mia_audit.sampling import membership
    from mia_audit.train import accounting

    rng = np.random.default_rng(11)
    n_units, n_models, reps = 60, 40, 20
    for sigma, q, steps in ((0.2, 0.5, 1), (0.6, 0.5, 3)):
        spec = {
            "epsilon": accounting.achieved_epsilon(sigma, q, steps, 1e-5),
            "delta": 1e-5,
            "level": "patient",
            "accountant": "pld",
            "runs": [(sigma, q, steps)],
        }
        flagged = 0
        for i in range(reps):
            member = membership.balanced_membership(n_models, n_units, 500 + i)
            score = np.zeros(member.shape)
            for _ in range(steps):
                x = (member & (rng.random(member.shape) < q)) + sigma * rng.standard_normal(member.shape)
                score += np.log(1 - q + q * np.exp((2 * x - 1) / (2 * sigma**2)))
            rec = stats.record_risk(score, member)
            rec.insert(0, "patient_id", np.arange(n_units).astype(str))
            rec.insert(0, "record_id", np.arange(n_units).astype(str))
            st = audit.record_statistics(score, member, (0.001, 0.01, 0.1))
            st.insert(0, "record_id", rec["record_id"])
            r, p = audit.add_dp_bounds(rec, stats.patient_risk(rec), spec, st)
            flagged += bool(r["dp_violation"].any() or p["dp_violation"].any())
        assert flagged <= 5, (sigma, q, steps, flagged)  # α = 0.05: P(Binomial(20, 0.05) ≥ 6) = 0.3 %
