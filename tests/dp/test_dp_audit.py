"""The DP guarantee in the audit (mia_audit.dp.audit): the unit, the bounds and the flags."""

import math

import numpy as np
import pandas as pd
import pytest

from mia_audit.audit import stats
from mia_audit.dp import audit, bounds, simulation
from mia_audit.sampling import membership

# one DP-SGD run: σ, q, T (its bounds are cached across the tests of this file)
SIGMA, Q, STEPS = 2.0, 0.3, 20
DELTA = 1e-3


def rdp_epsilon(sigma=SIGMA):
    """ε of the run at δ from Opacus's RDP accountant (default orders; the optimum is among them)."""
    from opacus.accountants import RDPAccountant

    acc = RDPAccountant()
    acc.history = [(sigma, Q, STEPS)]
    return acc.get_epsilon(DELTA)


FPRS = (0.001, 0.01, 0.1)


def spec(level, epsilon=None):
    eps = rdp_epsilon() if epsilon is None else epsilon
    return {"epsilon": eps, "delta": DELTA, "level": level, "accountant": "rdp", "runs": [(SIGMA, Q, STEPS)]}


def risk_tables(mu_in, seed=0):
    """Patient a has 3 records, b has 1; normal signals of 40 + 40 models with these in-means;
    the risk tables and the records' test statistics."""
    rng = np.random.default_rng(seed)
    member = np.zeros((80, 4), dtype=bool)
    member[:40] = True
    conf = rng.standard_normal((80, 4)) + np.where(member, np.asarray(mu_in, dtype=float)[None, :], 0.0)
    rec = stats.record_risk(conf, member)
    rec.insert(0, "patient_id", ["a", "a", "a", "b"])
    rec.insert(0, "record_id", ["a0", "a1", "a2", "b0"])
    st = audit.record_statistics(conf, member, FPRS)
    st.insert(0, "record_id", rec["record_id"])
    return rec, stats.patient_risk(rec), st


def test_record_level_bounds_are_group_bounds_for_every_record_of_a_patient():
    rec, pat, st = risk_tables([6.0, 0.3, 0.1, 0.2])
    sp = spec("record")
    r, p = audit.add_dp_bounds(rec, pat, sp, st)
    assert r["dp_group_size"].tolist() == [3, 3, 3, 1] and p["dp_group_size"].tolist() == [3, 1]
    profile = bounds.profile_auc_bounds(SIGMA, Q, STEPS, [3, 1])
    np.testing.assert_allclose(p["dp_bound"], profile)
    np.testing.assert_allclose(r["dp_bound"], profile[[0, 0, 0, 1]])
    # the fallback: 1 − (1 − δ_k)²/(1 + e^{ε_k}) with (kε, k e^{(k−1)ε} δ), by hand
    e = sp["epsilon"]
    single = [1 - (1 - min(1, k * math.exp((k - 1) * e) * DELTA)) ** 2 / (1 + math.exp(k * e)) for k in (3, 1)]
    np.testing.assert_allclose(p["dp_bound_single_point"], single)
    assert (p["dp_bound"] < p["dp_bound_single_point"]).all()
    # a0 (perfectly separated: AUC 1) is far above its bound; the others are below theirs
    assert r["dp_violation"].tolist() == [True, False, False, False] and r["dp_violation"].dtype == bool
    assert p["dp_violation"].tolist() == [True, False]
    assert p["dp_p"].iloc[0] == pytest.approx(min(1.0, 3 * r["dp_p"].iloc[:3].min()))
    assert (r["dp_p_adj"] >= r["dp_p"]).all()
    # the record's p is the Bonferroni combination of its tests: the AUC and one TPR test per
    # distinct threshold (with 40 out-models every FPR below 0.049 is the largest out-signal)
    assert r["dp_p"].iloc[1] == pytest.approx(min(1.0, 3 * min(r["dp_p_auc"].iloc[1], r["dp_p_tpr"].iloc[1])))
    assert "dp_bound" not in rec and "dp_bound" not in pat  # inputs untouched


