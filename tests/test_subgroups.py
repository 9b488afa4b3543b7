"""Tail-composition tests: numbers checked against independent computations."""

import math

import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.gof import chisquare as sm_chisquare
from statsmodels.stats.multitest import multipletests

from mia_audit import subgroups as sg


def _naive_exact_p(observed, probs):
    """Exact P(X² ≥ X²_obs) by a plain recursive enumeration with math.factorial."""
    n, k = sum(observed), len(observed)
    e = [n * p for p in probs]

    def x2(x):
        return sum((xi - ei) ** 2 / ei for xi, ei in zip(x, e, strict=True))

    obs = x2(observed)

    def outcomes(rest, parts):
        if parts == 1:
            yield (rest,)
            return
        for first in range(rest + 1):
            for tail in outcomes(rest - first, parts - 1):
                yield (first, *tail)

    total = 0.0
    for x in outcomes(n, k):
        if x2(x) >= obs - 1e-9:
            coef = math.factorial(n)
            for xi in x:
                coef //= math.factorial(xi)
            total += coef * math.prod(p**xi for p, xi in zip(probs, x, strict=True))
    return total


def test_chi2_residuals_match_hand_arithmetic_and_statsmodels():
    # 1000 units: groups 500/300/200; tail of 40 with 10/14/16.
    groups = np.array(["a"] * 500 + ["b"] * 300 + ["c"] * 200)
    auc = np.full(1000, 0.5)
    tail_idx = np.r_[0:10, 500:514, 800:816]
    auc[tail_idx] = 0.99
    t = sg.attribute_table(groups, auc, quantile=0.96, min_expected=5)
    assert t["n_tail"].tolist() == [10, 14, 16]
    exp = np.array([20.0, 12.0, 8.0])
    assert np.allclose(t["expected"], exp)
    assert np.allclose(t["residual"], [(10 - 20) / math.sqrt(20), (14 - 12) / math.sqrt(12), (16 - 8) / math.sqrt(8)])
    assert np.allclose(t["rel_change"], [-0.5, 14 / 12 - 1, 1.0])
    x2 = 100 / 20 + 4 / 12 + 64 / 8
    stat, p = sm_chisquare([10, 14, 16], exp)
    assert t["test"].iloc[0] == "chi2"
    assert t["chi2"].iloc[0] == pytest.approx(x2) == pytest.approx(stat)
    assert t["p"].iloc[0] == pytest.approx(p)
    assert t["p"].iloc[0] == pytest.approx(math.exp(-x2 / 2))  # χ² survival with 2 dof
    assert t["dof"].iloc[0] == 2


@pytest.mark.parametrize(
    "observed,probs", [([3, 0, 1], [0.5, 0.3, 0.2]), ([0, 5, 1, 0], [0.4, 0.3, 0.2, 0.1]), ([6, 1], [0.9, 0.1])]
)
def test_exact_matches_naive_enumeration(observed, probs):
    assert sg.exact_chisquare_pvalue(observed, probs) == pytest.approx(_naive_exact_p(observed, probs), rel=1e-10)


def test_exact_pvalues_sum_to_one_at_minimum():
    # The outcome with the smallest X² has p = 1.
    assert sg.exact_chisquare_pvalue([2, 1, 1], [0.5, 0.25, 0.25]) == pytest.approx(1.0)


def test_monte_carlo_agrees_with_exact_and_is_seeded():
    obs, probs = [0, 5, 1, 0], [0.4, 0.3, 0.2, 0.1]
    exact = _naive_exact_p(obs, probs)
    p1 = sg.monte_carlo_chisquare_pvalue(obs, probs, 100_000, np.random.default_rng(1))
    p2 = sg.monte_carlo_chisquare_pvalue(obs, probs, 100_000, np.random.default_rng(1))
    assert p1 == p2
    assert abs(p1 - exact) < 4 * math.sqrt(exact * (1 - exact) / 100_000) + 1e-5


