"""The empirical lower bound from canaries (mia_audit.dp.empirical, mia_audit.train.canaries):
coverage by simulation of mechanisms whose privacy is known exactly, the Clopper–Pearson pieces
against statsmodels, and the canaries' design."""

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import brentq
from scipy.stats import norm

from mia_audit.dp import empirical
from mia_audit.train import canaries


def gaussian_epsilon(mu: float, delta: float) -> float:
    """ε at δ of the Gaussian mechanism with μ = sensitivity/σ (Balle & Wang 2018), closed form."""

    def gap(e):
        return norm.cdf(-e / mu + mu / 2) - math.exp(e) * norm.cdf(-e / mu - mu / 2) - delta

    return brentq(gap, 0.0, 100.0)


def test_one_run_pvalue_without_delta_is_the_binomial_tail():
    from scipy.stats import binom

    p = 1 / (1 + math.exp(-1.5))
    assert empirical.one_run_pvalue(100, 40, 35, 1.5, 0.0) == pytest.approx(binom.sf(34, 40, p))
    # δ adds the term 2mδ·max_i P(v − i ≤ W < v)/i, which grows with m
    assert empirical.one_run_pvalue(100, 40, 35, 1.5, 1e-5) > empirical.one_run_pvalue(100, 40, 35, 1.5, 0.0)
    assert empirical.one_run_pvalue(1000, 40, 35, 1.5, 1e-5) > empirical.one_run_pvalue(100, 40, 35, 1.5, 1e-5)


@pytest.mark.parametrize("eps", [0.5, 2.0])
def test_randomized_response_lower_bound_covers_and_approaches_epsilon(eps):
    # each coin released by randomized response, exactly ε-DP: the bound stays below ε in at
    # least 95 % of runs (one-sided 95 %), and with many coins it gets close
    rng = np.random.default_rng(int(10 * eps))
    reps, m = 200, 2000
    keep = 1 / (1 + math.exp(-eps))
    below = 0
    got = []
    for _ in range(reps):
        b = rng.random(m) < 0.5
        out = np.where(rng.random(m) < keep, b, ~b)
        scores = np.where(out, 1.0, -1.0)[:, None] + 1e-9 * rng.standard_normal((m, 1))
        lb = empirical.epsilon_lower_bound(scores, b[:, None], 0.0, 0.05)["epsilon_lower"]
        below += lb <= eps
        got.append(lb)
    assert below >= 0.95 * reps - 3 * math.sqrt(0.05 * 0.95 * reps)
    assert np.median(got) > 0.75 * eps


def test_gaussian_mechanism_bounds_cover_the_truth():
    # scores are the mechanism's output itself (the likelihood ratio's monotone transform);
    # both lower bounds stay below the mechanism's true ε at δ = 1e-5 and true AUC
    rng = np.random.default_rng(5)
    mu, delta, reps, models, n_can = 2.0, 1e-5, 100, 100, 16
    true_eps = gaussian_epsilon(mu, delta)
    true_auc = norm.cdf(mu / math.sqrt(2))
    eps_ok = auc_ok = 0
    for _ in range(reps):
        b = rng.random((models, n_can)) < 0.5
        y = mu * b + rng.standard_normal((models, n_can))
        eps_ok += empirical.epsilon_lower_bound(y, b, delta, 0.05)["epsilon_lower"] <= true_eps
        auc_ok += empirical.auc_lower_bound(y - mu / 2, b, 0.05) <= true_auc
    assert eps_ok >= 0.93 * reps and auc_ok >= 0.93 * reps


def test_auc_lower_bound_uses_clopper_pearson_limits():
    from statsmodels.stats.proportion import proportion_confint

    b = np.array([True] * 40 + [False] * 60)
    s = np.r_[np.ones(30), -np.ones(10), np.ones(6), -np.ones(54)][:, None]  # TP 30/40, FP 6/60
    tpr_low = proportion_confint(30, 40, alpha=2 * 0.025, method="beta")[0]  # one-sided α/2
    fpr_high = proportion_confint(6, 60, alpha=2 * 0.025, method="beta")[1]
    assert empirical.auc_lower_bound(s, b[:, None], 0.05) == pytest.approx((1 + tpr_low - fpr_high) / 2, rel=1e-9)
    assert empirical.auc_lower_bound(np.zeros((100, 1)), b[:, None], 0.05) == 0.5  # no guess in: no evidence


