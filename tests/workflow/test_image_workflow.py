"""End to end on CPU: the image path (SYNTHETIC cohort, WRN, two query views) and the
signal path (PTB-XL layout, 1-D ResNet, multi-label, a partial-access level), in one
snakemake run; plus unit tests of the batch path (uint8 gather, augmentation,
normalisation) and of the multi-label loss, metrics and signal."""

import json
from functools import partial

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr
from fixtures_datasets import write_ptbxl
from workflow_runs import run_snakemake

from mia_audit.query import shard
from mia_audit.train import shard as train_shard
from mia_audit.train.ensemble import InputTransform, TrainConfig, channel_stats, loss_fn, model_seed, train_ensemble
from mia_audit.train.families import build_model

N_MODELS = 8


def _bigger_ptbxl(root):
    """The PTB-XL fixture with its diagnostic records repeated for 16 more patients (same
    WFDB files), so that every target model has training records and both classes occur."""
    write_ptbxl(root)
    db = pd.read_csv(root / "ptbxl_database.csv")
    reps = []
    for k in range(8):
        r = db.copy()
        r["ecg_id"] = r["ecg_id"] + 100 * (k + 1)
        r["patient_id"] = r["patient_id"] + 1000 * (k + 1)
        r["strat_fold"] = (k % 9) + 1  # all pool
        reps.append(r)
    pd.concat([db, *reps]).to_csv(root / "ptbxl_database.csv", index=False)


def _config(wd, ptbxl_root):
    return {
        "results": str(wd / "results"),
        "device": "cpu",
        "datasets": {
            "synthetic_images": {
                "adapter": "synthetic_images",
                "image_size": 32,
                "channels": 1,
                "workers": 0,
                "options": {"n_patients": 32, "images_per_patient": [1, 3], "minority_share": 0.1, "seed": 0},
                "subgroups": {"group": {"column": "group"}, "sex": {"column": "sex"}},
                "n_models": N_MODELS,
            },
            "ptbxl": {
                "adapter": "ptbxl",
                "root": str(ptbxl_root),
                "workers": 0,
                "subgroups": {"sex": {"column": "sex"}},
                "n_models": N_MODELS,
                "access_levels": {"lead_I": {"known": ["I"], "fill": "zero"}},
            },
        },
        "experiments": {
            "syn_wrn": {
                "dataset": "synthetic_images",
                "model": {"arch": "wrn", "depth": 10, "widen": 1},
                "train": {"epochs": 1, "batch_size": 16, "lr": 0.003},
                "query": {"views": ["original", "hflip"]},
                "models_per_job": N_MODELS,
            },
            "ecg": {
                "dataset": "ptbxl",
                "model": {"arch": "ecg-resnet1d", "base_width": 8, "blocks": [1, 1]},
                "train": {"epochs": 1, "batch_size": 8, "lr": 0.003},
                "models_per_job": N_MODELS,
            },
        },
        "audit": {"n_targets": 2},
    }


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    wd = tmp_path_factory.mktemp("imgwf")
    root = wd / "ptbxl"
    root.mkdir()
    _bigger_ptbxl(root)
    res = wd / "results"
    # this file checks train → query → audit (and the aggregate attacks, which read views);
    # the later stages (subgroups, figures, report) have their own tests
    targets = [
        f"{res}/{ds}/{exp}/{f}"
        for ds, exp in (("synthetic_images", "syn_wrn"), ("ptbxl", "ecg"))
        for f in (
            "audit/record_risk.parquet",
            "audit/patient_risk.parquet",
            "audit/aggregate_attacks.tsv",
            "models/metrics.tsv",
        )
    ]
    targets += [f"{res}/ptbxl/ecg/audit/access_lead_I/{f}" for f in ("record_risk.parquet", "patient_risk.parquet")]
    proc = run_snakemake(wd, _config(wd, root), *targets)
    return res, proc