def test_small_expected_uses_exact_or_monte_carlo():
    big = [500, 300, 200]
    r = sg.goodness_of_fit([3, 0, 1], big)
    assert r["test"] == "exact" and "Cochran" in r["note"]
    assert r["p"] == pytest.approx(_naive_exact_p([3, 0, 1], [0.5, 0.3, 0.2]))
    r = sg.goodness_of_fit([3, 0, 1], big, exact_max_outcomes=1, draws=100_000, rng=np.random.default_rng(0))
    assert r["test"] == "monte_carlo"
    assert r["p"] == pytest.approx(_naive_exact_p([3, 0, 1], [0.5, 0.3, 0.2]), abs=0.01)


def test_bad_inputs_give_nan_p_with_note():
    one = sg.goodness_of_fit([5], [100])
    assert one["test"] == "none" and np.isnan(one["p"]) and "one group" in one["note"]
    small = sg.goodness_of_fit([1, 1, 0, 0], [10, 10, 10, 10])
    assert small["test"] == "none" and np.isnan(small["p"]) and "smaller than the 4 groups" in small["note"]
    empty = sg.goodness_of_fit([0, 0], [10, 10])
    assert np.isnan(empty["p"]) and "empty" in empty["note"]
    with pytest.raises(ValueError, match="overall counts"):
        sg.goodness_of_fit([1, 0], [3, 0])


def test_attribute_table_zero_tail_group_and_undefined_auc():
    groups = np.array(["x"] * 60 + ["y"] * 30 + ["z"] * 10 + ["w"] * 5)
    auc = np.r_[np.linspace(0.5, 0.9, 60), np.linspace(0.5, 0.7, 30), np.linspace(0.5, 0.6, 10), [np.nan] * 5]
    t = sg.attribute_table(groups, auc, quantile=0.9, order=["z", "y", "x"])
    assert t["group"].tolist() == ["z", "y", "x"]  # "w" has no defined AUC
    assert t["n_undefined"].iloc[0] == 5
    assert t["n_total"].iloc[0] == 100
    assert t.set_index("group")["n_tail"].to_dict() == {"z": 0, "y": 0, "x": 10}
    z = t.set_index("group").loc["z"]
    assert z["residual"] == pytest.approx(-math.sqrt(1.0)) and z["rel_change"] == -1.0
    assert "absent from the tail: z, y" in t["note"].iloc[0]
    assert "left out: w" in t["note"].iloc[0]
    assert t["test"].iloc[0] == "exact"  # expected counts 1, 3, 6


def test_one_group_attribute_no_crash():
    t = sg.attribute_table(["F"] * 50, np.linspace(0, 1, 50), quantile=0.9)
    assert len(t) == 1 and np.isnan(t["p"].iloc[0]) and t["test"].iloc[0] == "none"


def test_tail_ties_and_nan():
    mask, thr = sg.tail_mask([0.1, 0.9, 0.9, np.nan, 0.5], 0.99)
    assert thr == pytest.approx(0.9) and mask.tolist() == [False, True, True, False, False]


