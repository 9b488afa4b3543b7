"""Model families beyond the project's networks (mia_audit.train.families, .estimators, .factories):
each estimator family's φ against an independent computation from the fitted model, storage
without pickle, a user's estimator and network from a file, the refusals before any training,
and selection across families."""

from __future__ import annotations

import math
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from workflow_config import deep_update, small_config, validated

from mia_audit.errors import ConfigError, DataError
from mia_audit.pipeline import checks, resources
from mia_audit.query.shard import confidence
from mia_audit.train import estimators, factories, selection, weights
from mia_audit.train.ensemble import (
    TrainConfig,
    predict_each,
    predict_ensemble,
    train_each,
    train_ensemble,
    vmap_failure,
)
from mia_audit.train.families import FAMILIES, build_model, estimator_adapter
from mia_audit.train.shard import check_network

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "docs" / "examples"

#: every built-in estimator family with small settings (few trees: probabilities stay inside (0, 1))
SPECS = {
    "logistic_regression": {"params": {"C": 0.5}},
    "hist_gradient_boosting": {"params": {"max_depth": 3, "max_iter": 30}},
    "random_forest": {"params": {"n_estimators": 25}},
    "xgboost": {"params": {"n_estimators": 30, "max_depth": 3}},
    "lightgbm": {"params": {"n_estimators": 30, "num_leaves": 8}},
}


