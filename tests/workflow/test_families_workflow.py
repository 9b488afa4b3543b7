"""End to end: every kind of model family as target models, on the bundled cohort (scikit-learn's
gradient boosting and logistic regression, LightGBM chosen against an MLP by selection, XGBoost,
a user's estimator and a user's network from files outside the package) and on the synthetic
imaging cohort (the user's network), with a partial-access level read from stored estimators;
and a tree experiment's cube and audit bit-identical across two runs with the same seeds."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from workflow_config import small_config
from workflow_runs import ROOT, run_snakemake

from mia_audit.train import weights

pytestmark = pytest.mark.slow

N_MODELS = 4
TABLE_EXPERIMENTS = {
    "hgb": {"arch": "hist_gradient_boosting", "params": {"max_depth": 3, "max_iter": 30}},
    "logreg": {"arch": "logistic_regression", "params": {"C": 0.5}},
    "lgbm": {"arch": "lightgbm", "params": {"max_depth": 2, "num_leaves": 4, "n_estimators": 50}},
    "xgb": {"arch": "xgboost", "params": {"max_depth": 2, "n_estimators": 50}},
    "gam": {"arch": "sklearn", "factory": "models/my_estimator.py:make_estimator", "kwargs": {"knots": 4}},
    "net": {"arch": "torch", "factory": "models/my_network.py:make_network", "kwargs": {"width": 8}},
}


def _config(results: Path, experiments: dict, images: bool) -> dict:
    cfg = small_config(results, n_models=N_MODELS, per_job=N_MODELS)
    cfg["datasets"]["pbc"]["access_levels"] = {"labs": {"known": ["bili", "albumin", "age"], "fill": "pool_mean"}}
    base = {"dataset": "pbc", "models_per_job": N_MODELS, "seed": 0}
    cfg["experiments"] = {name: {**base, "model": model} for name, model in experiments.items()}
    if "net" in cfg["experiments"]:
        cfg["experiments"]["net"]["train"] = {"epochs": 3, "batch_size": 64, "lr": 0.003}
    if "lgbm" in cfg["experiments"]:  # chosen across families: two LightGBM candidates and an MLP
        cfg["experiments"]["lgbm"]["selection"] = {
            "candidates": {
                "d2": {},
                "d3": {"model": {"params": {"max_depth": 3, "num_leaves": 8, "n_estimators": 50}}},
                "mlp": {"model": {"arch": "mlp", "width": 8}, "train": {"epochs": 2}},
            },
            "splits": 1,
            "models": 2,
        }
    if images:
        cfg["datasets"]["synthetic_images"] = {
            "adapter": "synthetic_images",
            "image_size": 32,
            "channels": 1,
            "workers": 0,
            "options": {"n_patients": 32, "images_per_patient": [1, 3], "minority_share": 0.1, "seed": 0},
            "subgroups": {"group": {"column": "group"}},
            "n_models": N_MODELS,
        }
        cfg["experiments"]["img_net"] = {
            "dataset": "synthetic_images",
            "model": TABLE_EXPERIMENTS["net"],
            "train": {"epochs": 1, "batch_size": 16, "lr": 0.003},
            "models_per_job": N_MODELS,
        }
    return cfg


def _workdir(path: Path) -> Path:
    """A working directory with the user's model files in models/, outside the package."""
    (path / "models").mkdir(parents=True)
    for name in ("my_estimator.py", "my_network.py"):
        shutil.copy(ROOT / "docs" / "examples" / name, path / "models" / name)
    return path


def _targets(results: Path, dataset: str, experiment: str, access: bool = False) -> list[str]:
    base = results / dataset / experiment
    out = [base / "audit" / "record_risk.parquet", base / "audit" / "patient_risk.parquet"]
    if access:
        out += [base / "audit" / "access_labs" / "patient_risk.parquet"]
    return [str(p) for p in out]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    wd = _workdir(tmp_path_factory.mktemp("families"))
    res = wd / "results"
    cfg = _config(res, TABLE_EXPERIMENTS, images=True)
    targets = [t for e in TABLE_EXPERIMENTS for t in _targets(res, "pbc", e, access=e == "gam")]
    targets += _targets(res, "synthetic_images", "img_net")
    targets += [str(res / "pbc" / "lgbm" / "selection" / "selection.tsv")]
    proc = run_snakemake(wd, cfg, *targets, timeout=2400)
    return wd, res, proc


