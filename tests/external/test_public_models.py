"""The public-model audit (TorchXrayVision targets and reference, offline RMIA), without the real weights.

Checkpoints are written in the released format (a pickled ``xrv.models.DenseNet``) from
small randomly initialised DenseNets; images come from the CheXpert and MIMIC-CXR-JPG
fixtures. Nothing may download: the package's downloader and urllib are made to fail.
"""

from __future__ import annotations

import copy
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr
from fixtures_datasets import write_chexpert, write_mimic_cxr
from scipy import special
from sklearn.metrics import roc_auc_score
from workflow_config import default_config
from workflow_runs import run_snakemake

from mia_audit.audit import attacks
from mia_audit.errors import DataError
from mia_audit.external import public_models as pm

ROOT = Path(__file__).resolve().parents[2]

xrv = pm.import_xrv()
WEIGHTS = {"chex": "densenet121-res224-chex", "mimic": "densenet121-res224-mimic_ch", "pc": "densenet121-res224-pc"}


def tiny_densenet(seed: int, n_out: int = 18, full: bool = False):
    torch.manual_seed(seed)
    kw = {} if full else dict(growth_rate=4, block_config=(1, 1, 1, 1), num_init_features=8, bn_size=2)
    m = xrv.models.DenseNet(num_classes=n_out, **kw)
    with torch.no_grad():  # keep logits O(1) on inputs in [-1024, 1024]
        m.features.conv0.weight.mul_(1e-3)
    return m.eval()


