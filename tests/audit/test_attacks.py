"""Tests of the aggregate attacks in :mod:`mia_audit.audit.attacks`.

Expected values come from the simulation's construction (closed-form Gaussian ROC) or
from hand / scipy computations, never from the attack code itself.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import special
from scipy import stats as sps
from sklearn.metrics import roc_auc_score

from mia_audit.audit import attacks as audit_attacks
from mia_audit.external import scores as external_scores

ROOT = Path(__file__).resolve().parents[2]


def simulate_cube(n_models=200, n_records=4000, delta=1.0, tau=2.0, views=None, seed=0):
    """Balanced membership; φ = b_r + δ·member + N(0, 1), record offsets b_r ~ N(0, τ²).

    Per record the in- and out-signals are N(b_r + δ, 1) and N(b_r, 1). An attack that
    knows b_r (LiRA online's per-record likelihood ratio is δ(x − b_r) − δ²/2 for every
    record) has the aggregate ROC of N(δ, 1) against N(0, 1): AUC = Φ(δ/√2),
    TPR at FPR α = Φ(δ − z_{1−α}). The global loss threshold sees N(δ, 1 + τ²) against
    N(0, 1 + τ²): AUC = Φ(δ/√(2(1 + τ²))).
    """
    rng = np.random.default_rng(seed)
    member = rng.random((n_models, n_records)).argsort(axis=0) < n_models // 2
    b = rng.normal(0.0, tau, n_records)
    shape = (n_models, n_records) if views is None else (n_models, n_records, views)
    noise = rng.normal(size=shape)
    if views is None:
        conf = noise + b + delta * member
    else:
        conf = noise + b[:, None] + delta * member[:, :, None]
    return conf.astype(np.float32), member


@pytest.fixture(scope="module")
def separable():
    conf, member = simulate_cube(delta=1.0)
    return conf, member, audit_attacks.run_aggregate_attacks(conf, member, n_targets=4, seed=1)


@pytest.fixture(scope="module")
def null():
    conf, member = simulate_cube(n_models=64, n_records=3000, delta=0.0, seed=5)
    return audit_attacks.run_aggregate_attacks(conf, member, n_targets=4, seed=2)


def test_table_layout(separable):
    _, _, df = separable
    assert list(df.columns[:6]) == ["attack", "target", "auc", "tpr_at_fpr_0.001", "tpr_at_fpr_0.01", "tpr_at_fpr_0.1"]
    assert len(df) == len(audit_attacks.ATTACKS) * 4
    assert (df["status"] == "ok").all() and (df["n_excluded"] == 0).all()
    assert df.attrs["nonfinite_models"] == []
    assert set(df["target"]).isdisjoint(df.attrs["references"])


def test_lira_online_recovers_theoretical_roc(separable):
    _, _, df = separable
    lira = df[df["attack"] == "lira_online"]
    delta = 1.0
    assert lira["auc"].mean() == pytest.approx(sps.norm.cdf(delta / np.sqrt(2)), abs=0.015)
    assert lira["tpr_at_fpr_0.1"].mean() == pytest.approx(sps.norm.cdf(delta - sps.norm.ppf(0.9)), abs=0.04)
    fixed = df[df["attack"] == "lira_online_fixed"]
    assert fixed["auc"].mean() == pytest.approx(sps.norm.cdf(delta / np.sqrt(2)), abs=0.015)


def test_loss_threshold_recovers_theoretical_auc(separable):
    _, _, df = separable
    loss = df[df["attack"] == "loss_threshold"]
    assert loss["auc"].mean() == pytest.approx(sps.norm.cdf(1.0 / np.sqrt(2 * (1 + 2.0**2))), abs=0.015)


def test_all_attacks_beat_chance_when_separable(separable):
    _, _, df = separable
    by = df.groupby("attack")["auc"].min()
    assert (by > 0.55).all(), by
    # record-calibrated attacks beat the global loss threshold by a wide margin
    assert (by.drop("loss_threshold") > df[df["attack"] == "loss_threshold"]["auc"].max() + 0.05).all()
    # offline RMIA's a tuned with all the other references as the pseudo-target's
    # references lands at the top of the grid here (out-references well estimated)
    assert df.attrs["rmia_a"] >= 0.8


def test_all_attacks_at_chance_on_null_cube(null):
    by = null.groupby("attack")["auc"]
    assert (by.mean() - 0.5).abs().max() < 0.02, by.mean()
    assert ((null["auc"] - 0.5).abs() < 0.05).all()
    assert (null["tpr_at_fpr_0.1"] < 0.16).all()


def test_views_sum_lira_log_likelihoods_and_help():
    conf, member = simulate_cube(n_models=40, n_records=500, views=3, seed=3)
    t, r, m = conf[:2], conf[2:], member[2:]
    per_view = sum(audit_attacks.lira_online(t[..., v], r[..., v], m) for v in range(3))
    np.testing.assert_allclose(audit_attacks.lira_online(t, r, m), per_view, rtol=1e-10)
    per_view = sum(audit_attacks.lira_offline(t[..., v], r[..., v], m) for v in range(3))
    np.testing.assert_allclose(audit_attacks.lira_offline(t, r, m), per_view, rtol=1e-10)
    np.testing.assert_allclose(audit_attacks.loss_threshold(t), t.astype(np.float64).mean(axis=-1), rtol=1e-12)


def test_lira_against_direct_gaussian_computation():
    ref = np.array([[0.0], [1.0], [2.0], [5.0], [7.0]])
    ref_member = np.array([[False], [False], [False], [True], [True]])
    x = np.array([[3.0]])
    out = ref[:3, 0]
    inn = ref[3:, 0]
    want_off = -np.log(1 - sps.norm.cdf(3.0, out.mean(), out.std(ddof=1)))
    want_on = sps.norm.logpdf(3.0, inn.mean(), inn.std(ddof=1)) - sps.norm.logpdf(3.0, out.mean(), out.std(ddof=1))
    assert audit_attacks.lira_offline(x, ref, ref_member)[0, 0] == pytest.approx(want_off, rel=1e-10)
    assert audit_attacks.lira_online(x, ref, ref_member)[0, 0] == pytest.approx(want_on, rel=1e-10)


def test_rmia_probability_mapping():
    phi = np.array([[[-3.0, 0.0, 4.0]], [[40.0, 40.0, 40.0]]])  # (2 models, 1 record, 3 views)
    p = 1 / (1 + np.exp(-phi))
    np.testing.assert_allclose(audit_attacks.log_prob_from_signal(phi), np.log(p.mean(axis=-1)), rtol=1e-12)
    # near p = 1 the log stays resolved: log p ≈ −e^{−40}
    assert audit_attacks.log_prob_from_signal(phi)[1, 0] == pytest.approx(-np.exp(-40.0), rel=1e-6)


def test_rmia_population_excludes_the_record_itself():
    log_lr = np.log(np.array([[1.0, 2.0, 3.0, 4.0]]))
    # every record against the other three
    np.testing.assert_allclose(audit_attacks.rmia_score_from_lr(log_lr, np.arange(4)), [[0.0, 1 / 3, 2 / 3, 1.0]])
    # population {1, 3}: record 1 only meets record 3, record 3 only record 1
    np.testing.assert_allclose(audit_attacks.rmia_score_from_lr(log_lr, np.array([1, 3])), [[0.0, 0.0, 0.5, 1.0]])
    # γ = 1.4: LR_x / LR_z ≥ 1.4 (record 4 beats 1 and 2 but not 3: 4/3 < 1.4)
    np.testing.assert_allclose(
        audit_attacks.rmia_score_from_lr(log_lr, np.arange(4), gamma=1.4), [[0.0, 1 / 3, 2 / 3, 2 / 3]]
    )
    # an excluded record (NaN) is neither scored nor in anyone's population
    log_lr[0, 1] = np.nan
    got = audit_attacks.rmia_score_from_lr(log_lr, np.arange(4))
    assert np.isnan(got[0, 1])
    np.testing.assert_allclose(got[0, [0, 2, 3]], [0.0, 0.5, 1.0])


def test_rmia_against_direct_computation():
    rng = np.random.default_rng(9)
    ref = rng.normal(size=(6, 5))
    ref_member = np.array([[True, False] * 3] * 5).T.copy()
    x = rng.normal(size=(1, 5))
    sig = special.expit
    pr_online = 0.5 * (sig(ref[ref_member[:, 0]]).mean(axis=0) + sig(ref[~ref_member[:, 0]]).mean(axis=0))
    a = 0.4
    pr_offline = 0.5 * ((1 + a) * sig(ref[~ref_member[:, 0]]).mean(axis=0) + (1 - a))
    for pr, got in (
        (pr_online, audit_attacks.rmia_online(x, ref, ref_member)),
        (pr_offline, audit_attacks.rmia_offline(x, ref, ref_member, a=a)),
    ):
        lr = sig(x[0]) / pr
        want = [np.mean([lr[i] / lr[j] >= 1 for j in range(5) if j != i]) for i in range(5)]
        np.testing.assert_allclose(got[0], want)


def test_offline_a_is_tuned_without_target_labels():
    conf, member = simulate_cube(n_models=24, n_records=1500, seed=4)
    res = audit_attacks.attack_scores(conf, member, n_targets=3, seed=0, attacks=("rmia_offline",))
    targets = res["targets"]
    rng = np.random.default_rng(0)
    permuted = member.copy()
    for t in targets:
        permuted[t] = rng.permutation(permuted[t])
    # and the target's confidences too: a depends on references only
    conf2 = conf.copy()
    conf2[targets] = rng.normal(size=conf2[targets].shape)
    res2 = audit_attacks.attack_scores(conf2, permuted, n_targets=3, seed=0, attacks=("rmia_offline",))
    assert res2["rmia_a"] == res["rmia_a"]
    assert 0.0 <= res["rmia_a"] <= 1.0
    # tuning improves on the worst grid value
    a, table = audit_attacks.tune_rmia_a(conf[res["references"]], member[res["references"]])
    assert a == res["rmia_a"] and table["auc"].max() > table["auc"].min()
    # the pair setting: one reference as pseudo-target, one other as its reference
    a_pair, table = audit_attacks.tune_rmia_a(conf[res["references"]], member[res["references"]], pseudo_refs="one")
    assert a_pair in set(audit_attacks.A_GRID) and len(table) == len(audit_attacks.A_GRID)


def test_roc_metrics_hand_example():
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.55, 0.5, 0.4, 0.3, 0.2, 0.1, np.nan])
    labels = np.array([1, 1, 0, 1, 0, 1, 0, 0, 0, 0, 1], dtype=bool)
    # 4 members, 6 non-members: member-above-non-member pairs 6 + 6 + 5 + 4 = 21 of 24
    got = audit_attacks.roc_metrics(scores, labels, fprs=(0.0, 0.1, 1 / 6, 0.2, 0.3, 0.34, 1.0))
    assert got["auc"] == pytest.approx(21 / 24)
    # ROC points (fpr, tpr): (0, .5) (1/6, .5) (1/6, .75) (2/6, .75) (2/6, 1) …
    # 6 non-members: no FPR between 0 and 1/6 can be measured, so levels below 1/6 are NaN
    assert got["min_resolvable_fpr"] == pytest.approx(1 / 6)
    assert np.isnan(got["tpr_at_fpr_0"]) and np.isnan(got["tpr_at_fpr_0.1"])
    assert got["tpr_status"] == audit_attacks.STATUS_UNRESOLVABLE_FPR
    assert got[f"tpr_at_fpr_{1 / 6:g}"] == 0.75  # exactly 1/6 is resolvable
    assert got["tpr_at_fpr_0.2"] == 0.75
    assert got["tpr_at_fpr_0.3"] == 0.75
    assert got["tpr_at_fpr_0.34"] == 1.0
    assert got["tpr_at_fpr_1"] == 1.0
    assert got["n_scored"] == 10 and got["n_excluded"] == 1
    assert audit_attacks.roc_metrics(scores, labels, fprs=(0.2, 1.0))["tpr_status"] == "ok"
    with pytest.raises(ValueError, match="members and non-members"):
        audit_attacks.roc_metrics([0.1, 0.2], [True, True])


def test_mean_roc_on_log_grid():
    rng = np.random.default_rng(6)
    y = rng.random((3, 2000)) < 0.5
    s = rng.normal(size=(3, 2000)) + y
    grid = np.array([1e-4, 1e-3, 1e-2, 0.1, 0.5, 1.0])
    out = audit_attacks.mean_roc(s, y, grid)
    # the curve starts at the largest 1/non-members over targets; grid points below it are dropped
    start = max(1 / (~y[i]).sum() for i in range(3))
    assert start > 1e-3 and out["fpr"].iloc[0] == pytest.approx(start) and (out["min_resolvable_fpr"] == start).all()
    np.testing.assert_allclose(out["fpr"].iloc[1:], grid[2:])
    grid = out["fpr"].to_numpy()
    per = np.array(
        [[audit_attacks.roc_metrics(s[i], y[i], fprs=grid)[f"tpr_at_fpr_{g:g}"] for g in grid] for i in range(3)]
    )
    assert np.isfinite(per).all()
    np.testing.assert_allclose(out["tpr_mean"], per.mean(axis=0))
    np.testing.assert_allclose(out["tpr_sd"], per.std(axis=0, ddof=1))
    assert out["tpr_mean"].iloc[-1] == 1.0 and (np.diff(out["tpr_mean"]) >= 0).all()
    # theory: TPR at FPR 0.1 of N(1,1) vs N(0,1)
    assert out["fpr"].iloc[2] == 0.1
    assert out["tpr_mean"].iloc[2] == pytest.approx(sps.norm.cdf(1 - sps.norm.ppf(0.9)), abs=0.05)


def test_too_many_targets_is_a_clear_error():
    conf, member = simulate_cube(n_models=6, n_records=50)
    for n in (5, 6, 7, 0):
        with pytest.raises(ValueError, match="audit.n_targets"):
            audit_attacks.run_aggregate_attacks(conf, member, n_targets=n)


def test_input_validation_messages():
    conf, member = simulate_cube(n_models=6, n_records=50)
    with pytest.raises(TypeError, match="member must be a bool array"):
        audit_attacks.run_aggregate_attacks(conf, member.astype(int), n_targets=2)
    with pytest.raises(ValueError, match=r"member must be \(models, records\)"):
        audit_attacks.run_aggregate_attacks(conf, member[:, :10], n_targets=2)
    with pytest.raises(ValueError, match="unknown attack"):
        audit_attacks.run_aggregate_attacks(conf, member, n_targets=2, attacks=("lira",))
    with pytest.raises(ValueError, match=r"a must be in \[0, 1\]"):
        audit_attacks.rmia_offline(conf[:1], conf[2:], member[2:], a=1.5)


def test_diverged_models():
    conf, member = simulate_cube(n_models=30, n_records=400, seed=8)
    targets, refs = audit_attacks.split_targets(30, 3, seed=0)
    conf[targets[0], 5] = np.nan  # a diverged target
    conf[
        refs[0],
        :,
    ] = np.inf  # a diverged reference
    df = audit_attacks.run_aggregate_attacks(conf, member, n_targets=3, seed=0)
    assert df.attrs["nonfinite_models"] == sorted([int(targets[0]), int(refs[0])])
    assert int(refs[0]) not in df.attrs["references"]
    bad = df[df["target"] == targets[0]]
    assert (bad["status"] == "target_nonfinite").all() and bad["auc"].isna().all()
    good = df[df["target"] != targets[0]]
    assert (good["status"] == "ok").all() and good["auc"].notna().all() and (good["auc"] > 0.55).all()
    # all references diverged: a clear error, not NaN scores
    conf[refs] = np.nan
    with pytest.raises(ValueError, match="finite reference models"):
        audit_attacks.run_aggregate_attacks(conf, member, n_targets=3, seed=0)


def test_records_without_in_or_out_references_are_excluded_and_counted():
    conf, member = simulate_cube(n_models=20, n_records=300, seed=10)
    targets, refs = audit_attacks.split_targets(20, 2, seed=0)
    member[refs, 0] = True  # record 0: every reference trained on it
    member[refs, 1] = False
    member[refs[0], 1] = True  # record 1: a single in-reference
    df = audit_attacks.run_aggregate_attacks(conf, member, n_targets=2, seed=0).set_index(["attack", "target"])
    t = int(targets[0])
    assert df.loc[("lira_online", t), "n_excluded"] == 2  # records 0 and 1
    assert df.loc[("lira_online_fixed", t), "n_excluded"] == 1  # record 0 (one in-sample suffices)
    assert df.loc[("rmia_online", t), "n_excluded"] == 1
    assert df.loc[("lira_offline", t), "n_excluded"] == 1  # record 0 has no out-reference
    assert df.loc[("rmia_offline", t), "n_excluded"] == 1
    assert df.loc[("loss_threshold", t), "n_excluded"] == 0
    assert (df["status"] == "ok").all()


def test_rmia_offline_external_one_and_two_references():
    conf, member = simulate_cube(n_models=4, n_records=3000, delta=1.5, tau=1.0, seed=11)
    target, y = conf[0], member[0]
    # one reference trained elsewhere (out on every candidate): a defaults to 0.3
    one = audit_attacks.rmia_offline_external(target, conf[1:2], y, population_size=500)
    assert one.attrs["a"] == audit_attacks.DEFAULT_RMIA_A
    assert (one["status"] == "ok").all() and (one["member"].to_numpy() == y).all()
    auc_one = audit_attacks.roc_metrics(one["score"], one["member"])["auc"]
    assert auc_one > 0.6
    # the label is for evaluation only
    other = audit_attacks.rmia_offline_external(target, conf[1:2], ~y, population_size=500)
    np.testing.assert_array_equal(other["score"], one["score"])
    # two references with their membership: a is tuned on the pair; candidates that
    # both references trained on get no score and say so
    two = audit_attacks.rmia_offline_external(target, conf[1:3], y, population_size=500, reference_member=member[1:3])
    assert two.attrs["a"] in set(audit_attacks.A_GRID)
    both_in = member[1] & member[2]
    assert (two["status"][both_in] == "no_out_reference").all() and two["score"][both_in].isna().all()
    assert (two["status"][~both_in] == "ok").all()
    assert audit_attacks.roc_metrics(two["score"], two["member"])["auc"] > 0.6
    with pytest.raises(ValueError, match="reference_member"):
        audit_attacks.rmia_offline_external(target, conf[1:3], y)
    with pytest.raises(ValueError, match="1 or 2 reference models"):
        audit_attacks.rmia_offline_external(target, conf[1:4], y, a=0.3)


def test_rmia_offline_external_population_never_holds_the_record():
    conf, member = simulate_cube(n_models=2, n_records=200, seed=12)
    df = audit_attacks.rmia_offline_external(conf[0], conf[1:2], member[0], population_size=200)
    # with the whole candidate set as population, the lowest-LR record beats nobody
    # (score 0, not 1/200) and the highest beats all the others (score 1)
    assert df["score"].min() == 0.0 and df["score"].max() == 1.0


def test_rmia_offline_external_at_chance_on_null():
    conf, member = simulate_cube(n_models=3, n_records=4000, delta=0.0, seed=13)
    df = audit_attacks.rmia_offline_external(conf[0], conf[1:2], member[0])
    assert abs(audit_attacks.roc_metrics(df["score"], df["member"])["auc"] - 0.5) < 0.03


def test_constant_reference_signals_give_finite_lira_scores():
    ref = np.array([[1.0, 0.0], [1.0, 0.0], [2.0, 0.0], [2.0, 0.0]])
    ref_member = np.array([[True, True], [True, True], [False, False], [False, False]])
    x = np.array([[1.0, 0.5], [2.0, -0.5]])
    on = audit_attacks.lira_online(x, ref, ref_member)
    assert np.isfinite(on).all()
    # record 0: x at the in-mean scores above x at the out-mean
    assert on[0, 0] > on[1, 0]
    assert np.isfinite(audit_attacks.lira_offline(x, ref, ref_member)).all()


def test_target_without_scorable_records_says_so():
    conf, member = simulate_cube(n_models=8, n_records=100, seed=14)
    _, refs = audit_attacks.split_targets(8, 2, seed=0)
    member[refs] = True  # no reference is ever out
    df = audit_attacks.run_aggregate_attacks(conf, member, n_targets=2, attacks=("lira_online", "loss_threshold"))
    lira = df[df["attack"] == "lira_online"]
    assert (lira["status"] == "no_scorable_records").all() and lira["auc"].isna().all()
    assert (lira["n_excluded"] == 100).all()
    assert (df[df["attack"] == "loss_threshold"]["status"] == "ok").all()


def test_registry_is_the_config_schema_enum():
    audit = yaml.safe_load((ROOT / "config" / "schema.yaml").read_text())["properties"]["audit"]["properties"]
    assert list(audit_attacks.ATTACKS) == audit["attacks"]["items"]["enum"] == audit["attacks"]["default"]
    assert all(name == spec.name for name, spec in audit_attacks.ATTACKS.items())
    labels = [spec.label for spec in audit_attacks.ATTACKS.values()]
    assert all(labels) and len(set(labels)) == len(labels)  # one distinct legend entry per attack


@pytest.mark.parametrize("name", list(audit_attacks.ATTACKS))
def test_registry_needs_match_the_records_each_attack_scores(name):
    """A record is scored iff it has at least ``min_in`` in- and ``min_out`` out-references."""
    spec = audit_attacks.ATTACKS[name]
    n_refs = 6
    k_in = np.r_[np.arange(n_refs + 1), [3] * 20]  # record r has k_in[r] in-references; 20 balanced records
    rng = np.random.default_rng(15)
    ref_member = np.stack([rng.permutation(np.arange(n_refs) < k) for k in k_in], axis=1)
    ref_conf = rng.normal(size=ref_member.shape) + ref_member
    target = rng.normal(size=(2, k_in.size))
    kw = {"a": 0.3} if "a" in spec.options else {}
    got = np.isfinite(spec.score(target, ref_conf, ref_member, **kw))
    want = (k_in >= spec.min_in) & (n_refs - k_in >= spec.min_out)
    np.testing.assert_array_equal(got, np.broadcast_to(want, got.shape))


def test_patient_maximum_by_hand():
    scores = pd.DataFrame(
        {
            "target": ["t", "t", "t", "t", "u"],
            "patient_id": ["p2", "p1", "p1", "p1", "p1"],
            "member": [False, False, False, True, False],
            "site": ["x", "y", "z", "z", "w"],
            "s": [np.nan, 0.2, np.nan, 0.7, 0.1],
            "loss": [1.0, -3.0, 2.0, 0.5, 4.0],
        }
    )
    got = audit_attacks.patient_maximum(scores, ["s", "loss"], by=("target", "patient_id"), first=("site",))
    assert list(got.columns) == ["target", "patient_id", "s", "loss", "member", "n_records", "site"]
    assert got[["target", "patient_id"]].values.tolist() == [["t", "p1"], ["t", "p2"], ["u", "p1"]]
    np.testing.assert_array_equal(got["s"], [0.7, np.nan, 0.1])  # excluded records skipped; none scored: NaN
    np.testing.assert_array_equal(got["loss"], [2.0, 1.0, 4.0])
    assert got["member"].tolist() == [True, False, False] and got["n_records"].tolist() == [3, 1, 1]
    assert got["site"].tolist() == ["y", "x", "w"]


def test_summary_table_per_group_against_direct_computation():
    rng = np.random.default_rng(16)
    n = 400
    df = pd.DataFrame({"target": np.repeat(["b", "a"], n), "member": rng.random(2 * n) < 0.4})
    df["s"] = rng.normal(size=2 * n) + df["member"]
    df.loc[rng.choice(2 * n, 50, replace=False), "s"] = np.nan
    got = audit_attacks.summary_table(df, ["s"], by=("target",))
    assert got["target"].tolist() == ["b", "a"]  # groups in order of appearance
    for _, row in got.iterrows():
        d = df[(df["target"] == row["target"]) & df["s"].notna()]
        assert row["auc"] == pytest.approx(roc_auc_score(d["member"], d["s"]), rel=1e-12)
        assert row["n_scored"] == len(d) and row["n_excluded"] == n - len(d)
        assert (row["n_members"], row["n_nonmembers"]) == (d["member"].sum(), (~d["member"]).sum())
    whole = audit_attacks.summary_table(df, ["s"])
    assert list(whole.columns[:2]) == ["attack", "auc"] and whole["n_scored"].item() == df["s"].notna().sum()


def test_external_attacks_follow_the_registry_needs():
    rng = np.random.default_rng(17)
    member = rng.random((3, 600)) < 0.5  # independent, so some candidates have both references out
    conf = rng.normal(size=(3, 600)) + rng.normal(size=600) + 1.5 * member
    df = pd.DataFrame(
        {
            "record_id": [f"r{i}" for i in range(600)],
            "patient_id": [f"p{i // 3}" for i in range(600)],
            "member": member[0],
            "target": conf[0],
            "reference_1": conf[1],
        }
    )
    scores, patients, summary = external_scores.attack_external(df, population_size=200)
    # one reference: LiRA offline (min_out = 2) cannot run
    assert summary["attack"].tolist() == ["rmia_offline", "loss_threshold"] == list(scores.columns[3:])
    df["reference_2"], df["reference_1_member"], df["reference_2_member"] = conf[2], member[1], member[2]
    scores, patients, summary = external_scores.attack_external(df, population_size=200)
    assert summary["attack"].tolist() == list(audit_attacks.EXTERNAL_ATTACKS) == list(scores.columns[3:])
    np.testing.assert_array_equal(scores["loss_threshold"], conf[0].astype(np.float64))
    # a candidate both references trained on has no out-reference: excluded and counted
    both_in = member[1] & member[2]
    summ = summary.set_index("attack")
    assert summ.loc["rmia_offline", "n_excluded"] == both_in.sum() == scores["rmia_offline"].isna().sum()
    assert summ.loc["rmia_offline", "n_scored"] + summ.loc["rmia_offline", "n_excluded"] == 600
    assert summ.loc["rmia_offline", "a"] in set(audit_attacks.A_GRID) and np.isnan(summ.loc["loss_threshold", "a"])
    assert len(patients) == 200 and (patients["n_candidates"] == 3).all()
    worst = pd.Series(conf[0].reshape(200, 3).max(axis=1), index=[f"p{i}" for i in range(200)])
    np.testing.assert_array_equal(patients["loss_threshold"], worst.loc[patients["patient_id"]])


def test_tpr_below_the_resolvable_fpr_is_nan_with_a_status_and_one_warning(separable):
    conf, member, df = separable
    # 3000 records, half members: ~1500 non-members per target resolve FPR 0.001
    assert (df["tpr_status"] == "ok").all() and df["tpr_at_fpr_0.001"].notna().all()
    assert np.allclose(df["min_resolvable_fpr"], 1 / (~member[df["target"]]).sum(axis=1))
    assert audit_attacks.resolution_warning(df) is None
    # 300 records: ~150 non-members per target, 1/150 > 0.001 (but < 0.01)
    small = audit_attacks.run_aggregate_attacks(
        conf[:, :300], member[:, :300], n_targets=3, seed=1, attacks=("lira_online",)
    )
    assert small["tpr_at_fpr_0.001"].isna().all() and small["tpr_at_fpr_0.01"].notna().all()
    assert (small["tpr_status"] == audit_attacks.STATUS_UNRESOLVABLE_FPR).all() and (small["status"] == "ok").all()
    warning = audit_attacks.resolution_warning(small)
    assert "TPR at FPR 0.001 not reported" in warning and "3 of 3 rows" in warning
    roc = audit_attacks.mean_roc([np.arange(300)] * 2, [member[0, :300], member[1, :300]])
    assert roc["fpr"].iloc[0] == pytest.approx(max(1 / (~member[i, :300]).sum() for i in (0, 1)))


def test_roc_curve_and_auc_equal_sklearn_to_the_bit():
    """mia_audit.roc (the attacks' and the per-model metrics' ROC without scikit-learn's input
    checks) gives scikit-learn's curve and AUC to the last bit: ties, collinear points, one class."""
    import sklearn.metrics

    from mia_audit import roc

    rng = np.random.default_rng(11)
    for n in (3, 17, 400, 1945):
        y = rng.random(n) < 0.35
        y[:2] = [True, False]
        for score in (rng.random(n), np.round(rng.normal(size=n), 1), rng.integers(0, 3, n).astype(float)):
            assert roc.roc_auc(y, score) == sklearn.metrics.roc_auc_score(y, score)
            for drop in (True, False):
                fpr, tpr, _ = sklearn.metrics.roc_curve(y, score, drop_intermediate=drop)
                ours = roc.roc_curve(y, score, drop_intermediate=drop)
                np.testing.assert_array_equal(ours[0], fpr)
                np.testing.assert_array_equal(ours[1], tpr)
    assert np.isnan(roc.roc_auc(np.ones(5, bool), rng.random(5)))
    assert np.isnan(roc.roc_auc(np.zeros(5, bool), rng.random(5)))
    with pytest.raises(ValueError, match="NaN"):
        roc.roc_curve([True, False], [0.1, np.nan])
