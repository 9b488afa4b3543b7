"""Model selection (mia_audit.train.selection), the scikit-learn baselines (mia_audit.train.baselines) and
the utility summary with its overfitting warning (mia_audit.train.model_utility)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from workflow_config import deep_update, default_config, validated

from mia_audit import errors
from mia_audit.errors import DataError
from mia_audit.pipeline import checks, plan
from mia_audit.train import baselines, model_utility, selection


def test_validation_splits_hold_out_pool_patients_and_train_on_half_the_pool() -> None:
    pool = np.array([f"p{i}" for i in range(100)])
    splits = selection.validation_splits(pool, splits=3, models=4, fraction=0.2, seed=7)
    assert len(splits) == 3
    for val, masks in splits:
        assert len(val) == 20 and set(val) <= set(pool)
        assert masks.shape == (4, 80) and (masks.sum(axis=1) == 50).all()  # ⌊P/2⌋: a target's size
        assert len({tuple(m) for m in masks}) == 4  # models differ
    assert not np.array_equal(splits[0][0], splits[1][0])
    again = selection.validation_splits(pool, splits=3, models=4, fraction=0.2, seed=7)
    assert all(np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) for a, b in zip(splits, again, strict=True))
    with pytest.raises(DataError, match="validation_fraction"):
        selection.validation_splits(pool[:3], splits=1, models=2, fraction=0.5, seed=0)


def test_choose_by_loss_or_auc_ties_to_the_first_and_never_nan() -> None:
    t = pd.DataFrame(
        {"candidate": ["a", "b", "c", "d"], "val_loss": [0.6, 0.5, 0.5, np.nan], "val_auc": [0.8, 0.7, np.nan, 0.9]}
    )
    assert selection.choose(t, "loss") == "b"
    assert selection.choose(t, "auc") == "d"
    assert selection.choose(t.assign(val_auc=np.nan, val_loss=[np.nan, np.nan, 0.9, np.nan]), "loss") == "c"
    with pytest.raises(DataError, match="selection.metric"):
        selection.choose(t, "accuracy")


def test_candidates_override_the_experiment_and_the_choice_replaces_it() -> None:
    exp = default_config()["experiments"]["mlp"]
    cands = selection.candidates(exp)
    assert list(cands) == list(exp["selection"]["candidates"])
    wide = cands["w32-do0.2-wd1e-2-e30"]
    assert wide["model"] == {**exp["model"], "width": 32, "dropout": 0.2}
    assert wide["train"] == {**exp["train"], "epochs": 30}
    assert cands["w16-wd1e-2-e20"] == {"model": exp["model"], "train": exp["train"]}
    chosen = selection.apply_choice(exp, {"candidate": "w32-do0.2-wd1e-2-e30", **wide})
    assert chosen["model"]["width"] == 32 and chosen["selected_candidate"] == "w32-do0.2-wd1e-2-e30"
    assert selection.apply_choice(exp, None) == exp


def _table(n_patients=120, records_per=3, seed=0):
    rng = np.random.default_rng(seed)
    pid = np.repeat(np.arange(n_patients), records_per).astype(str)
    X = rng.normal(size=(len(pid), 5)).astype(np.float32)
    y = (X[:, 0] + 0.5 * rng.normal(size=len(pid)) > 0).astype(np.int64)
    split = np.where(np.repeat(np.arange(n_patients), records_per) < int(0.8 * n_patients), "pool", "test")
    return pd.DataFrame({"patient_id": pid, "split": split}), X, y


def test_the_test_patients_never_influence_the_choice() -> None:
    """Shuffling the test records' labels changes only the reported test metrics: training,
    validation metrics and the choice come from the pool patients alone."""
    records, X, y = _table()
    exp = {
        "model": {"arch": "mlp", "depth": 1, "width": 8},
        "train": {"epochs": 3, "batch_size": 32, "lr": 0.01, "weight_decay": 0.0},
        "selection": {
            "candidates": {"narrow": {"model": {"width": 4}}, "wide": {"model": {"width": 16}}},
            "splits": 1,
            "models": 2,
            "validation_fraction": 0.25,
            "seed": 0,
            "metric": "loss",
        },
    }
    a, chosen_a = selection.run_selection(records, X, y, "multiclass", 2, exp, "cpu", 1, log=lambda s: None)
    test = (records["split"] == "test").to_numpy()
    y2 = y.copy()
    y2[test] = 1 - y2[test]
    b, chosen_b = selection.run_selection(records, X, y2, "multiclass", 2, exp, "cpu", 1, log=lambda s: None)
    val_cols = ["val_loss", "val_loss_sd", "val_auc", "train_loss", "train_auc"]
    np.testing.assert_allclose(a[val_cols].to_numpy(), b[val_cols].to_numpy(), rtol=1e-6)
    assert chosen_a == chosen_b and a["chosen"].sum() == 1
    assert (np.abs(a["test_auc"] + b["test_auc"] - 1) < 1e-6).all()  # flipped labels: AUC → 1 − AUC
    assert a.loc[a["chosen"], "candidate"].item() == chosen_a["candidate"]
    assert chosen_a["metric"] == "val_loss" and a.loc[a["chosen"], "val_loss"].item() == a["val_loss"].min()
    # paired differences from the chosen candidate: their mean is the difference of the means
    chosen_loss = a.loc[a["chosen"], "val_loss"].item()
    np.testing.assert_allclose(a["val_loss_vs_chosen"], a["val_loss"] - chosen_loss, atol=1e-9)
    assert a.loc[a["chosen"], "val_loss_vs_chosen_se"].item() == 0
    assert (a.loc[~a["chosen"], "val_loss_vs_chosen_se"] > 0).all()


def test_baselines_on_member_sets_match_an_independent_fit() -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss, roc_auc_score

    records, X, y = _table(n_patients=200, records_per=2, seed=1)
    pool = (records["split"] == "pool").to_numpy()
    rng = np.random.default_rng(0)
    member = (rng.random((4, len(y))) < 0.5) & pool
    table = baselines.fit_baselines(X, y, member, pool, member_sets=3)
    assert len(table) == 2 * (3 + 1) and set(table["member_set"]) == {"0", "1", "2", "pool"}
    row = table[(table["baseline"] == "logistic_regression") & (table["member_set"] == "1")].iloc[0]
    # independent: statsmodels-free plain sklearn fit on standardised features of member set 1
    m = member[1]
    mu, sd = X[m].mean(0), X[m].std(0)
    lr = LogisticRegression(C=1.0, max_iter=5000).fit((X[m] - mu) / sd, y[m])
    p = lr.predict_proba((X[~pool] - mu) / sd)[:, 1]
    assert row["test_auc"] == pytest.approx(roc_auc_score(y[~pool], p), abs=1e-6)
    assert row["test_loss"] == pytest.approx(log_loss(y[~pool], p), abs=1e-5)
    assert row["train_records"] == m.sum() and row["test_auc"] > 0.8
    summary = baselines.summarise(table)
    assert list(summary.columns[:3]) == ["baseline", "member_sets", "test_auc_mean"]
    assert (summary["member_sets"] == 3).all() and summary["test_auc_mean"].is_monotonic_decreasing
    lr_mean = table[(table["baseline"] == "logistic_regression") & (table["member_set"] != "pool")]["test_auc"].mean()
    assert summary.set_index("baseline").loc["logistic_regression", "test_auc_mean"] == pytest.approx(lr_mean)


def test_utility_summary_and_overfit_warning_name_the_numbers() -> None:
    rng = np.random.default_rng(0)
    n = 200
    overfit = pd.DataFrame(
        {
            "train_loss": rng.uniform(0.008, 0.01, n),
            "test_loss": rng.uniform(2.9, 3.3, n),
            "train_acc": np.ones(n),
            "test_acc": rng.uniform(0.6, 0.7, n),
            "train_auc": np.ones(n),
            "test_auc": rng.uniform(0.65, 0.76, n),
        }
    )
    base = pd.DataFrame({"baseline": ["hist_gradient_boosting"], "test_auc_mean": [0.782]})
    s = model_utility.summarise(overfit, base)
    assert s["models"] == n and s["test_auc"] == pytest.approx(overfit["test_auc"].mean())
    assert s["test_auc_sd"] == pytest.approx(overfit["test_auc"].std(ddof=1))
    assert s["test_auc_p2.5"] == pytest.approx(np.percentile(overfit["test_auc"], 2.5))
    assert s["auc_gap"] == pytest.approx(s["test_auc"] - 0.782)
    warnings = model_utility.overfit_warnings(s)
    assert len(warnings) == 2
    assert "train accuracy 1.000" in warnings[0] and f"{s['test_loss']:.3g}" in warnings[0]
    assert "0.782" in warnings[1] and "hist_gradient_boosting" in warnings[1]
    good = overfit.assign(train_loss=0.35, test_loss=0.6, train_acc=0.85, test_auc=0.79)
    assert model_utility.overfit_warnings(model_utility.summarise(good, base)) == []
    assert "test AUC 0.79" in model_utility.legend(model_utility.summarise(good, base))


def test_plan_of_selection_and_baselines() -> None:
    cfg = validated(default_config())
    assert plan.selection_choice(cfg, "pbc", "mlp") == ["results/pbc/mlp/selection/chosen.json"]
    assert plan.selection_choice(cfg, "pbc", "mlp_wide") == []
    targets = plan.all_targets(cfg)
    assert "results/pbc/mlp/selection/selection.tsv" in targets and "results/pbc/baselines.tsv" in targets
    assert "results/pbc/mlp_wide/models/utility.tsv" in targets
    assert not [t for t in targets if "mlp_wide/selection" in t]
    off = validated(deep_update(default_config(), {"datasets": {"pbc": {"baselines": {"member_sets": 0}}}}))
    assert plan.baselines_table(off, "pbc") == []
    bad = validated(
        deep_update(
            default_config(), {"experiments": {"mlp": {"selection": {"candidates": {"x": {"train": {"epoch": 3}}}}}}}
        )
    )
    with pytest.raises(errors.ConfigError, match=r"selection.candidates.x.train has unknown key\(s\) \['epoch'\]"):
        checks.check_config(bad)
    # a DP experiment's candidates train with DP-SGD and may set dp.max_grad_norm, nothing else of dp
    dp = validated(deep_update(default_config(), {"experiments": {"mlp": {"dp": {"epsilon": 8}}}}))
    checks.check_config(dp)
    bad = deep_update(
        default_config(),
        {"experiments": {"mlp": {"dp": {"epsilon": 8}, "selection": {"candidates": {"x": {"dp": {"epsilon": 9}}}}}}},
    )
    with pytest.raises(errors.ConfigError, match=r"candidates.x.dp has unknown key\(s\) \['epsilon'\]"):
        checks.check_config(validated(bad))
    bad = deep_update(default_config(), {"experiments": {"mlp": {"selection": {"candidates": {"x": {"dp": {}}}}}}})
    bad["experiments"]["mlp"]["selection"]["candidates"]["x"]["dp"] = {"max_grad_norm": 2.0}
    with pytest.raises(errors.ConfigError, match=r"candidates.x.dp: the experiment has no dp block"):
        checks.check_config(validated(bad))


def test_tied_candidates_are_within_tie_se_of_the_chosen_one() -> None:
    """The rule written out: paired difference (worse positive) at most tie_se × its SE; the
    chosen row always, a NaN difference never."""
    t = pd.DataFrame(
        {
            "candidate": ["a", "b", "c", "d"],
            "chosen": [False, True, False, False],
            "val_loss_vs_chosen": [0.010, 0.0, 0.030, np.nan],
            "val_loss_vs_chosen_se": [0.006, 0.0, 0.010, 0.01],
        }
    )
    assert selection.tied(t, "loss", 2.0).tolist() == [True, True, False, False]
    assert selection.tied(t, "loss", 3.0).tolist() == [True, True, True, False]
    assert selection.tied(t, "loss", 0.0).tolist() == [False, True, False, False]


def test_weighted_auc_is_sklearns_auc_of_the_resampled_records() -> None:
    """A patient-bootstrap replicate's weighted AUC equals scikit-learn's AUC of the data set
    with each record repeated as often as its patient was drawn (ties included)."""
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(3)
    pid = np.repeat(np.arange(30), rng.integers(1, 5, 30))
    y = (rng.random(30) < 0.4)[pid]
    scores = np.round(rng.normal(size=(3, pid.size)) + y, 1)  # rounded: ties
    w = model_utility.patient_bootstrap_weights(pid, 5, np.random.default_rng(1))
    got = model_utility.weighted_auc(scores, y, w)
    for b in range(5):
        rep = np.repeat(np.arange(pid.size), w[b].astype(int))
        want = [roc_auc_score(y[rep], s[rep]) for s in scores]
        np.testing.assert_allclose(got[b], want, rtol=1e-12)
        assert set(np.unique(w[b][pid == pid[0]])) <= {w[b][0]}  # a patient's records move together


def test_clustered_utility_intervals_cover_in_a_small_simulation() -> None:
    """Reduced-size run of benchmarks/bench_utility_interval.py (60 test sets of 62 patients,
    200 replicates; the benchmark: 500 sets, 1,000 replicates): the patient-clustered intervals
    of the mean test AUC and of the gap to the baseline cover their population values, and the
    spread of single models is no confidence interval (it covers less)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_utility_interval.py"
    spec = importlib.util.spec_from_file_location("bench_utility_interval", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    df, _, _ = bench.run(sets=60, n_patients=62, n_models=10, n_baselines=3, positive=0.4, boot=200, seed=1)
    assert df["auc_covers"].mean() >= 0.85 and df["gap_covers"].mean() >= 0.85  # 0.95 − 3.5 SE
    assert df["spread_width"].mean() < df["auc_width"].mean()