def write_weights(folder: Path, full: bool = False, names=tuple(WEIGHTS)) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, w in enumerate(WEIGHTS[n] for n in names):
        torch.save(tiny_densenet(i, full=full), folder / pm.weights_info(w)["filename"])  # released format
    return folder


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models on shared cores: intra-op threads only add contention."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args[:1]}")

    import requests

    monkeypatch.setattr(xrv.utils, "download", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(requests, "get", refuse)


# --------------------------------------------------------------------------- weights


def test_missing_weights_name_the_file_and_the_config_key(tmp_path, no_network):
    with pytest.raises(DataError) as err:
        pm.load_xrv_model(WEIGHTS["chex"], tmp_path / "w", config_key="public_models.xrv_chest")
    msg = str(err.value)
    expected = tmp_path / "w" / "chex-densenet121-d121-tw-lr001-rot45-tr15-sc15-seed0-best.pt"
    assert str(expected) in msg
    assert "public_models.xrv_chest.weights_dir" in msg and "public_models.xrv_chest.allow_download" in msg
    assert not (tmp_path / "w").exists()  # nothing created either


def test_workflow_weight_check_lists_every_missing_file(tmp_path, no_network):
    write_weights(tmp_path, names=("pc",))
    audit = {
        "targets": {"chex": {"weights": WEIGHTS["chex"], "members": "a"}},
        "references": {"pc": {"weights": WEIGHTS["pc"]}},
        "weights_dir": str(tmp_path),
    }
    with pytest.raises(DataError) as err:
        pm.audit_weight_files(audit, "xrv_chest")
    msg = str(err.value)
    assert f"targets.chex ({WEIGHTS['chex']}): {pm.expected_weights_path(WEIGHTS['chex'], tmp_path)}" in msg
    assert "references.pc" not in msg and "public_models.xrv_chest.weights_dir" in msg
    write_weights(tmp_path, names=("chex",))
    assert len(pm.audit_weight_files(audit, "xrv_chest")) == 2
    assert pm.audit_weight_files({**audit, "weights_dir": str(tmp_path / "none"), "allow_download": True}, "x") == []


def test_default_weights_dir_is_the_package_cache():
    assert pm.expected_weights_path(WEIGHTS["pc"]) == (
        Path.home() / ".torchxrayvision" / "models_data" / "pc-densenet121-d121-tw-lr001-rot45-tr15-sc15-seed0-best.pt"
    )


def test_download_only_when_allowed_and_through_the_package(tmp_path, monkeypatch):
    calls = []

    def fake_download(url, filename):
        calls.append((url, filename))
        torch.save(tiny_densenet(0), filename)

    monkeypatch.setattr(xrv.utils, "download", fake_download)
    with pytest.raises(DataError):
        pm.load_xrv_model(WEIGHTS["chex"], tmp_path)
    assert calls == []
    model = pm.load_xrv_model(WEIGHTS["chex"], tmp_path, allow_download=True)
    info = pm.weights_info(WEIGHTS["chex"])
    assert calls == [(info["url"], str(tmp_path / info["filename"]))]
    assert model.pathologies == info["labels"]


class Evil:
    def __reduce__(self):
        return (print, ("unpickled",))


def test_checkpoints_with_foreign_globals_are_refused(tmp_path):
    p = tmp_path / "x.pt"
    torch.save({"model": tiny_densenet(0), "extra": Evil()}, p)
    with pytest.raises(DataError, match="builtins.print"):
        pm.load_state_dict(p)


def test_loaded_model_matches_the_package_own_loading(tmp_path, no_network):
    """Our safe loader + raw logits, then sigmoid and op_norm, equals xrv.models.DenseNet(weights=...)."""
    write_weights(tmp_path, full=True, names=("chex",))
    ours = pm.load_xrv_model(WEIGHTS["chex"], tmp_path)
    theirs = xrv.models.DenseNet(weights=WEIGHTS["chex"], cache_dir=str(tmp_path))  # file present: no download
    x = torch.from_numpy(xrv.utils.normalize(np.random.default_rng(0).integers(0, 256, (2, 1, 224, 224)), 255))
    with torch.no_grad():
        z = ours(x)
        expected = theirs(x)
    got = xrv.models.op_norm(torch.sigmoid(z), torch.tensor(ours.xrv_op_threshs, dtype=torch.float32))
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    assert ours.pathologies == theirs.pathologies and ours.input_resolution == 224


def test_preprocessing_matches_the_package_pipeline(tmp_path):
    write_chexpert(tmp_path)
    path = next(tmp_path.glob("CheXpert-v1.0-small/train/*/*/view1_frontal.jpg"))
    ours = xrv.utils.normalize(pm.preprocess_image(path, 224), 255)
    theirs = xrv.datasets.XRayResizer(224)(xrv.datasets.XRayCenterCrop()(xrv.utils.load_image(str(path))))
    assert ours.shape == theirs.shape == (1, 224, 224)
    assert np.abs(ours - theirs).max() <= 0.5 / 255 * 2048 + 1e-3  # uint8 storage rounds by ≤ 0.5 grey level


# --------------------------------------------------------------------------- signal


def test_membership_signal_against_hand_computation():
    z = np.array([[[2.0, -1.0, 0.5, 3.0]], [[0.0, 1.0, -2.0, 4.0]]])  # 2 models, 1 record, 4 labels
    code = np.array([[1.0, 0.0, -1.0, np.nan]])
    use = np.array([True, True, True, False])
    mean = pm.membership_signal(z, code, use)
    np.testing.assert_allclose(mean[:, 0], [(2 + 1) / 2, (0 - 1) / 2])  # uncertain, missing, unshared skipped
    s = pm.membership_signal(z, code, use, aggregate="sum", uncertain="positive")
    np.testing.assert_allclose(s[:, 0], [2 + 1 + 0.5, 0 - 1 - 2])
    j = pm.membership_signal(z, code, use, aggregate="joint")
    p = special.expit(np.array([[2.0, 1.0], [0.0, -1.0]])).prod(axis=1)
    np.testing.assert_allclose(j[:, 0], np.log(p / (1 - p)))
    none = pm.membership_signal(z, np.array([[-1.0, np.nan, np.nan, 1.0]]), use)
    assert np.isnan(none).all()


# --------------------------------------------------------------------------- attack invariants


class Planted(torch.nn.Module):
    """A target whose logits rise by ``delta`` on images with a bright top-left pixel (the members)."""

    def __init__(self, base, delta):
        super().__init__()
        self.base, self.classifier, self.delta = base, base.classifier, delta

    def forward(self, x):
        return self.base(x) + self.delta * (x[:, :1, 0, 0] > 0).to(x.dtype)


def _synthetic_cube(tmp_path, delta: float, n: int = 40):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 128, (n, 1, 32, 32), dtype=np.uint8)
    is_a = np.arange(n) < n // 2
    images[is_a, 0, 0, 0] = 255
    labels = pm.weights_info(WEIGHTS["chex"])["labels"]
    pc_labels = pm.weights_info(WEIGHTS["pc"])["labels"]
    cand = pd.DataFrame(
        {
            "record_id": [f"r{i}" for i in range(n)],
            "patient_id": [f"p{i // 2}" for i in range(n)],
            "dataset": np.where(is_a, "a", "b"),
            "split": "pool",
            "path": "",
            **{f"code_{k}": 1.0 for k in labels if k},
        }
    )
    target = pm.as_logit_model(Planted(tiny_densenet(0), delta), labels, 32)
    ref = pm.as_logit_model(tiny_densenet(1), pc_labels, 32)
    models = {
        "t": {
            "role": "target",
            "weights": WEIGHTS["chex"],
            "labels": labels,
            "op_threshs": np.zeros(18),
            "members": "a",
        },
        "r": {
            "role": "reference",
            "weights": WEIGHTS["pc"],
            "labels": pc_labels,
            "op_threshs": np.zeros(18),
            "members": None,
        },
    }
    logits = {
        "t": pm.query_logits(target, images, batch_size=7),
        "r": pm.query_logits(ref, images, batch_size=7),
    }
    return pm.write_cube(tmp_path / "cube.zarr", cand, models, logits)