def _data(n=400, classes=2, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 6)).astype(np.float32)
    score = X[:, 0] + 0.7 * X[:, 1] + 0.8 * rng.normal(size=n)
    y = np.digitize(score, np.quantile(score, np.linspace(0, 1, classes + 1)[1:-1])).astype(np.int64)
    rows = [rng.choice(n, n // 2, replace=False) for _ in range(3)]
    return X, y, rows


def _phi(logits: np.ndarray, y: np.ndarray) -> np.ndarray:
    """φ as the query stage computes it (every family)."""
    t = torch.as_tensor(logits)
    return confidence(t, torch.as_tensor(y), "multiclass").numpy()


@pytest.mark.parametrize("arch", list(SPECS))
@pytest.mark.parametrize("classes", [2, 3])
def test_phi_of_each_estimator_family_matches_its_fitted_model(arch, classes) -> None:
    """φ from the stored logits equals, for the same model fitted independently, log p_y − log(1 − p_y)
    from predict_proba (boosted models, logistic regression), or the empirical logit of the votes
    counted tree by tree (random forest); for 3 classes the logsumexp over the other classes is
    summed by hand. The stored model read back gives the same logits."""
    X, y, rows = _data(classes=classes)
    spec = {"arch": arch, **SPECS[arch]}
    seeds = [11, 12, 13]
    fitted = estimators.fit_models(spec, X, y, rows, seeds, classes, threads=2)
    adapter = estimator_adapter(spec)
    for f, r, seed in zip(fitted, rows, seeds, strict=True):
        phi = _phi(f.logits[None], y)[0]
        assert np.isfinite(phi).all()
        est = adapter.new(spec, seed).fit(X[r], y[r])  # the same model, fitted again (deterministic)
        if arch == "random_forest":
            T = len(est.estimators_)
            votes = np.stack([t.predict(X).astype(int) for t in est.estimators_])  # (trees, records)
            k = (votes == y[None]).sum(0)
            if classes == 2:  # leaves are pure: predict_proba is the vote share
                np.testing.assert_allclose(phi, np.log((k + 0.5) / (T - k + 0.5)), rtol=1e-12, atol=1e-12)
            counts = np.stack([(votes == c).sum(0) for c in range(classes)], axis=1) + 0.5
            other = np.array([math.log(sum(counts[i, c] for c in range(classes) if c != y[i])) for i in range(len(y))])
            np.testing.assert_allclose(phi, np.log(counts[np.arange(len(y)), y]) - other, rtol=1e-12, atol=1e-12)
        else:
            p = est.predict_proba(X).astype(np.float64)
            assert p.min() > 1e-9 and p.max() < 1 - 1e-9
            p_y = p[np.arange(len(y)), y]
            np.testing.assert_allclose(phi, np.log(p_y) - np.log1p(-p_y), rtol=1e-5, atol=1e-5)
            if classes > 2:  # brute force: log p_y − log Σ_{c≠y} p_c from the raw scores, one record at a time
                z = f.logits
                brute = [z[i, y[i]] - math.log(sum(math.exp(z[i, c]) for c in range(classes) if c != y[i]))
                         for i in range(len(y))]  # fmt: skip
                np.testing.assert_allclose(phi, brute, rtol=1e-10, atol=1e-10)
        again = adapter.logits(adapter.load(f.data, spec), X, classes)
        np.testing.assert_array_equal(again, f.logits)
        # the metrics' probabilities: softmax(logits) is predict_proba (the forest's: the corrected votes)
        soft = np.exp(f.metric_logits - f.metric_logits.max(1, keepdims=True))
        soft /= soft.sum(1, keepdims=True)
        if arch != "random_forest":
            np.testing.assert_allclose(soft, est.predict_proba(X), atol=1e-5)


def test_a_boosted_models_margin_does_not_saturate_where_its_probability_does() -> None:
    """A long-boosted model of separable classes, whose predict_proba is exactly 1 for some records
    (float32), still gives a finite φ: its raw margin, ordered as the probabilities are."""
    X, _, rows = _data(n=300)
    y = (X[:, 0] > 0).astype(np.int64)
    spec = {
        "arch": "xgboost",
        "params": {"n_estimators": 300, "learning_rate": 1.0, "reg_lambda": 0.0, "min_child_weight": 0},
    }
    f = estimators.fit_models(spec, X, y, rows[:1], [1], 2, threads=1)[0]
    phi = _phi(f.logits[None], y)[0]
    p = estimator_adapter(spec).new(spec, 1).fit(X[rows[0]], y[rows[0]]).predict_proba(X)
    saturated = p[np.arange(len(y)), y] == 1
    assert saturated.any() and np.isfinite(phi).all() and phi[saturated].min() > 17


def test_user_estimator_from_a_file_is_fitted_stored_and_read_back(tmp_path, monkeypatch) -> None:
    """docs/examples/my_estimator.py: a spline + logistic regression pipeline. φ is its
    decision_function's log-odds; its skops file holds a SciPy type, which a factory trusts, while a
    type of an unknown module is refused."""
    shutil.copy(EXAMPLES / "my_estimator.py", tmp_path / "my_estimator.py")
    monkeypatch.chdir(tmp_path)
    X, y, rows = _data()
    spec = {"arch": "sklearn", "factory": "my_estimator.py:make_estimator", "kwargs": {"knots": 4, "C": 2.0}}
    adapter = estimator_adapter(spec)
    adapter.check(spec, "experiments.gam.model")
    fitted = estimators.fit_models(spec, X, y, rows, [1, 2, 3], 2, threads=2)
    est = adapter.new(spec, 1).fit(X[rows[0]], y[rows[0]])
    p = est.predict_proba(X)[:, 1]
    np.testing.assert_allclose(_phi(fitted[0].logits[None], y)[0], np.where(y == 1, 1, -1) * np.log(p / (1 - p)),
                               rtol=1e-6, atol=1e-6)  # fmt: skip
    import skops.io as sio

    assert "scipy.interpolate._bsplines.BSpline" in sio.get_untrusted_types(data=fitted[0].data)
    np.testing.assert_array_equal(adapter.logits(adapter.load(fitted[0].data, spec), X, 2), fitted[0].logits)
    (tmp_path / "evil.py").write_text(
        "from sklearn.linear_model import LogisticRegression\n"
        "class Sneaky(LogisticRegression):\n    pass\n"
        "def make():\n    return Sneaky()\n"
    )
    evil = {"arch": "sklearn", "factory": "evil.py:make", "kwargs": {}}
    data = estimators.fit_models(evil, X, y, rows[:1], [1], 2, threads=1)[0].data
    with pytest.raises(DataError, match="does not trust"):  # another factory's module is not trusted
        adapter.load(data, spec)
    with pytest.raises(DataError, match="does not trust.*TreePredictor"):  # nor another family's types
        hgb = estimators.fit_models({"arch": "hist_gradient_boosting", "params": {"max_iter": 3}}, X, y, rows[:1], [1],
                                    2, threads=1)[0]  # fmt: skip
        estimator_adapter({"arch": "logistic_regression"}).load(hgb.data, {"arch": "logistic_regression"})


def test_estimator_shard_file_round_trip(tmp_path) -> None:
    X, y, rows = _data()
    spec = {"arch": "lightgbm", **SPECS["lightgbm"]}
    fitted = estimators.fit_models(spec, X, y, rows, [1, 2, 3], 2, threads=2)
    logits = np.stack([f.logits for f in fitted])
    meta = {"models": [0, 1, 2], "kind": "estimator", "model": spec}
    weights.save_estimator_shard(tmp_path / "s.safetensors", [f.data for f in fitted], logits, meta)
    blobs, stored, meta2 = weights.load_estimator_shard(tmp_path / "s.safetensors")
    assert meta2 == meta == weights.read_meta(tmp_path / "s.safetensors")
    assert blobs == [f.data for f in fitted] and stored.dtype == np.float64
    np.testing.assert_array_equal(stored, logits)
    (tmp_path / "bad.safetensors").write_bytes((tmp_path / "s.safetensors").read_bytes()[:500])
    with pytest.raises(DataError, match="bad.safetensors cannot be read"):
        weights.load_estimator_shard(tmp_path / "bad.safetensors")


def test_estimators_fitted_in_parallel_equal_a_plain_loop() -> None:
    """Threads change nothing: the same logits, the same stored model (skops names the arrays in its
    zip file after object ids, so its bytes differ from run to run while the model does not)."""
    X, y, rows = _data()
    for arch in ("xgboost", "lightgbm", "hist_gradient_boosting"):
        spec = {"arch": arch, **SPECS[arch]}
        par = estimators.fit_models(spec, X, y, rows, [5, 6, 7], 2, threads=3)
        loop = estimators.fit_models(spec, X, y, rows, [5, 6, 7], 2, threads=1)
        adapter = estimator_adapter(spec)
        for a, b in zip(par, loop, strict=True):
            np.testing.assert_array_equal(a.logits, b.logits)
            assert a.data == b.data or adapter.storage == "skops"
            np.testing.assert_array_equal(adapter.logits(adapter.load(a.data, spec), X, 2), b.logits)


def test_a_model_without_a_class_is_refused_before_fitting() -> None:
    y = np.array([0, 0, 1, 1, 2, 2])
    with pytest.raises(DataError, match=r"target model 4's training records hold no record of class\(es\) \['c'\]"):
        estimators.check_classes(y, [np.array([0, 2, 4]), np.array([0, 1, 2])], 3, [3, 4], ["a", "b", "c"])


# --------------------------------------------------------------------------- a user's network


def test_user_network_from_a_file_builds_for_tables_and_images(tmp_path, monkeypatch) -> None:
    shutil.copy(EXAMPLES / "my_network.py", tmp_path / "my_network.py")
    monkeypatch.chdir(tmp_path)
    spec = {"arch": "torch", "factory": "my_network.py:make_network", "kwargs": {"width": 8}}
    for shape in ((7,), (1, 16, 16), (12, 100)):
        net = build_model(spec, shape, 3)
        assert net(torch.zeros(2, *shape)).shape == (2, 3)
    check_network(lambda: build_model(spec, (7,), 3), torch.zeros(4, 7), 3, "experiments.net.model.factory")


class _ItemNet(torch.nn.Module):
    """A network with data-dependent Python control flow (``.item()``), which vmap cannot run."""

    def __init__(self, d, k):
        super().__init__()
        self.lin = torch.nn.Linear(d, k)

    def forward(self, x):
        if x.abs().max().item() > 1e6:
            x = x / 1e6
        return self.lin(x)


def test_a_network_vmap_cannot_run_is_trained_one_model_after_another() -> None:
    """vmap_failure names the error for such a network and None for the MLP; train_each and
    predict_each give the ensemble's results for a network both can run (same seeds, no dropout)."""
    g = torch.Generator().manual_seed(0)
    X = torch.randn(60, 4, generator=g)
    y = (X[:, 0] > 0).long()
    rows = [np.arange(0, 40), np.arange(20, 60)]
    cfg = TrainConfig(epochs=2, batch_size=8, lr=0.01, weight_decay=0.0)
    assert vmap_failure(lambda: _ItemNet(4, 2), X, y, rows[0], cfg, torch.device("cpu"))
    assert vmap_failure(lambda: build_model({"arch": "mlp", "width": 8}, (4,), 2), X, y, rows[0], cfg,
                        torch.device("cpu")) is None  # fmt: skip

    def mlp():
        return build_model({"arch": "mlp", "width": 8, "depth": 1}, (4,), 2)

    base, p1, b1, h1 = train_ensemble(mlp, X, y, rows, cfg, [3, 4], 5, torch.device("cpu"))
    _, p2, b2, h2 = train_each(mlp, X, y, rows, cfg, [3, 4], 5, torch.device("cpu"))
    for k in p1:
        torch.testing.assert_close(p1[k], p2[k], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(h1, h2, rtol=1e-4)
    torch.testing.assert_close(predict_ensemble(base, p1, b1, X), predict_each(mlp, p1, b1, X), rtol=1e-5, atol=1e-6)
    _, p3, b3, h3 = train_each(lambda: _ItemNet(4, 2), X, y, rows, cfg, [3, 4], 5, torch.device("cpu"))
    assert h3.shape == (2, 2) and predict_each(lambda: _ItemNet(4, 2), p3, b3, X).shape == (2, 60, 2)


def test_a_network_with_the_wrong_output_is_refused_before_training(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "nets.py").write_text(
        "import torch\n"
        "def not_a_module(input_shape, num_outputs):\n    return 'a string'\n"
        "def one_output(input_shape, num_outputs):\n    return torch.nn.Linear(input_shape[0], 1)\n"
    )
    with pytest.raises(ConfigError, match=r"^config key model.factory: nets.py:not_a_module returned a builtins.str"):
        build_model({"arch": "torch", "factory": "nets.py:not_a_module", "kwargs": {}}, (5,), 2)
    spec = {"arch": "torch", "factory": "nets.py:one_output", "kwargs": {}}
    with pytest.raises(ConfigError, match=r"experiments.x.model.factory: .*shape \(batch, 2\).*returned \(2, 1\)"):
        check_network(lambda: build_model(spec, (5,), 2), torch.zeros(3, 5), 2, "experiments.x.model.factory")


# --------------------------------------------------------------------------- refusals before any job


def _cfg(tmp_path, model: dict, **exp) -> dict:
    cfg = small_config(tmp_path / "results")
    cfg["experiments"] = {"x": {"dataset": "pbc", "model": model, "models_per_job": 4, **exp}}
    return validated(cfg)


def _refusal(cfg) -> str:
    with pytest.raises(ConfigError) as err:
        checks.check_config(cfg)
    message = str(err.value)
    assert "\n" not in message
    return message


def test_bad_params_factories_and_dp_with_trees_are_one_line_before_any_job(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine.py").write_text(
        "import torch\n"
        "from sklearn.linear_model import LogisticRegression, Ridge\n"
        "def est(C=1.0):\n    return LogisticRegression(C=C)\n"
        "def regressor():\n    return Ridge()\n"
        "def net(input_shape, num_outputs, width=8):\n    return torch.nn.Linear(input_shape[0], num_outputs)\n"
        "def no_shape(width):\n    return None\n"
    )
    checks.check_config(_cfg(tmp_path, {"arch": "lightgbm", "params": {"num_leaves": 8, "learning_rate": 0.05}}))
    checks.check_config(_cfg(tmp_path, {"arch": "sklearn", "factory": "mine.py:est", "kwargs": {"C": 0.5}}))
    checks.check_config(_cfg(tmp_path, {"arch": "torch", "factory": "mine.py:net", "kwargs": {"width": 4}}))
    key = r"config key experiments\.x\.model"
    refusals = [  # (model block, the message: one line naming the key)
        ({"arch": "lightgbm", "params": {"max_dept": 3}}, rf"^{key}\.params has unknown parameter\(s\) \['max_dept'\]"),
        ({"arch": "hist_gradient_boosting", "params": {"learning_rate": -1}}, rf"^{key}\.params: .*'learning_rate'"),
        ({"arch": "xgboost", "params": {"random_state": 3}}, rf"^{key}\.params sets \['random_state'\]"),
        ({"arch": "random_forest", "depth": 3}, rf"^{key} has key\(s\) \['depth'\] .*go under params"),
        ({"arch": "sklearn", "factory": "nowhere_module:make"}, rf"^{key}\.factory: module 'nowhere_module' cannot"),
        ({"arch": "sklearn", "factory": "models/missing.py:make"}, rf"^{key}\.factory: the file models/missing.py"),
        ({"arch": "sklearn", "factory": "mine.py:absent"}, rf"^{key}\.factory: mine.py has no function 'absent'"),
        ({"arch": "sklearn", "factory": "mine.py:est", "kwargs": {"alpha": 1}}, r"does not accept \['alpha'\]"),
        ({"arch": "sklearn", "factory": "mine.py:regressor"}, r"returned a .*Ridge without \['predict_proba'\]"),
        ({"arch": "torch", "factory": "mine.py:no_shape"}, r"does not accept \['input_shape', 'num_outputs'\]"),
    ]
    for model, pattern in refusals:
        message = _refusal(_cfg(tmp_path, model))
        assert re.search(pattern, message), (model, message)
    dp = _refusal(_cfg(tmp_path, {"arch": "xgboost"}, dp={"epsilon": 1.0}))
    assert dp.startswith("config key experiments.x.dp: DP-SGD trains networks only; model.arch 'xgboost'"), dp
    cand = deep_update(
        _cfg(tmp_path, {"arch": "mlp", "width": 8}),
        {
            "experiments": {
                "x": {"selection": {"candidates": {"gbm": {"model": {"arch": "lightgbm", "params": {"depth": 2}}}}}}
            }
        },
    )
    assert "experiments.x.selection.candidates.gbm.model.params has unknown parameter(s) ['depth']" in _refusal(cand)
    with pytest.raises(Exception, match="factory"):  # the schema: a factory family needs its factory
        _cfg(tmp_path, {"arch": "torch"})


def test_every_family_has_a_cost_and_estimators_fit_on_the_jobs_cpus(tmp_path) -> None:
    cfg = _cfg(tmp_path, {"arch": "lightgbm"})
    cfg["cluster"]["cpus_per_job"] = 4
    assert resources.shard_cpus(cfg, "x") == 4 and resources.query_cpus(cfg, "x") == 1
    assert resources.train_seconds(cfg, "x", 1000) == pytest.approx(4 * 0.2 / 4)  # no epochs, ÷ CPUs
    mlp = _cfg(tmp_path, {"arch": "mlp"})
    assert resources.shard_cpus(mlp, "x") == resources.query_cpus(mlp, "x") == 1
    mixed = deep_update(
        mlp, {"experiments": {"x": {"selection": {"candidates": {"gbm": {"model": {"arch": "xgboost"}}}}}}}
    )
    assert resources.select_cpus(mixed, "x") == mixed["cluster"]["cpus_per_job"]
    assert {f.kind for f in FAMILIES.values()} == {"network", "estimator"}


# --------------------------------------------------------------------------- selection across families


def test_selection_compares_networks_and_estimators_on_the_same_splits() -> None:
    rng = np.random.default_rng(0)
    n_patients, per = 120, 3
    pid = np.repeat(np.arange(n_patients), per).astype(str)
    X = rng.normal(size=(len(pid), 5)).astype(np.float32)
    y = (X[:, 0] * X[:, 1] + 0.3 * rng.normal(size=len(pid)) > 0).astype(np.int64)  # an interaction: trees win
    split = np.where(np.repeat(np.arange(n_patients), per) < 96, "pool", "test")
    records = pd.DataFrame({"patient_id": pid, "split": split})
    exp = {
        "model": {"arch": "mlp", "depth": 1, "width": 4},
        "train": {"epochs": 2, "batch_size": 32, "lr": 0.01, "weight_decay": 0.0},
        "selection": {
            "candidates": {
                "mlp": {},
                "gbm-d2": {"model": {"arch": "lightgbm", "params": {"max_depth": 2, "n_estimators": 60}}},
                "gbm-d3": {"model": {"arch": "lightgbm", "params": {"max_depth": 3, "n_estimators": 60}}},
            },
            "splits": 1, "models": 2, "validation_fraction": 0.25, "seed": 0, "metric": "loss",
        },
    }  # fmt: skip
    cands = selection.candidates(exp)
    assert cands["gbm-d2"]["model"] == {"arch": "lightgbm", "params": {"max_depth": 2, "n_estimators": 60}}
    table, chosen = selection.run_selection(records, X, y, "multiclass", 2, exp, "cpu", 2, log=lambda s: None)
    assert list(table["arch"]) == ["mlp", "lightgbm", "lightgbm"]
    assert table[["val_loss", "val_auc", "test_auc"]].notna().all().all()
    assert chosen["model"]["arch"] == "lightgbm" and chosen["candidate"].startswith("gbm")
    applied = selection.apply_choice(exp, chosen)
    assert applied["model"] == chosen["model"] and "width" not in applied["model"]


def test_factory_strings_and_module_names() -> None:
    assert factories.split("pkg.mod:make", "k") == ("pkg.mod", "make")
    assert factories.split(" dir/file.py:build_1 ", "k") == ("dir/file.py", "build_1")
    for bad in ("nofunction", "a:b:c", "file.py:", ":f", "m:1x"):
        with pytest.raises(ConfigError, match="expected 'module:function'"):
            factories.split(bad, "k")
    assert (
        factories.module_name("a/my-net.py")
        == factories.module_name("a/my-net.py")
        != factories.module_name("b/my-net.py")
    )
    assert factories.module_name("a/my-net.py").startswith("mia_audit_factory_my_net_")