def test_patient_level_gives_every_record_the_unit_bound_and_inf_gives_one():
    rec, pat, st = risk_tables([0.3, 0.3, 0.1, 0.2])
    r, p = audit.add_dp_bounds(rec, pat, spec("patient"), st)
    unit = bounds.profile_auc_bound(SIGMA, Q, STEPS)
    assert (r["dp_group_size"] == 1).all() and (p["dp_group_size"] == 1).all()
    np.testing.assert_allclose(r["dp_bound"], unit)
    np.testing.assert_allclose(p["dp_bound"], unit)
    r, p = audit.add_dp_bounds(rec, pat, spec("record", epsilon=math.inf) | {"runs": [(0.0, Q, STEPS)]}, st)
    assert (r["dp_bound"] == 1).all() and (p["dp_bound_single_point"] == 1).all()
    assert not r["dp_violation"].any() and (r["dp_p"] == 1).all()
    # a finite ε beyond what the accountants handle is treated as no guarantee, without a PLD
    r, p = audit.add_dp_bounds(rec, pat, spec("record", epsilon=1e12) | {"runs": [(1e-7, Q, STEPS)]}, st)
    assert (r["dp_bound"] == 1).all() and (r["dp_p"] == 1).all()


def test_bad_inputs_name_the_column_or_key():
    rec, pat, st = risk_tables([0.3, 0.3, 0.1, 0.2])
    with pytest.raises(KeyError, match="mu_in"):
        audit.add_dp_bounds(rec.drop(columns="mu_in"), pat, spec("record"), st)
    with pytest.raises(ValueError, match="audit.dp_alpha"):
        audit.add_dp_bounds(rec, pat, spec("record"), st, alpha=1.5)
    with pytest.raises(ValueError, match="different records"):
        audit.add_dp_bounds(rec, pat, spec("record"), st.iloc[::-1])


def test_spec_from_metrics_takes_the_weakest_model_and_the_run():
    m = pd.DataFrame(
        {
            "model": [0, 1],
            "test_auc": [0.7, 0.8],
            "dp_epsilon": [0.9, 0.95],
            "dp_delta": [1e-3, 2e-3],
            "dp_noise_multiplier": [3.0, 3.0],
            "dp_sample_rate": [0.1, 0.1],
            "dp_steps": [300, 300],
            "dp_level": ["patient", "patient"],
        }
    )
    got = audit.spec_from_metrics(m)
    assert got == {"epsilon": 0.95, "delta": 2e-3, "level": "patient", "accountant": "rdp", "runs": [(3.0, 0.1, 300)]}
    assert audit.spec_from_metrics(m.assign(dp_accountant="pld"))["accountant"] == "pld"
    assert audit.spec_from_metrics(m.drop(columns=["dp_epsilon"])) is None
    with pytest.raises(KeyError, match=r"m\.tsv.*dp_steps"):
        audit.spec_from_metrics(m.drop(columns=["dp_steps"]), path="m.tsv")
    row = audit.utility_row(
        "e",
        "patient",
        1,
        m.assign(dp_noise_multiplier=SIGMA, dp_sample_rate=Q, dp_steps=STEPS),
        *risk_tables([0.3, 0.3, 0.1, 0.2])[:2],
        candidate="lr1e-2",
    )
    assert row["dp_bound"] == pytest.approx(bounds.profile_auc_bound(SIGMA, Q, STEPS))
    assert row["dp_bound_single_point"] == pytest.approx(bounds.max_auc_bound(0.95, 2e-3))
    # ε at the reference δ from the run (σ, q, T) by its accountant, beside ε at the run's δ
    from mia_audit.train import accounting

    assert row["ref_delta"] == 1e-5 and row["accountant"] == "rdp" and row["selected_candidate"] == "lr1e-2"
    assert row["epsilon_ref_delta"] == pytest.approx(accounting.achieved_epsilon(SIGMA, Q, STEPS, 1e-5, "rdp"))
    assert row["epsilon_ref_delta"] > accounting.achieved_epsilon(SIGMA, Q, STEPS, 2e-3, "rdp")