def test_planted_member_signal_is_recovered_and_labels_are_not_used(tmp_path):
    cube = _synthetic_cube(tmp_path, delta=0.0)
    base = pm.attack_target(cube, "t", ["r"], population=500)
    planted = pm.attack_target(_synthetic_cube(tmp_path, delta=3.0), "t", ["r"], population=500)
    assert (planted["status"] == "ok").all()
    auc = roc_auc_score(planted["member"], planted["rmia_offline"])
    assert auc > 0.95 and auc > roc_auc_score(base["member"], base["rmia_offline"]) + 0.2
    assert roc_auc_score(planted["member"], planted["lira_offline"]) > 0.95
    # shared labels: chex ∩ pc outputs (8 pathologies), all coded positive here
    assert (planted["n_labels"] == 8).all()
    # the target's membership is for evaluation only: flipping it leaves every score unchanged
    flipped = cube.copy()
    flipped["member"] = ~flipped["member"]
    again = pm.attack_target(flipped, "t", ["r"], population=500)
    for k in attacks.EXTERNAL_ATTACKS:
        np.testing.assert_array_equal(again[k].to_numpy(), base[k].to_numpy())


def brute_force_rmia(phi_t, phi_r, pop, a):
    """Share of population records z ≠ x with LR(x) ≥ LR(z), LR = p_t / ((1+a) p_r + 1 − a) · 2."""
    lr = special.expit(phi_t) / (0.5 * ((1 + a) * special.expit(phi_r) + 1 - a))
    out = np.empty(len(lr))
    for x in range(len(lr)):
        z = [j for j in pop if j != x]
        out[x] = np.mean([lr[x] >= lr[j] for j in z])
    return out


def test_population_excludes_the_candidate_itself(tmp_path):
    cube = _synthetic_cube(tmp_path, delta=1.0, n=30)
    s = pm.attack_target(cube, "t", ["r"], population=10, seed=3)
    pop = attacks.population_indices(len(s), 10, 3)
    expected = brute_force_rmia(s["signal_target"].to_numpy(), s["signal_reference"].to_numpy(), pop, 0.3)
    np.testing.assert_allclose(s["rmia_offline"].to_numpy(), expected, rtol=1e-12)
    # a population member never counts itself: its score has denominator |Z| − 1
    inside = s["rmia_offline"].to_numpy()[pop] * 9
    np.testing.assert_allclose(inside, np.round(inside), atol=1e-9)