def test_likelihood_ratio_scores_are_fitted_on_the_reference_models_only():
    rng = np.random.default_rng(6)
    member = rng.random((40, 3)) < 0.5
    phi = 3.0 * member + rng.standard_normal((40, 3))
    ref, aud = empirical.split_models(40, 0)
    assert len(set(ref) | set(aud)) == 40 and not set(ref) & set(aud)
    s = empirical.likelihood_ratio_scores(phi, member, ref, aud)
    # changing the audit models' coins changes nothing in their scores
    flipped = member.copy()
    flipped[aud] = ~flipped[aud]
    np.testing.assert_array_equal(s, empirical.likelihood_ratio_scores(phi, flipped, ref, aud))
    assert np.mean((s > 0) == member[aud]) > 0.9


def test_canary_design_coins_and_units():
    rng = np.random.default_rng(7)
    X = rng.standard_normal((300, 5))
    y = (X[:, 0] > 0).astype(int)
    c = canaries.design({"records": 6, "patients": 2, "patient_records": 3, "seed": 1}, X, y, 2, 400)
    assert c.x.shape == (12, 5) and c.n == 8 and c.kind.tolist() == ["record"] * 6 + ["patient"] * 2
    assert np.linalg.norm(c.x, axis=1).min() > np.linalg.norm(X, axis=1).max()  # far from every record
    # the label is the class whose mean is farthest from the canary
    means = np.stack([X[y == k].mean(0) for k in (0, 1)])
    far = np.linalg.norm(c.x[:, None] - means[None], axis=2).argmax(1)
    np.testing.assert_array_equal(c.y, far)
    # a canary patient's records are identical; coins fair and independent of the seed's shard
    assert (c.x[6:9] == c.x[6]).all() and (c.canary == np.r_[np.arange(6), 6, 6, 6, 7, 7, 7]).all()
    assert abs(c.member.mean() - 0.5) < 0.05 and c.member.shape == (400, 8)
    np.testing.assert_array_equal(c.member, canaries.coins(400, 8, 1))
    assert c.units("record", 100).tolist() == list(range(100, 112))
    assert c.units("patient", 100).tolist() == [100, 101, 102, 103, 104, 105, 106, 106, 106, 107, 107, 107]
    m = 11
    np.testing.assert_array_equal(c.rows_of(m), np.flatnonzero(c.member[m][c.canary]))


def test_experiment_rows_from_shard_metadata(tmp_path):
    # two shards of canary metadata as train_models stores them, read back and audited
    import torch

    from mia_audit.train import weights

    rng = np.random.default_rng(8)
    X, y = rng.standard_normal((200, 4)), rng.integers(0, 2, 200)
    c = canaries.design({"records": 8, "patients": 2, "patient_records": 2, "seed": 0}, X, y, 2, 60)
    paths = []
    for shard, (lo, hi) in enumerate([(0, 30), (30, 60)]):
        member_rows = c.member[lo:hi][:, c.canary]  # (models, rows)
        z = 4.0 * member_rows + rng.standard_normal(member_rows.shape)  # logit of the canary's label
        logits = np.zeros((hi - lo, c.canary.size, 2))
        logits[np.arange(hi - lo)[:, None], np.arange(c.canary.size)[None, :], c.y[None, :]] = z
        meta = {"dp": {"canaries": canaries.metadata(c, range(lo, hi), logits)}}
        path = tmp_path / f"shard_{shard}.safetensors"
        weights.save_shard(path, {"w": torch.zeros(hi - lo, 1)}, {}, meta)
        paths.append(path)
    can = empirical.read_shard_canaries(paths)
    np.testing.assert_array_equal(can["member"], c.member)
    metrics = pd.DataFrame(
        {
            "model": range(60),
            "test_auc": 0.8,
            "dp_epsilon": 1.0,
            "dp_delta": 1e-5,
            "dp_noise_multiplier": 3.0,
            "dp_sample_rate": 0.1,
            "dp_steps": 100,
            "dp_level": "record",
            "dp_accountant": "pld",
        }
    )
    rows = empirical.experiment_rows("e", 1, metrics, can, alpha=0.05)
    assert [r["canary"] for r in rows] == ["record", "patient"]
    rec, pat = rows
    assert rec["group_size"] == 1 and pat["group_size"] == 2 and rec["audit_models"] == 30 and rec["coins"] == 240
    assert pat["epsilon_upper"] > rec["epsilon_upper"] > 0.9  # the group's ε exceeds one unit's
    assert 0.5 <= rec["auc_lower"] <= rec["auc_empirical"] and rec["auc_upper"] < 1
    # these synthetic signals are far stronger than σ = 3 allows: the lower bounds exceed the upper
    assert rec["auc_lower"] > rec["auc_upper"] and rec["epsilon_lower"] > rec["epsilon_upper"]
    assert set(rows[0]) == set(empirical.COLUMNS)
    with pytest.raises(ValueError, match="60 models"):
        empirical.experiment_rows("e", 1, metrics.iloc[:10], can, alpha=0.05)
    json.dumps(rows)  # plain numbers