def simulated_audit(level, n_models, patients_k, sigma_train, rng, seed):
    """Record and patient risk and the test statistics of a simulated DP-SGD run (see
    mia_audit.dp.simulation)."""
    member = membership.balanced_membership(n_models, len(patients_k), seed)
    conf, rec_member, pid = simulation.linear_attack_signals(member, patients_k, sigma_train, Q, STEPS, level, rng)
    rec = stats.record_risk(conf, rec_member)
    rec.insert(0, "patient_id", pid)
    rec.insert(0, "record_id", np.arange(len(pid)).astype(str))
    st = audit.record_statistics(conf, rec_member, FPRS)
    st.insert(0, "record_id", rec["record_id"])
    return rec, stats.patient_risk(rec), st


@pytest.mark.parametrize("level", ["patient", "record"])
def test_a_correct_mechanism_is_rarely_flagged_and_a_broken_one_is(level):
    # patients with 1–20 records (record level: 1 or 3, whose bounds the tests above cached;
    # 1–20 in benchmarks/bench_dp_bounds.py), 20 simulated experiments of 4 + 4 models
    rng = np.random.default_rng(7)
    ks = np.tile(np.arange(1, 21), 5) if level == "patient" else np.tile([1, 3], 50)
    sp = spec(level)
    flagged = old_rule = broken = 0
    for i in range(20):
        rec, pat, st = simulated_audit(level, 8, ks, SIGMA, rng, seed=i)
        r, p = audit.add_dp_bounds(rec, pat, sp, st)
        flagged += bool(r["dp_violation"].any() or p["dp_violation"].any())
        old_rule += bool((r["auc"] - 1.96 * r["se"] > r["dp_bound"]).any())
        # a broken run (8× too little noise) audited with 50 + 50 models
        rec, pat, st = simulated_audit(level, 100, ks, SIGMA / 8, rng, seed=i)
        broken += bool(audit.add_dp_bounds(rec, pat, sp, st)[1]["dp_violation"].any())
    assert flagged <= 4  # α = 0.05: P(Binomial(20, 0.05) ≥ 5) = 0.3 %
    assert old_rule >= 15  # the old rule flagged correct runs
    assert broken >= 18


def test_survival_figure_draws_each_bound_curve_and_labels_it():
    from mia_audit.plots import dp as dp_plots

    assert dp_plots.bound_label([0.6, 0.6]) == "bound 0.6"
    assert dp_plots.bound_label([0.6, 0.97, np.nan]) == "bounds 0.6–0.97"
    assert dp_plots.bound_label(None) == ""
    rng = np.random.default_rng(0)
    curves = [
        {"label": "no DP", "auc": rng.uniform(0.5, 1.0, 50), "bounds": None, "violations": None},
        {"label": "ε = 1", "auc": rng.uniform(0.5, 0.6, 50), "bounds": np.full(50, 0.62), "violations": 0},
        {"label": "ε = 10", "auc": rng.uniform(0.5, 0.9, 50), "bounds": np.linspace(0.9, 1.0, 50), "violations": 2},
    ]
    fig = dp_plots.esf_by_epsilon(curves, "record")
    ax = fig.axes[0]
    dashed = [ln for ln in ax.get_lines() if ln.get_linestyle() == "--" and len(ln.get_xdata())]
    assert len(dashed) == 2  # one bound curve per DP experiment with a bound below 1
    assert max(dashed[0].get_xdata()) == pytest.approx(0.62)  # the drop at the single bound
    labels = [t.get_text() for legend in fig.legends for t in legend.get_texts()]  # legends sit below the axes
    assert "ε = 1 (bound 0.62; 0 flagged)" in labels and "ε = 10 (bounds 0.9–1; 2 flagged)" in labels