@pytest.mark.slow
def test_image_experiment_cube_has_views_and_finite_confidences(run):
    res, _ = run
    rec = pd.read_parquet(res / "synthetic_images/records.parquet")
    inputs = xr.open_zarr(res / "synthetic_images/inputs.zarr")
    assert inputs["images"].dtype == np.uint8 and inputs["images"].shape == (len(rec), 1, 32, 32)
    assert inputs.attrs["modality"] == "image" and {"group", "sex"} <= set(rec.columns)
    cube = xr.open_zarr(res / "synthetic_images/syn_wrn/cube.zarr")
    conf = cube["confidence"]
    assert conf.dims == ("model", "record_id", "view") and conf.shape == (N_MODELS, len(rec), 2)
    assert list(cube["view"].values) == ["original", "hflip"]
    assert np.isfinite(conf.values).all()
    # the two views are different queries of the same models
    assert not np.allclose(conf.values[..., 0], conf.values[..., 1])
    pool = (rec["split"] == "pool").to_numpy()
    rr = pd.read_parquet(res / "synthetic_images/syn_wrn/audit/record_risk.parquet")
    assert len(rr) == pool.sum() and rr["auc"].between(0, 1).all() and (rr["status"] == "ok").all()
    pr = pd.read_parquet(res / "synthetic_images/syn_wrn/audit/patient_risk.parquet")
    assert len(pr) == rec.loc[pool, "patient_id"].nunique()
    met = pd.read_csv(res / "synthetic_images/syn_wrn/models/metrics.tsv", sep="\t")
    assert len(met) == N_MODELS and met["train_acc"].between(0, 1).all()
    assert np.isfinite(met["final_train_loss"]).all()
    attacks = pd.read_csv(res / "synthetic_images/syn_wrn/audit/aggregate_attacks.tsv", sep="\t")
    assert len(attacks) and attacks["auc"].dropna().between(0, 1).all()