def test_every_family_audits_end_to_end(run):
    wd, res, _ = run
    records = pd.read_parquet(res / "pbc" / "records.parquet")
    pool = (records["split"] == "pool").to_numpy()
    for exp, model in TABLE_EXPERIMENTS.items():
        base = res / "pbc" / exp
        cube = xr.open_zarr(base / "cube.zarr")
        conf = cube["confidence"].values
        assert conf.shape == (N_MODELS, len(records)) and np.isfinite(conf).all(), exp
        rr = pd.read_parquet(base / "audit" / "record_risk.parquet")
        pr = pd.read_parquet(base / "audit" / "patient_risk.parquet")
        assert len(rr) == pool.sum() and rr["auc"].between(0, 1).all(), exp
        assert len(pr) == records.loc[pool, "patient_id"].nunique() and pr["auc"].between(0, 1).all(), exp
        metrics = pd.read_csv(base / "models" / "shard_0_metrics.tsv", sep="\t")
        assert metrics["test_auc"].between(0.5, 1).all(), (exp, metrics["test_auc"].tolist())
        meta = weights.read_meta(base / "models" / "shard_0.safetensors")
        log = (res / "logs" / "pbc" / exp / "train_models_0.log").read_text()
        if model["arch"] == "torch":
            assert meta["vectorised"] is True and "kind" not in meta
            continue
        assert meta["kind"] == "estimator" and meta["model"]["arch"] == (
            "lightgbm" if exp == "lgbm" else model["arch"]
        ), exp
        assert "in 2 thread(s), one model per thread" in log, exp
        # the query job turned the train job's logits into the cube's φ
        _, logits, _ = weights.load_estimator_shard(base / "models" / "shard_0.safetensors", read_models=False)
        z = logits - logits.max(-1, keepdims=True)
        y = records["label"].to_numpy()
        p_y = np.exp(z[:, np.arange(len(y)), y]) / np.exp(z).sum(-1)
        np.testing.assert_allclose(conf, np.log(p_y) - np.log1p(-p_y), rtol=1e-4, atol=1e-4)
        done = json.loads((base / "query" / "shard_0.json").read_text())
        assert done["nonfinite_by_access"] == {"full": 0, "labs": 0}, exp
    # a partial-access level queries the stored estimators (read back) on the altered inputs
    for exp in ("gam", "lgbm"):
        if exp != "gam":  # its access cube is written by the query job; only gam's is audited here
            labs = xr.open_zarr(res / "pbc" / exp / "access" / "labs" / "cube.zarr")["confidence"].values
            assert np.isfinite(labs).all()
            continue
        full = xr.open_zarr(res / "pbc" / exp / "cube.zarr")["confidence"].values
        labs = xr.open_zarr(res / "pbc" / exp / "access" / "labs" / "cube.zarr")["confidence"].values
        assert np.isfinite(labs).all() and not np.allclose(full, labs)
        assert len(pd.read_parquet(res / "pbc" / exp / "audit" / "access_labs" / "patient_risk.parquet")) > 0


def test_selection_across_families_names_each_family(run):
    _, res, _ = run
    sel = pd.read_csv(res / "pbc" / "lgbm" / "selection" / "selection.tsv", sep="\t")
    assert list(sel["candidate"]) == ["d2", "d3", "mlp"] and list(sel["arch"]) == ["lightgbm", "lightgbm", "mlp"]
    assert sel["chosen"].sum() == 1 and sel[["val_loss", "val_auc"]].notna().all().all()
    chosen = json.loads((res / "pbc" / "lgbm" / "selection" / "chosen.json").read_text())
    meta = weights.read_meta(res / "pbc" / "lgbm" / "models" / "shard_0.safetensors")
    assert meta["selected_candidate"] == chosen["candidate"] and meta["model"]["arch"] == chosen["model"]["arch"]


def test_a_users_network_audits_the_imaging_cohort(run):
    _, res, _ = run
    base = res / "synthetic_images" / "img_net"
    cube = xr.open_zarr(base / "cube.zarr")
    assert np.isfinite(cube["confidence"].values).all()
    assert len(pd.read_parquet(base / "audit" / "patient_risk.parquet")) > 0
    meta = weights.read_meta(base / "models" / "shard_0.safetensors")
    assert meta["modality"] == "image" and meta["vectorised"] is True and meta["model"]["arch"] == "torch"


def test_a_tree_experiment_is_bit_identical_across_two_runs(run, tmp_path):
    """The same seeds give the same cube and the same audit, bit for bit (models fitted in
    parallel threads, stored with skops, read back for the access level)."""
    _, res, _ = run
    wd = _workdir(tmp_path / "again")
    res2 = wd / "results"
    cfg = _config(res2, {"hgb": TABLE_EXPERIMENTS["hgb"]}, images=False)
    run_snakemake(wd, cfg, *_targets(res2, "pbc", "hgb"), timeout=1200)
    for cube in ("cube.zarr", "access/labs/cube.zarr"):
        a = xr.open_zarr(res / "pbc" / "hgb" / cube)["confidence"].values
        b = xr.open_zarr(res2 / "pbc" / "hgb" / cube)["confidence"].values
        np.testing.assert_array_equal(a, b)
    for table in ("record_risk.parquet", "patient_risk.parquet"):
        pd.testing.assert_frame_equal(
            pd.read_parquet(res / "pbc" / "hgb" / "audit" / table),
            pd.read_parquet(res2 / "pbc" / "hgb" / "audit" / table),
            check_exact=True,
        )
    pd.testing.assert_frame_equal(
        pd.read_csv(res / "pbc" / "hgb" / "models" / "shard_0_metrics.tsv", sep="\t"),
        pd.read_csv(res2 / "pbc" / "hgb" / "models" / "shard_0_metrics.tsv", sep="\t"),
        check_exact=True,
    )