def test_experiment_tests_and_adjustment_across_runs():
    rng = np.random.default_rng(0)
    n = 400
    records = pd.DataFrame(
        {
            "record_id": [f"r{i}" for i in range(n)],
            "patient_id": [f"p{i // 2}" for i in range(n)],
            "sex": rng.choice(["f", "m"], n),
            "age": rng.choice(["<40", ">=60", "40-59"], n),
        }
    )
    rr = pd.DataFrame(
        {"record_id": records["record_id"], "patient_id": records["patient_id"], "auc": rng.uniform(0.5, 1, n)}
    )
    rr.loc[:3, "auc"] = np.nan
    ranked = rr.dropna().sort_values("auc", ascending=False).drop_duplicates("patient_id")
    pr = ranked.rename(columns={"record_id": "worst_record_id"})[["patient_id", "auc", "worst_record_id"]]
    pr = pd.concat([pr, pd.DataFrame({"patient_id": ["p0", "p1"], "auc": [np.nan] * 2, "worst_record_id": [None] * 2})])
    pr = pr.drop_duplicates("patient_id")
    a = sg.experiment_tests(
        records,
        rr,
        pr,
        dataset="d",
        experiment="e1",
        attributes=["sex", "age"],
        quantile=0.9,
        orders={"age": ["<40", "40-59", ">=60"]},
    )
    b = sg.experiment_tests(records, rr, pr, dataset="d", experiment="e2", attributes=["sex", "age"], quantile=0.8)
    assert list(a.columns) == sg.COLUMNS
    assert a.query("attribute == 'age' and level == 'record'")["group"].tolist() == ["<40", "40-59", ">=60"]
    assert a.query("level == 'record'")["n_undefined"].iloc[0] == 4
    # the patient's group is their worst record's group
    worst = pr.dropna(subset=["auc"]).merge(records, left_on="worst_record_id", right_on="record_id")
    pat = a.query("level == 'patient' and attribute == 'sex'").set_index("group")["n_overall"]
    assert pat.to_dict() == worst["sex"].value_counts().to_dict()
    both = sg.adjust_pvalues(pd.concat([a, b]), "fdr_bh")
    tests = both.drop_duplicates(sg.TEST_KEY)
    assert len(tests) == 8
    expect = multipletests(tests["p"].to_numpy(), method="fdr_bh")[1]
    assert np.allclose(tests["p_adj"].to_numpy(), expect)
    assert both["p_adjust_method"].iloc[0] == "fdr_bh over 8 tests"
    comp = sg.composition_table(both)
    assert {"share_overall", "share_tail", "n_tail"} <= set(comp.columns)


def test_adjust_keeps_nan_out_of_the_family():
    t = pd.DataFrame(
        {"dataset": "d", "experiment": "e", "attribute": ["a", "b", "c"], "level": "record", "p": [0.01, np.nan, 0.04]}
    )
    out = sg.adjust_pvalues(t, "bonferroni")
    assert np.allclose(out["p_adj"].to_numpy(), [0.02, np.nan, 0.08], equal_nan=True)


def _exact_cluster_p(groups, tail, clusters, expected):
    """Exact patient-permutation p-value by enumerating every assignment of label sequences
    among patients with the same number of records (itertools; the reference for the sampler)."""
    import itertools

    by_patient = pd.DataFrame({"g": groups, "t": tail, "c": clusters}).groupby("c", sort=False)
    seqs = {c: (tuple(d["g"]), tuple(d["t"])) for c, d in by_patient}
    strata: dict[int, list] = {}
    for c, (g, _) in seqs.items():
        strata.setdefault(len(g), []).append(c)
    k = len(expected)

    def x2(counts):
        return sum((o - e) ** 2 / e for o, e in zip(counts, expected, strict=True))

    obs = x2(np.bincount(np.asarray(groups)[np.asarray(tail)], minlength=k))
    stats_all = []
    for perms in itertools.product(*(itertools.permutations(m) for m in strata.values())):
        counts = np.zeros(k)
        for members, perm in zip(strata.values(), perms, strict=True):
            for recipient, donor in zip(members, perm, strict=True):
                for g, t in zip(seqs[donor][0], seqs[recipient][1], strict=True):
                    counts[g] += t
        stats_all.append(x2(counts))
    stats_all = np.array(stats_all)
    return float(np.mean(stats_all >= obs - 1e-9)), float(stats_all.mean())


