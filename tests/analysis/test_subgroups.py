"""Tail-composition tests: numbers checked against independent computations."""

import io
import math

import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.gof import chisquare as sm_chisquare
from statsmodels.stats.multitest import multipletests

from mia_audit.analysis import subgroups as analysis_subgroups
from mia_audit.errors import DataError


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
    t = analysis_subgroups.attribute_table(groups, auc, quantile=0.96, min_expected=5)
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
    assert analysis_subgroups.exact_chisquare_pvalue(observed, probs) == pytest.approx(
        _naive_exact_p(observed, probs), rel=1e-10
    )


def test_exact_pvalues_sum_to_one_at_minimum():
    # The outcome with the smallest X² has p = 1.
    assert analysis_subgroups.exact_chisquare_pvalue([2, 1, 1], [0.5, 0.25, 0.25]) == pytest.approx(1.0)


def test_monte_carlo_agrees_with_exact_and_is_seeded():
    obs, probs = [0, 5, 1, 0], [0.4, 0.3, 0.2, 0.1]
    exact = _naive_exact_p(obs, probs)
    p1 = analysis_subgroups.monte_carlo_chisquare_pvalue(obs, probs, 100_000, np.random.default_rng(1))
    p2 = analysis_subgroups.monte_carlo_chisquare_pvalue(obs, probs, 100_000, np.random.default_rng(1))
    assert p1 == p2
    assert abs(p1 - exact) < 4 * math.sqrt(exact * (1 - exact) / 100_000) + 1e-5


def test_small_expected_uses_exact_or_monte_carlo():
    big = [500, 300, 200]
    r = analysis_subgroups.goodness_of_fit([3, 0, 1], big)
    assert r["test"] == "exact" and "Cochran" in r["note"]
    assert r["p"] == pytest.approx(_naive_exact_p([3, 0, 1], [0.5, 0.3, 0.2]))
    r = analysis_subgroups.goodness_of_fit(
        [3, 0, 1], big, exact_max_outcomes=1, draws=100_000, rng=np.random.default_rng(0)
    )
    assert r["test"] == "monte_carlo"
    assert r["p"] == pytest.approx(_naive_exact_p([3, 0, 1], [0.5, 0.3, 0.2]), abs=0.01)


def test_bad_inputs_give_nan_p_with_note():
    one = analysis_subgroups.goodness_of_fit([5], [100])
    assert one["test"] == "none" and np.isnan(one["p"]) and "one group" in one["note"]
    small = analysis_subgroups.goodness_of_fit([1, 1, 0, 0], [10, 10, 10, 10])
    assert small["test"] == "none" and np.isnan(small["p"]) and "smaller than the 4 groups" in small["note"]
    empty = analysis_subgroups.goodness_of_fit([0, 0], [10, 10])
    assert np.isnan(empty["p"]) and "empty" in empty["note"]
    with pytest.raises(ValueError, match="overall counts"):
        analysis_subgroups.goodness_of_fit([1, 0], [3, 0])


def test_attribute_table_zero_tail_group_and_undefined_auc():
    groups = np.array(["x"] * 60 + ["y"] * 30 + ["z"] * 10 + ["w"] * 5)
    auc = np.r_[np.linspace(0.5, 0.9, 60), np.linspace(0.5, 0.7, 30), np.linspace(0.5, 0.6, 10), [np.nan] * 5]
    t = analysis_subgroups.attribute_table(groups, auc, quantile=0.9, order=["z", "y", "x"])
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
    t = analysis_subgroups.attribute_table(["F"] * 50, np.linspace(0, 1, 50), quantile=0.9)
    assert len(t) == 1 and np.isnan(t["p"].iloc[0]) and t["test"].iloc[0] == "none"