@pytest.mark.slow
def test_ecg_experiment_multilabel_with_partial_access(run):
    res, _ = run
    rec = pd.read_parquet(res / "ptbxl/records.parquet")
    assert "label" not in rec and {"label_NORM", "label_MI", "label_HYP"} <= set(rec.columns)
    cube = xr.open_zarr(res / "ptbxl/ecg/cube.zarr")
    assert cube["confidence"].dims == ("model", "record_id") and cube["confidence"].shape == (N_MODELS, len(rec))
    full = cube["confidence"].values
    assert np.isfinite(full).all()
    acc = xr.open_zarr(res / "ptbxl/ecg/access/lead_I/cube.zarr")
    assert acc["confidence"].shape == full.shape and np.isfinite(acc["confidence"].values).all()
    assert (acc["member"].values == cube["member"].values).all()
    assert not np.allclose(acc["confidence"].values, full)  # eleven leads zeroed: other outputs
    pool = (rec["split"] == "pool").to_numpy()
    for sub in ("", "access_lead_I/"):
        rr = pd.read_parquet(res / f"ptbxl/ecg/audit/{sub}record_risk.parquet")
        assert len(rr) == pool.sum() and rr["auc"].between(0, 1).all()
        assert ((rr["n_in"] == N_MODELS // 2) & (rr["n_out"] == N_MODELS // 2)).all()
        pr = pd.read_parquet(res / f"ptbxl/ecg/audit/{sub}patient_risk.parquet")
        assert len(pr) == rec.loc[pool, "patient_id"].nunique()
    met = pd.read_csv(res / "ptbxl/ecg/models/metrics.tsv", sep="\t")
    assert len(met) == N_MODELS and met["train_acc"].between(0, 1).all()
    assert met["train_auc"].dropna().between(0, 1).all() and met["train_auc"].notna().any()
    done = json.loads((res / "ptbxl/ecg/query/shard_0.json").read_text())
    assert done["nonfinite"] == 0 and done["nonfinite_by_access"] == {"full": 0, "lead_I": 0}


# ---- the batch path ---------------------------------------------------------------------


def test_uint8_gather_augment_normalise_shapes_and_values():
    g = torch.Generator().manual_seed(0)
    X = torch.randint(0, 256, (20, 3, 16, 16), dtype=torch.uint8, generator=g)
    mean, std = channel_stats(X, np.arange(10), "image")
    ref = X[:10].double() / 255
    np.testing.assert_allclose(mean, ref.mean((0, 2, 3)).numpy(), rtol=1e-10)
    np.testing.assert_allclose(std, ref.std((0, 2, 3), unbiased=False).numpy(), rtol=1e-10)
    rows = torch.tensor([[0, 1, 2, 3], [4, 5, 6, 7]])  # (M=2, B=4)
    batch = X[rows]
    assert batch.shape == (2, 4, 3, 16, 16) and batch.dtype == torch.uint8
    tf = InputTransform("image", mean, std, augment=True, generator=torch.Generator().manual_seed(1))
    out = tf(batch)
    assert out.shape == (2, 4, 3, 16, 16) and out.dtype == torch.float32
    plain = InputTransform("image", mean, std, augment=False)(batch)
    expect = (batch.float() / 255 - torch.tensor(mean, dtype=torch.float32)[:, None, None]) / torch.tensor(
        std, dtype=torch.float32
    )[:, None, None]
    torch.testing.assert_close(plain, expect)
    assert not torch.equal(out, plain)  # crops and flips moved pixels
    # every augmented image is a crop of its reflect-padded source: values come from the image
    assert torch.isin(out[0, 0].flatten(), plain[0, 0].flatten()).all()
    # query-time call never augments
    torch.testing.assert_close(tf(batch, train=False), plain)


def test_signal_transform_normalises_per_lead_and_shifts():
    X = torch.randn(12, 3, 100) * torch.tensor([1.0, 2.0, 5.0])[:, None] + torch.tensor([0.0, 1.0, -3.0])[:, None]
    mean, std = channel_stats(X, np.arange(12), "signal")
    z = InputTransform("signal", mean, std)(X, train=False)
    torch.testing.assert_close(z.mean((0, 2)), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(z.std((0, 2), unbiased=False), torch.ones(3), atol=1e-5, rtol=0)
    aug = InputTransform("signal", mean, std, augment=True, generator=torch.Generator().manual_seed(0))(X[None])
    assert aug.shape == (1, 12, 3, 100) and not torch.allclose(aug[0], z)


def test_image_ensemble_trains_from_one_uint8_tensor():
    X = torch.randint(0, 256, (24, 1, 16, 16), dtype=torch.uint8)
    y = torch.randint(0, 2, (24,))
    mean, std = channel_stats(X, np.arange(24), "image")
    build = partial(build_model, {"arch": "wrn", "depth": 10, "widen": 1}, (1, 16, 16), 2)
    seeds = [model_seed(0, m) for m in range(2)]
    tf = InputTransform("image", mean, std, augment=True, generator=torch.Generator().manual_seed(0))
    rows = [np.arange(0, 12), np.arange(12, 24)]
    _, params, _, hist = train_ensemble(
        build, X, y, rows, TrainConfig(epochs=1, batch_size=6), seeds, 2, torch.device("cpu"), transform=tf
    )
    assert hist.shape == (1, 2) and np.isfinite(hist).all()
    assert X.dtype == torch.uint8  # the data set itself is never converted
    # deterministic: the same seeds and augmentation generator seed give the same models
    tf2 = InputTransform("image", mean, std, augment=True, generator=torch.Generator().manual_seed(0))
    _, again, _, _ = train_ensemble(
        build, X, y, rows, TrainConfig(epochs=1, batch_size=6), seeds, 2, torch.device("cpu"), transform=tf2
    )
    for k in params:
        torch.testing.assert_close(again[k], params[k], rtol=0, atol=0)
    w = next(iter(params.values()))
    assert w.shape[0] == 2 and not torch.equal(w[0], w[1])


def test_channels_last_batch_keeps_values_and_trains_under_vmap():
    """The CUDA layout path (channels-last per (model, batch) block), checked on the CPU."""
    X = torch.randint(0, 256, (16, 3, 16, 16), dtype=torch.uint8)
    mean, std = channel_stats(X, np.arange(16), "image")
    rows = torch.arange(16).reshape(2, 8)
    cl = InputTransform("image", mean, std, channels_last=True)(X[rows], train=False)
    plain = InputTransform("image", mean, std)(X[rows], train=False)
    torch.testing.assert_close(cl, plain)
    assert cl[0].is_contiguous(memory_format=torch.channels_last)
    build = partial(build_model, {"arch": "wrn", "depth": 10, "widen": 1}, (3, 16, 16), 2)
    seeds = [model_seed(1, m) for m in range(2)]
    y = torch.randint(0, 2, (16,))
    tf = InputTransform("image", mean, std, channels_last=True)
    _, _, _, hist = train_ensemble(
        build,
        X,
        y,
        [np.arange(8), np.arange(8, 16)],
        TrainConfig(epochs=1, batch_size=4),
        seeds,
        2,
        torch.device("cpu"),
        transform=tf,
    )
    assert np.isfinite(hist).all()


def test_build_model_dispatch_and_unknown_arch():
    assert build_model({"arch": "ecg-resnet1d", "base_width": 8, "blocks": [1]}, (12, 100), 5)(
        torch.zeros(2, 12, 100)
    ).shape == (2, 5)
    assert build_model({"arch": "wrn-28-2"}, (3, 32, 32), 4)(torch.zeros(1, 3, 32, 32)).shape == (1, 4)
    with pytest.raises(ValueError, match="known:.*mlp.*wrn-28-2.*ecg-resnet1d"):
        build_model({"arch": "resnet50"}, (3, 32, 32), 2)
    with pytest.raises(ValueError, match="image network"):
        build_model({"arch": "wrn-28-2"}, (12, 100), 2)


# ---- multi-label ------------------------------------------------------------------------


def test_multilabel_loss_metrics_and_signal_against_independent_computations():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    y = (rng.random((40, 3)) < 0.4).astype(np.float32)
    y[:, 2] = 0  # one label absent: excluded from the macro AUC
    z = rng.normal(size=(2, 40, 3)) + 2 * (y - 0.5)
    zt, yt = torch.tensor(z, dtype=torch.float32), torch.tensor(y)
    # BCE with logits by hand: mean over records and labels, per model
    p = 1 / (1 + np.exp(-z))
    bce = -(y * np.log(p) + (1 - y) * np.log(1 - p)).mean((1, 2))
    np.testing.assert_allclose(loss_fn(zt, yt.expand(2, 40, 3), "multilabel").numpy(), bce, rtol=1e-5)
    member = np.zeros((2, 40), bool)
    member[0, :20] = member[1, 20:] = True
    test = np.zeros(40, bool)
    test[30:] = True
    m = train_shard.model_metrics(zt, yt, member, test, "multilabel")
    idx = np.flatnonzero(member[0])
    expect_auc = np.mean([roc_auc_score(y[idx, k], z[0, idx, k]) for k in (0, 1)])
    assert m[0]["train_auc"] == pytest.approx(expect_auc)
    assert m[0]["train_acc"] == pytest.approx(((z[0, idx] > 0) == (y[idx] > 0.5)).mean())
    # the cube's signal: mean over labels of the per-label log-odds of the true label
    phi = shard.confidence(zt.double(), yt, "multilabel").numpy()
    per = np.log(np.where(y > 0.5, p, 1 - p)) - np.log(np.where(y > 0.5, 1 - p, p))
    np.testing.assert_allclose(phi, per.mean(-1), rtol=1e-6)


def test_views_reject_the_wrong_modality():
    x = torch.zeros(2, 12, 100)
    torch.testing.assert_close(train_shard.apply_view(x, "shift", "signal"), torch.roll(x, 5, -1))
    with pytest.raises(ValueError, match="query.views"):
        train_shard.apply_view(x, "hflip", "signal")
    with pytest.raises(ValueError, match="unknown"):
        train_shard.apply_view(x, "rotate", "image")
    train_shard.check_views(["original", "hflip"], "image")
    with pytest.raises(ValueError, match="'shift'.*image"):
        train_shard.check_views(["original", "shift"], "image")