# --------------------------------------------------------------------------- the workflow


def public_config(tmp_path: Path, weights_dir: Path) -> dict:
    cfg = copy.deepcopy(default_config())
    cfg["results"] = str(tmp_path / "results")
    cfg["datasets"]["pbc"]["path"] = str(ROOT / cfg["datasets"]["pbc"]["path"])
    write_chexpert(tmp_path / "chexpert")
    write_mimic_cxr(tmp_path / "mimic")
    cfg["public_models"] = {
        "xrv_chest": {
            "targets": {
                "chex": {"weights": WEIGHTS["chex"], "members": "chexpert"},
                "mimic": {"weights": WEIGHTS["mimic"], "members": "mimic_cxr"},
            },
            "references": {"pc": {"weights": WEIGHTS["pc"]}},
            "weights_dir": str(weights_dir),
            "candidates": {
                "chexpert": {"adapter": "chexpert", "root": str(tmp_path / "chexpert"), "n": 6},
                "mimic_cxr": {"adapter": "mimic_cxr", "root": str(tmp_path / "mimic"), "n": 5},
            },
            "batch_size": 4,
            "log_every": 1,
        }
    }
    return cfg


@pytest.mark.slow
def test_whole_chain_through_snakemake(tmp_path, monkeypatch):
    weights = write_weights(tmp_path / "weights")
    cfg = public_config(tmp_path, weights)
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")  # the jobs could not download even if they tried
    run_snakemake(
        tmp_path / "run",
        cfg,
        "public_models_all",
        "--set-threads",
        "query_public_models=1",
        "prepare_public_candidates=1",
    )
    res = Path(cfg["results"])
    cube = xr.open_zarr(res / "public/xrv_chest/cube.zarr", consolidated=True).load()
    assert list(cube["model"].values) == ["chex", "mimic", "pc"]
    assert cube["logit"].shape[:2] == (3, 11) and np.isfinite(cube["logit"].sel(model="chex", label="Effusion")).all()
    assert cube["member"].sel(model="chex").values.sum() == 6 and cube["member"].sel(model="mimic").values.sum() == 5
    assert not cube["member"].sel(model="pc").values.any()
    assert set(cube["patient_id"].values) >= {"patient00001", "10000032"}
    # the CheXpert fixture's codes cycle 1, 0, -1, blank: code table keeps them apart
    assert set(np.unique(cube["code"].values[np.isfinite(cube["code"].values)])) == {-1.0, 0.0, 1.0}

    scores = pd.read_parquet(res / "public/xrv_chest/scores.parquet")
    assert len(scores) == 22 and set(scores["target"]) == {"chex", "mimic"}
    for target, s in scores.groupby("target"):
        s = s[s["status"] == "ok"].reset_index(drop=True)
        expected = brute_force_rmia(
            s["signal_target"].to_numpy(), s["signal_reference"].to_numpy(), np.arange(len(s)), 0.3
        )
        np.testing.assert_allclose(s["rmia_offline"].to_numpy(), expected, rtol=1e-12)
        # the signal recomputed from the cube: mean over shared, known labels
        use = cube["has_label"].sel(model=[target, "pc"]).values.all(axis=0)
        phi = pm.membership_signal(cube["logit"].sel(model=[target]).values, cube["code"].values, use)[0]
        got = scores[scores["target"] == target]["signal_target"].to_numpy()
        np.testing.assert_allclose(got, phi)
    patients = pd.read_parquet(res / "public/xrv_chest/patient_scores.parquet")
    worst = scores[scores["status"] == "ok"].groupby(["target", "patient_id"])["rmia_offline"].max()
    np.testing.assert_allclose(patients.set_index(["target", "patient_id"])["rmia_offline"].loc[worst.index], worst)
    summary = pd.read_csv(res / "public/xrv_chest/summary.tsv", sep="\t")
    assert len(summary) == 2 * 3 * 2 and summary["auc"].between(0, 1).all()
    for ext in ("png", "pdf"):
        assert (res / f"figures/public/xrv_chest/roc.{ext}").stat().st_size > 1000