def test_tail_ties_and_nan():
    mask, thr = analysis_subgroups.tail_mask([0.1, 0.9, 0.9, np.nan, 0.5], 0.99)
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
    pr = pr.drop_duplicates("patient_id").assign(n_records=2)
    a = analysis_subgroups.experiment_tests(
        records,
        rr,
        pr,
        dataset="d",
        experiment="e1",
        attributes=["sex", "age"],
        quantile=0.9,
        orders={"age": ["<40", "40-59", ">=60"]},
    )
    b = analysis_subgroups.experiment_tests(
        records, rr, pr, dataset="d", experiment="e2", attributes=["sex", "age"], quantile=0.8
    )
    assert list(a.columns) == analysis_subgroups.COLUMNS
    assert a.query("attribute == 'age' and level == 'record'")["group"].tolist() == ["<40", "40-59", ">=60"]
    assert a.query("level == 'record'")["n_undefined"].iloc[0] == 4
    # the patient's group is their first record's group (a rule the model cannot change)
    first = records.drop_duplicates("patient_id").merge(pr.dropna(subset=["auc"])[["patient_id"]], on="patient_id")
    pat = a.query("level == 'patient' and attribute == 'sex'").set_index("group")["n_overall"]
    assert pat.to_dict() == first["sex"].value_counts().to_dict()
    both = analysis_subgroups.adjust_pvalues(pd.concat([a, b]), "fdr_bh")
    tests = both.drop_duplicates(analysis_subgroups.TEST_KEY)
    assert len(tests) == 8
    expect = multipletests(tests["p"].to_numpy(), method="fdr_bh")[1]
    assert np.allclose(tests["p_adj"].to_numpy(), expect)
    assert both["p_adjust_method"].iloc[0] == "fdr_bh over 8 tests"
    comp = analysis_subgroups.composition_table(both)
    assert {"share_overall", "share_tail", "n_tail"} <= set(comp.columns)

    # the per-experiment tables cut in memory are, to the byte, the rows of the run-wide file as
    # written and read back (how they were made when each table had its own job); an experiment
    # whose data set has no subgroups gets a composition table with its header only
    none = analysis_subgroups.experiment_tests(records, rr, pr, dataset="d2", experiment="e3", attributes=[])
    run = analysis_subgroups.adjust_pvalues(
        analysis_subgroups.concat_tests([a, none, b]), "fdr_bh"
    )  # the empty table adds no rows
    back = pd.read_csv(
        io.StringIO(run.to_csv(sep="\t", index=False)),
        sep="\t",
        keep_default_na=False,
        na_values=[""],
        dtype={"group": str},
    )
    entries = [
        {"dataset": "d", "experiment": e, "attribute": attr, "path": f"{e}/{attr}"}
        for e in ("e1", "e2")
        for attr in (None, "sex", "age")
    ] + [{"dataset": "d2", "experiment": "e3", "attribute": None, "path": "e3/None"}]
    cuts = analysis_subgroups.cut_tables(run, entries)
    assert list(cuts) == [t["path"] for t in entries]
    for t in entries:
        of_exp = back[(back["dataset"] == t["dataset"]) & (back["experiment"] == t["experiment"])]
        old = (
            analysis_subgroups.composition_table(of_exp)
            if t["attribute"] is None
            else of_exp[of_exp["attribute"] == t["attribute"]]
        )
        assert cuts[t["path"]].to_csv(sep="\t", index=False) == old.to_csv(sep="\t", index=False), t
    assert len(cuts["e1/sex"]) == 4 and set(cuts["e1/sex"]["level"]) == {"record", "patient"}
    assert cuts["e3/None"].empty and "share_tail" in cuts["e3/None"].columns
    with pytest.raises(DataError, match=r"tests\.tsv has no rows for dataset 'd', experiment 'e1', attribute 'stage'"):
        analysis_subgroups.cut_tables(
            run, [{"dataset": "d", "experiment": "e1", "attribute": "stage", "path": "x"}], "tests.tsv"
        )


