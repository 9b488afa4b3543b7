"""Empirical-Bayes moderated variances (workflow/mia_audit/audit/moderation.py), checked by simulation.

The truth is known: record variances are drawn from a scaled inverse-χ² prior with a
trend in the mean (d0 = 10), signals are normal, and the true record AUC follows from the
simulation parameters. A larger version is benchmarks/bench_few_models.py.
"""

import numpy as np
import pandas as pd
import pytest
from scipy import special
from scipy import stats as sps

from mia_audit.audit import moderation, stats

D0 = 10.0


def _simulate(n_records: int, n_side: int, rng: np.random.Generator):
    """(conf, member, true AUC): n_side in- and out-signals per record."""
    mu_out = rng.normal(0.0, 2.0, n_records)
    mu_in = mu_out + rng.normal(1.5, 2.5, n_records)
    # the prior scale of each side trends with that side's mean; each record's variance is one draw
    s0_in, s0_out = np.exp(0.5 + 0.15 * mu_in), np.exp(0.8 - 0.05 * mu_out)
    var_in = s0_in**2 * D0 / rng.chisquare(D0, n_records)
    var_out = s0_out**2 * D0 / rng.chisquare(D0, n_records)
    d = (mu_in - mu_out) / np.sqrt(var_in + var_out)
    x_in = mu_in + np.sqrt(var_in) * rng.standard_normal((n_side, n_records))
    x_out = mu_out + np.sqrt(var_out) * rng.standard_normal((n_side, n_records))
    member = np.zeros((2 * n_side, n_records), dtype=bool)
    member[:n_side] = True
    return np.vstack([x_in, x_out]), member, sps.norm.cdf(d)


def test_trigamma_inverse_inverts_trigamma():
    y = np.array([0.05, 0.5, 2.0, 10.0, 300.0])
    np.testing.assert_allclose(moderation.trigamma_inverse(special.polygamma(1, y)), y, rtol=1e-8)


def test_prior_degrees_of_freedom_are_recovered():
    rng = np.random.default_rng(0)
    conf, member, _ = _simulate(4000, 16, rng)
    rr = stats.record_risk(conf, member)
    priors = moderation.fit_priors(rr)
    for side in ("in", "out"):
        assert 7 < priors[side].d0 < 14, (side, priors[side].d0)


def test_equal_variances_pool_completely():
    rng = np.random.default_rng(1)
    s2 = rng.chisquare(7, 3000) / 7  # σ² = 1 for every record, 7 degrees of freedom
    prior = moderation.fit_variance_prior(s2, np.full(3000, 7.0))
    assert prior.d0 > 200  # (infinite in expectation)
    post, _ = prior.moderate(s2, np.full(3000, 7.0), np.zeros(3000))
    assert np.abs(post - 1).max() < 0.1 < np.abs(s2 - 1).max()


@pytest.mark.parametrize("n_side", [8, 32])
def test_moderated_intervals_cover_and_beat_the_per_record_estimate(n_side):
    rng = np.random.default_rng(n_side)
    conf, member, truth = _simulate(6000, n_side, rng)
    rr = stats.record_risk(conf, member)
    mod, priors = moderation.add_moderated(rr)
    covered = (mod["ci_low_mod"] <= truth) & (truth <= mod["ci_high_mod"])
    # 6000 records: the coverage's SE is 0.003
    assert 0.935 <= covered.mean() <= 0.965, covered.mean()
    # the exposed records keep their coverage too
    assert covered[truth > 0.9].mean() > 0.93
    rmse_mod = np.sqrt(np.mean((mod["auc_mod"] - truth) ** 2))
    rmse_raw = np.sqrt(np.mean((rr["auc"] - truth) ** 2))
    assert rmse_mod < rmse_raw
    # the existing columns are left as they were
    pd.testing.assert_frame_equal(mod[rr.columns], rr)
    assert (mod["df_in_mod"] == priors["in"].d0 + n_side - 1).all()


def test_patient_risk_takes_the_worst_record_by_the_moderated_auc():
    records = pd.DataFrame(
        {
            "record_id": ["a", "b", "c"],
            "patient_id": ["p", "p", "q"],
            "auc": [0.9, 0.8, 0.7],
            "auc_mod": [0.85, 0.88, np.nan],
            "se_mod": [0.01, 0.02, np.nan],
            "ci_low_mod": [0.8, 0.8, np.nan],
            "ci_high_mod": [0.9, 0.9, np.nan],
        }
    )
    pr = moderation.moderated_patient_risk(records).set_index("patient_id")
    assert pr.loc["p", "worst_record_id_mod"] == "b" and pr.loc["p", "auc_mod"] == 0.88
    assert np.isnan(pr.loc["q", "auc_mod"])