def test_cluster_permutation_matches_full_enumeration():
    # 8 patients: sizes 1, 1, 1, 2, 2, 2, 3, 3; a label that changes within patient p6
    clusters = ["p0", "p1", "p2", "p3", "p3", "p4", "p4", "p5", "p5", "p6", "p6", "p6", "p7", "p7", "p7"]
    groups = np.array([0, 1, 0, 1, 1, 0, 0, 2, 2, 0, 1, 1, 2, 2, 2])
    tail = np.array([1, 0, 0, 1, 1, 0, 0, 1, 0, 1, 1, 1, 0, 0, 0], dtype=bool)
    overall = np.bincount(groups)
    expected = overall / overall.sum() * tail.sum()
    exact, mean_x2 = _exact_cluster_p(groups, tail, clusters, expected)
    got = sg.cluster_permutation_test(
        groups, tail, clusters, expected, permutations=40_000, rng=np.random.default_rng(7)
    )
    assert got["p"] == pytest.approx(exact, abs=4 * np.sqrt(exact * (1 - exact) / 40_000) + 1e-4)
    n, big_n, k = tail.sum(), groups.size, 3
    assert got["design_effect"] == pytest.approx(mean_x2 / ((k - 1) * (big_n - n) / (big_n - 1)), rel=0.03)
    assert got["n_tail_patients"] == 4  # p0, p3, p5, p6


def test_clustered_test_holds_its_level_where_the_naive_one_does_not():
    """A small fixed-seed run of benchmarks/bench_cluster_test.py (patients of 1–20 records,
    AUCs correlated within patient, a group label independent of them). The benchmark's 2,000
    replicates: naive type-I error 0.19–0.39, clustered 0.049–0.053 (band 0.040–0.060)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_cluster_test.py"
    spec = importlib.util.spec_from_file_location("bench_cluster_test", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    df = bench.run(replicates=100, n_patients=100, icc=0.5, quantile=0.9, permutations=199, seed=1)
    s = bench.summarise(df).set_index("attribute")
    assert (s["type1_naive"] > 0.15).all()
    assert (s["type1_cluster"] <= 0.09).all() and (s["type1_cluster"] >= 0.01).all()
    assert (s["median_design_effect"] > 1.3).all()


def test_record_level_tables_carry_the_clustered_test_and_patient_level_equals_naive():
    rng = np.random.default_rng(3)
    n_pat = 60
    sizes = rng.integers(1, 8, n_pat)
    pid = np.repeat([f"p{i}" for i in range(n_pat)], sizes)
    effect = np.repeat(rng.normal(size=n_pat), sizes)
    records = pd.DataFrame({"record_id": [f"r{i}" for i in range(pid.size)], "patient_id": pid})
    records["sex"] = np.repeat(rng.choice(["f", "m"], n_pat), sizes)
    rr = records[["record_id", "patient_id"]].assign(auc=0.7 + 0.1 * np.tanh(effect + 0.3 * rng.normal(size=pid.size)))
    best = rr.sort_values("auc", ascending=False).drop_duplicates("patient_id")
    pr = best.rename(columns={"record_id": "worst_record_id"})
    t = sg.experiment_tests(
        records, rr, pr, dataset="d", experiment="e", attributes=["sex"], quantile=0.8, permutations=2000
    )
    rec, pat = t[t["level"] == "record"].iloc[0], t[t["level"] == "patient"].iloc[0]
    assert rec["cluster_test"] == sg.CLUSTER_PERMUTATION and 0 < rec["p_cluster"] <= 1
    assert rec["n_tail_patients"] == rr.loc[rr["auc"] >= rec["threshold"], "patient_id"].nunique()
    assert rec["design_effect"] > 1
    assert pat["cluster_test"] == sg.CLUSTER_UNITS and pat["p_cluster"] == pat["p"] and pat["design_effect"] == 1
    adj = sg.adjust_pvalues(t, "bonferroni")
    tests = adj.drop_duplicates(sg.TEST_KEY)
    np.testing.assert_allclose(tests["p_cluster_adj"], np.minimum(1, 2 * tests["p_cluster"]))
    again = sg.experiment_tests(
        records, rr, pr, dataset="d", experiment="e", attributes=["sex"], quantile=0.8, permutations=2000
    )
    pd.testing.assert_frame_equal(t, again)  # seeded