def test_adjust_keeps_nan_out_of_the_family():
    t = pd.DataFrame(
        {"dataset": "d", "experiment": "e", "attribute": ["a", "b", "c"], "level": "record", "p": [0.01, np.nan, 0.04]}
    )
    out = analysis_subgroups.adjust_pvalues(t, "bonferroni")
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
    got = analysis_subgroups.cluster_permutation_test(
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

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_cluster_test.py"
    spec = importlib.util.spec_from_file_location("bench_cluster_test", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    df = bench.run(replicates=100, n_patients=100, icc=0.5, quantile=0.9, permutations=199, seed=1)
    s = bench.summarise(df).query("level == 'record'").set_index("attribute")
    assert (s["type1_naive"] > 0.15).all()
    assert (s["type1_cluster"] <= 0.09).all() and (s["type1_cluster"] >= 0.01).all()
    assert (s["median_design_effect"] > 1.3).all()


def _bench():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_cluster_test.py"
    spec = importlib.util.spec_from_file_location("bench_cluster_test", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def test_auto_tail_keeps_the_tests_at_their_level():
    """A small fixed-seed run of ``bench_cluster_test.py --tail auto``: the tail is chosen from the
    data (from the 0.99 quantile, enlarged in most replicates), and the primary tests of both
    levels still hold their level. The benchmark's 2,000 replicates: see docs/methods.md."""
    bench = _bench()
    df = bench.run(replicates=120, n_patients=120, icc=0.5, quantile=0.99, permutations=199, seed=2, tail="auto")
    s = bench.summarise(df).set_index(["level", "attribute"])
    assert (s["share_enlarged"] > 0.5).all()  # auto did choose larger tails than the 0.99 one
    assert (s["median_tail_quantile"] < 0.99).all() and (s["median_tail_quantile"] >= 0.8).all()
    # 120 replicates: 0.05 ± 2 SE = 0.010–0.090
    assert (s["type1_cluster"] <= 0.09).all() and (s["type1_cluster"] >= 0.01).all()
    assert s.loc[("record", "arm"), "type1_naive"] > 0.15  # the naive record test still fails


def test_absence_need_is_the_hypergeometric_rule_of_three():
    from scipy.stats import hypergeom

    for n_units, k in [(250, 28), (250, 7), (40, 39), (1000, 1), (12, 12)]:
        need = int(analysis_subgroups.absence_need(n_units, k, 0.05)[0])
        p = [hypergeom.pmf(0, n_units, k, m) for m in range(1, n_units + 1)]
        assert need == 1 + next(i for i, x in enumerate(p) if x <= 0.05)
    # for a large cohort m ≈ ln(1/α) / π: about 3 expected at α = 0.05 (the rule of three)
    need = analysis_subgroups.absence_need(1_000_000, [10_000, 100_000], 0.05)
    np.testing.assert_allclose(need * np.array([0.01, 0.1]), math.log(20), rtol=0.05)
    assert analysis_subgroups.absence_need(250, 28, 0.01)[0] > analysis_subgroups.absence_need(250, 28, 0.05)[0]
    with pytest.raises(ValueError, match="tail_alpha"):
        analysis_subgroups.absence_need(10, 2, 1.5)


def test_tail_need_counts_patients_at_record_level():
    # 6 patients; group "b" appears in patients p1 (one of two visits) and p5 only
    groups = ["a", "a", "b", "a", "a", "a", "b", "a"]
    clusters = ["p0", "p1", "p1", "p2", "p3", "p4", "p5", "p5"]
    need = analysis_subgroups.tail_need(groups, clusters, 0.05)
    assert (need["group"], need["n_group"], need["n_patients"]) == ("b", 2, 6)
    assert need["need"] == analysis_subgroups.absence_need(6, 2, 0.05)[0]
    assert analysis_subgroups.tail_need(["x"] * 5) is None  # one group: no test, no need


def test_tail_rules_quantile_count_threshold():
    auc = np.array([0.5, 0.95, 0.9, 0.9, np.nan, 0.7, 0.99, 0.6])
    q = analysis_subgroups.choose_tail(auc, rule="quantile", quantile=0.8)
    mask, thr = analysis_subgroups.tail_mask(auc, 0.8)
    assert q.mask.tolist() == mask.tolist() and q.threshold == thr and q.quantile == 0.8 and q.rule == "quantile"
    c = analysis_subgroups.choose_tail(auc, rule="count", count=3)
    assert c.mask.tolist() == [False, True, True, True, False, False, True, False]  # a tie at 0.9 joins
    assert c.threshold == 0.9 and "1 more tied" in c.reason
    # the equivalent quantile gives the same tail under the quantile rule
    assert analysis_subgroups.tail_mask(auc, c.quantile)[0].tolist() == c.mask.tolist()
    t = analysis_subgroups.choose_tail(auc, rule="threshold", threshold=0.92)
    assert t.mask.tolist() == [False, True, False, False, False, False, True, False] and t.threshold == 0.92
    assert analysis_subgroups.tail_mask(auc, t.quantile)[0].tolist() == t.mask.tolist()
    empty = analysis_subgroups.choose_tail(auc, rule="threshold", threshold=0.999)
    assert empty.n_units == 0 and np.isnan(empty.quantile)
    everything = analysis_subgroups.choose_tail(auc, rule="count", count=50)
    assert everything.n_units == 7 and "all are in the tail" in everything.reason
    with pytest.raises(ValueError, match="subgroups.count"):
        analysis_subgroups.choose_tail(auc, rule="count")
    with pytest.raises(ValueError, match="subgroups.threshold"):
        analysis_subgroups.choose_tail(auc, rule="threshold")
    with pytest.raises(ValueError, match="subgroups.tail must be one of"):
        analysis_subgroups.choose_tail(auc, rule="top")


def _cohort(n_pat=200, seed=0, rare=0.1):
    """Patients with 1–5 records; sex with a rare group; AUCs independent of it."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 6, n_pat)
    pid = np.repeat([f"p{i}" for i in range(n_pat)], sizes)
    records = pd.DataFrame({"record_id": [f"r{i}" for i in range(pid.size)], "patient_id": pid})
    records["sex"] = np.repeat(np.where(rng.random(n_pat) < rare, "m", "f"), sizes)
    records["arm"] = np.repeat(rng.choice(["x", "y"], n_pat), sizes)
    rr = records[["record_id", "patient_id"]].assign(auc=rng.uniform(0.5, 1.0, pid.size))
    pr = rr.sort_values("auc", ascending=False).drop_duplicates("patient_id")
    pr = pr.merge(records.groupby("patient_id").size().rename("n_records"), on="patient_id")
    return records, rr, pr.rename(columns={"record_id": "worst_record_id"})


def test_auto_tail_grows_to_what_every_group_needs_and_says_why():
    records, rr, pr = _cohort()
    kw = dict(dataset="d", experiment="e", attributes=["sex", "arm"], permutations=500)
    t = analysis_subgroups.experiment_tests(records, rr, pr, tail="auto", quantile=0.99, **kw)
    assert list(t.columns) == analysis_subgroups.COLUMNS and (t["tail_rule"] == "auto").all()
    for level in ("record", "patient"):
        cur = t[t["level"] == level].drop_duplicates("attribute").set_index("attribute")
        need = cur["n_tail_needed"].max()
        assert cur["n_tail_patients"].iloc[0] >= need  # every group testable
        assert (cur["quantile"] < 0.99).all() and cur["tail_reason"].iloc[0].startswith("auto: the 0.99 quantile")
        # the smallest such tail: one unit less (at the next AUC) has fewer patients than needed
        u = rr if level == "record" else pr
        above = u[u["auc"] > cur["threshold"].iloc[0]]
        assert above["patient_id"].nunique() < need
        # the need is the binding group's: sex 'm'
        m = (
            records
            if level == "record"
            else pr.merge(records.drop_duplicates("patient_id")[["patient_id", "sex"]], on="patient_id")
        )
        n_m = m.loc[m["sex"] == "m", "patient_id"].nunique()
        assert cur.loc["sex", "n_tail_needed"] == analysis_subgroups.absence_need(200, n_m, 0.05)[0]
        assert "too small" not in " ".join(cur["note"])
    # the same tail under the quantile rule at the chosen quantile (the patient level has no ties)
    pat = t[t["level"] == "patient"].iloc[0]
    q = analysis_subgroups.experiment_tests(records, rr, pr, tail="quantile", quantile=pat["quantile"], **kw)
    assert q[q["level"] == "patient"]["n_tail_total"].iloc[0] == pat["n_tail_total"]
    # a large enough configured tail is kept as it is
    kept = analysis_subgroups.experiment_tests(records, rr, pr, tail="auto", quantile=0.7, auto_min_quantile=0.5, **kw)
    assert (kept["quantile"] == 0.7).all() and kept["tail_reason"].str.startswith("auto: kept").all()


def test_auto_tail_says_when_the_cohort_is_too_small():
    records, rr, pr = _cohort(n_pat=40, seed=1, rare=0.05)
    t = analysis_subgroups.experiment_tests(
        records, rr, pr, dataset="d", experiment="e", attributes=["sex"], tail="auto", quantile=0.99, permutations=200
    )
    pat = t[t["level"] == "patient"].iloc[0]
    assert "too small for any useful test at patient level" in pat["tail_reason"]
    assert pat["quantile"] == 0.99  # the configured tail is kept
    assert "cohort too small for a useful test: group 'm'" in pat["note"]
    # with an attribute that can be tested, the tail is sized for it and the other is named
    t = analysis_subgroups.experiment_tests(
        records, rr, pr, dataset="d", experiment="e", attributes=["sex", "arm"], tail="auto", permutations=200
    )
    pat = t[t["level"] == "patient"].set_index("attribute")
    assert pat.loc["arm", "n_tail_patients"].min() >= pat.loc["arm", "n_tail_needed"].max()
    assert "too small for a useful test even within the top 20 %" in pat["tail_reason"].iloc[0]
    assert "cohort too small" in pat.loc["sex", "note"].iloc[0] and "too small" not in pat.loc["arm", "note"].iloc[0]


def test_count_and_threshold_per_level_and_settings_from_the_config():
    records, rr, pr = _cohort()
    settings = {"tail": "count", "count": {"record": 30, "patient": 12}, "cluster_permutations": 1000, "seed": 4}
    kwargs = {
        **analysis_subgroups.settings_kwargs(settings),
        "permutations": 300,
    }  # fewer than the schema allows: speed
    t = analysis_subgroups.experiment_tests(records, rr, pr, dataset="d", experiment="e", attributes=["sex"], **kwargs)
    n = t.drop_duplicates("level").set_index("level")["n_tail_total"]
    assert n["record"] >= 30 and n["patient"] == 12 and (t["tail_rule"] == "count").all()
    t = analysis_subgroups.experiment_tests(
        records,
        rr,
        pr,
        dataset="d",
        experiment="e",
        attributes=["sex"],
        tail="threshold",
        threshold=0.95,
        permutations=300,
    )
    rec = t[t["level"] == "record"].iloc[0]
    assert rec["n_tail_total"] == (rr["auc"] >= 0.95).sum() and rec["threshold"] == 0.95
    # the defaults of settings_kwargs are the schema's, as are experiment_tests' own
    assert analysis_subgroups.settings_kwargs({})["tail"] == "auto"


def test_unit_permutation_test_matches_the_exact_conditional_test():
    """p of the patient tables: the multivariate hypergeometric null, enumerated with scipy."""
    from scipy.stats import multivariate_hypergeom

    overall = np.array([12, 7, 3])
    observed = np.array([2, 4, 2])  # a tail of 8 of 22 units: a sizeable share
    n = observed.sum()
    e = n * overall / overall.sum()
    outcomes = [x for x in analysis_subgroups.compositions(n, 3) if (x <= overall).all()]

    def stat(x):
        return float(((np.asarray(x) - e) ** 2 / e).sum())

    exact = sum(multivariate_hypergeom.pmf(x, overall, n) for x in outcomes if stat(x) >= stat(observed) - 1e-9)
    got = analysis_subgroups.unit_permutation_test(observed, overall, permutations=40_000, rng=np.random.default_rng(0))
    assert got == pytest.approx(exact, abs=4 * math.sqrt(exact * (1 - exact) / 40_000) + 1e-4)
    # the multinomial test, which takes the shares as known, is larger (conservative) here
    assert analysis_subgroups.goodness_of_fit(observed, overall)["p"] > exact


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
    pr = best.rename(columns={"record_id": "worst_record_id"}).merge(
        records.groupby("patient_id").size().rename("n_records"), on="patient_id"
    )
    t = analysis_subgroups.experiment_tests(
        records, rr, pr, dataset="d", experiment="e", attributes=["sex"], quantile=0.8, permutations=2000
    )
    rec, pat = t[t["level"] == "record"].iloc[0], t[t["level"] == "patient"].iloc[0]
    assert rec["cluster_test"] == analysis_subgroups.CLUSTER_PERMUTATION and 0 < rec["p_cluster"] <= 1
    assert rec["n_tail_patients"] == rr.loc[rr["auc"] >= rec["threshold"], "patient_id"].nunique()
    assert rec["design_effect"] > 1
    assert pat["cluster_test"] == analysis_subgroups.CLUSTER_UNITS and pat["design_effect"] == 1
    # patients: the permutation test within strata of equal records per patient, against the
    # exact stratified conditional test (hypergeometric per stratum, convolved over strata)
    from scipy.stats import hypergeom

    units = analysis_subgroups.level_units(records, rr, pr, ["sex"])["patient"]
    in_tail = (units["auc"] >= pat["threshold"]).to_numpy()
    is_f = (units["sex"] == "f").to_numpy()
    pmf = np.array([1.0])
    for k in np.unique(units["n_records"]):
        s_ = (units["n_records"] == k).to_numpy()
        n_s, f_s, m_s = int(s_.sum()), int((is_f & s_).sum()), int((in_tail & s_).sum())
        pmf = np.convolve(pmf, hypergeom.pmf(np.arange(m_s + 1), n_s, f_s, m_s))
    n_f, n_tail = int(pat["n_overall"]), int(pat["n_tail_total"])
    n_all = int(pat["n_total"])
    e = n_tail * n_f / n_all
    x = np.arange(n_tail + 1)
    exact = pmf[np.abs(x - e) >= abs(pat["n_tail"] - e) - 1e-9].sum()
    assert pat["p_cluster"] == pytest.approx(exact, abs=4 * math.sqrt(exact * (1 - exact) / 2000) + 1e-3)
    adj = analysis_subgroups.adjust_pvalues(t, "bonferroni")
    tests = adj.drop_duplicates(analysis_subgroups.TEST_KEY)
    np.testing.assert_allclose(tests["p_cluster_adj"], np.minimum(1, 2 * tests["p_cluster"]))
    again = analysis_subgroups.experiment_tests(
        records, rr, pr, dataset="d", experiment="e", attributes=["sex"], quantile=0.8, permutations=2000
    )
    pd.testing.assert_frame_equal(t, again)  # seeded


def test_auto_tail_is_invariant_under_the_tests_permutations():
    """Why the data-chosen tail keeps the tests exact: permuting labels as the tests do (between
    patients of equal record count; between patients at patient level) leaves the auto tail as
    it is, so every permutation sees the same tail."""
    records, rr, pr = _cohort(n_pat=150, seed=5, rare=0.12)
    rng = np.random.default_rng(0)
    units = analysis_subgroups.level_units(records, rr, pr, ["sex", "arm"])
    kw = dict(rule="auto", quantile=0.99, auto_min_quantile=0.8, tail_alpha=0.05)
    rec, pat = units["record"], units["patient"]
    base_r = analysis_subgroups.level_tail(
        rec["auc"], {a: rec[a] for a in ("sex", "arm")}, clusters=rec["patient_id"], **kw
    )
    base_p = analysis_subgroups.level_tail(pat["auc"], {a: pat[a] for a in ("sex", "arm")}, **kw)
    assert base_r.quantile < 0.99 and base_p.quantile < 0.99  # auto did enlarge both
    size = rec.groupby("patient_id")["sex"].transform("size").to_numpy()
    first = ~rec["patient_id"].duplicated().to_numpy()
    for _ in range(5):
        # records: a patient's (constant) sex goes to another patient with as many records
        new = rec["sex"].to_numpy(dtype=object).copy()
        by_patient = pd.Series(new[first], index=rec["patient_id"][first])
        for k in np.unique(size):
            who = by_patient.index[size[first] == k]
            by_patient[who] = rng.permutation(by_patient[who].to_numpy())
        perm_r = rec["patient_id"].map(by_patient).to_numpy()
        t = analysis_subgroups.level_tail(
            rec["auc"], {"sex": perm_r, "arm": rec["arm"]}, clusters=rec["patient_id"], **kw
        )
        assert np.array_equal(t.mask, base_r.mask) and t.reason == base_r.reason
        t = analysis_subgroups.level_tail(
            pat["auc"], {"sex": rng.permutation(pat["sex"].to_numpy()), "arm": pat["arm"]}, **kw
        )
        assert np.array_equal(t.mask, base_p.mask) and t.reason == base_p.reason


def test_patient_test_stratified_by_records_keeps_its_level_for_a_records_linked_attribute():
    """Reduced-size run of benchmarks/bench_cluster_test.py --records-attribute: a stage whose
    patients have 10.0 to 5.1 records on average and no effect. 150 replicates (the benchmark:
    2,000, type-I error 0.049–0.051 stratified against 0.075–0.078 unstratified)."""
    bench = _bench()
    df = bench.run(
        replicates=150, n_patients=120, icc=0.5, quantile=0.9, permutations=199, seed=4, records_attribute=True
    )
    s = bench.summarise(df).query("level == 'patient'").set_index("attribute")
    assert (s["type1_cluster"] <= 0.1).all(), s["type1_cluster"]  # 150 sets: 0.05 + 2.8 SE
