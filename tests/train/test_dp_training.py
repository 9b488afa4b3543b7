"""DP-SGD training of an ensemble shard (mia_audit.train.dp_sgd)."""

from functools import partial

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score
from torch import nn

from mia_audit.train import accounting
from mia_audit.train.dp_sgd import DP_COLUMNS, plan_dp, privacy_units, train_ensemble_dp
from mia_audit.train.ensemble import TrainConfig, predict_ensemble
from mia_audit.train.families import build_model

CPU = torch.device("cpu")


def pbc_like(n_patients=200, d=12, seed=0):
    """Patients with 1–12 visits each; the outcome depends on a patient-level risk score."""
    rng = np.random.default_rng(seed)
    k = rng.integers(1, 13, n_patients)
    pid = np.repeat(np.arange(n_patients), k)
    z = rng.normal(size=(n_patients, d))
    X = z[pid] + 0.5 * rng.normal(size=(len(pid), d))
    w = rng.normal(size=d)
    y = (z[pid] @ w + 0.5 * rng.normal(size=len(pid)) > 0).astype(np.int64)
    return torch.tensor(X, dtype=torch.float32), torch.tensor(y), pid


def halves(pid, patients, n_models, seed=0):
    """Each model gets a random half of ``patients``; returns record rows per model."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_models):
        chosen = rng.choice(patients, len(patients) // 2, replace=False)
        out.append(np.flatnonzero(np.isin(pid, chosen)))
    return out


def mlp_builder(d, width=32):
    return partial(build_model, {"arch": "mlp", "depth": 2, "width": width}, (d,), 2)


def test_no_noise_huge_clip_poisson_training_still_learns():
    X, y, pid = pbc_like()
    train_p, test_p = np.arange(160), np.arange(160, 200)
    rows = halves(pid, train_p, 3)
    cfg = TrainConfig(epochs=8, batch_size=64, lr=0.01)
    spec = {"epsilon": "inf", "max_grad_norm": 1e6, "level": "record"}
    base, params, buffers, history, g = train_ensemble_dp(
        mlp_builder(X.shape[1]), X, y, rows, np.arange(len(y)), cfg, spec, [1, 2, 3], CPU
    )
    assert list(g.columns) == list(DP_COLUMNS) and np.isinf(g["dp_epsilon"]).all()
    assert (g["dp_noise_multiplier"] == 0).all()
    assert history[-1].mean() < history[0].mean() - 0.05  # the loss falls
    test = np.isin(pid, test_p)
    logits = predict_ensemble(base, params, buffers, X[test])
    prob = torch.softmax(logits, -1)[..., 1].numpy()
    aucs = [roc_auc_score(y[test].numpy(), p) for p in prob]
    assert min(aucs) > 0.6, aucs


@pytest.mark.parametrize("level", ["record", "patient"])
def test_achieved_epsilon_per_model_at_most_target_and_close(level):
    X, y, pid = pbc_like(n_patients=120)
    rows = halves(pid, np.arange(120), 4, seed=1)
    units = privacy_units(pid.astype(str), level)
    cfg = TrainConfig(epochs=1, batch_size=8, lr=0.001)
    spec = {"epsilon": 3.0, "level": level}
    *_, g = train_ensemble_dp(mlp_builder(X.shape[1], 8), X, y, rows, units, cfg, spec, [0, 1, 2, 3], CPU)
    n_units = [len(np.unique(units[r])) for r in rows]
    np.testing.assert_allclose(g["dp_delta"], 1.0 / np.asarray(n_units))  # default δ per model
    assert (g["dp_epsilon"] <= 3.0 * (1 + 1e-9)).all()
    assert g["dp_epsilon"].max() >= 0.99 * 3.0  # the model with the most units is calibrated exactly
    assert g["dp_epsilon"].min() >= 0.9 * 3.0
    # each model's ε re-derived from its (σ, q, T, δ) with a fresh accountant call
    assert (g["dp_accountant"] == "pld").all()  # the schema's default
    for _, row in g.iterrows():
        assert row["dp_epsilon"] == pytest.approx(
            accounting.achieved_epsilon(
                row["dp_noise_multiplier"],
                row["dp_sample_rate"],
                int(row["dp_steps"]),
                row["dp_delta"],
                row["dp_accountant"],
                epsilon_scale=3.0,
            ),
            rel=1e-9,
        )


def _one_step_change(level, copies, C=0.01, lr=1.0):
    """Parameter change after one full-batch (q = 1), noise-free DP-SGD step when patient 0's
    first record is repeated ``copies`` times, against one copy (same init, same batch)."""
    X, y, pid = pbc_like(n_patients=30, seed=3)
    first = int(np.flatnonzero(pid == 0)[0])
    cfg = TrainConfig(
        epochs=1, batch_size=10_000, lr=lr, optimizer="sgd", momentum=0.0, weight_decay=0.0, schedule="constant"
    )
    spec = {"epsilon": "inf", "max_grad_norm": C, "level": level}
    out = []
    for extra in (0, copies - 1):
        Xd = torch.cat([X, X[first].expand(extra, -1)])
        yd = torch.cat([y, y[first].expand(extra)])
        pd_ = np.concatenate([pid, np.zeros(extra, dtype=pid.dtype)])
        units = privacy_units(pd_.astype(str), level)
        rows = [np.arange(len(yd))]
        _, params, _, _, g = train_ensemble_dp(mlp_builder(X.shape[1], 16), Xd, yd, rows, units, cfg, spec, [7], CPU)
        assert g["dp_sample_rate"].iloc[0] == 1.0 and g["dp_steps"].iloc[0] == 1
        out.append(torch.cat([v.flatten() for v in params.values()]))
    n_units_one_copy = len(np.unique(privacy_units(pid.astype(str), level)))
    return float(torch.linalg.vector_norm(out[1] - out[0])), n_units_one_copy


def test_patient_clipping_bounds_a_duplicated_patients_influence():
    lr, C = 1.0, 0.01
    moved, n_units = _one_step_change("patient", copies=50, C=C, lr=lr)
    # one unit's clipped gradient changes by at most 2C; the sum is divided by E = n_units
    assert moved <= lr * 2 * C / n_units + 1e-6
    # at record level the 49 extra copies are 49 more units of norm up to C each: far larger
    moved_rec, n_rec = _one_step_change("record", copies=50, C=C, lr=lr)
    assert moved_rec > 3 * lr * 2 * C / n_units


@pytest.mark.parametrize(
    "spec, key",
    [
        ({"epsilon": 0}, "experiments.x.dp.epsilon"),
        ({"epsilon": -2.0}, "experiments.x.dp.epsilon"),
        ({"epsilon": 1.0, "delta": 1.0}, "experiments.x.dp.delta"),
        ({"epsilon": 0.01, "delta": 1e-5, "accountant": "rdp"}, "experiments.x.dp.epsilon"),  # below RDP's floor
        ({"epsilon": 1e12}, "experiments.x.dp.epsilon"),  # huge: write inf
        ({"epsilon": 600}, "experiments.x.dp.epsilon"),  # above what the PLD accountant handles
        ({"epsilon": 1.0, "level": "visit"}, "experiments.x.dp.level"),
        ({"epsilon": 1.0, "max_grad_norm": 0}, "experiments.x.dp.max_grad_norm"),
    ],
)
def test_bad_budget_fails_before_training_naming_the_key(spec, key):
    cfg = TrainConfig(epochs=50, batch_size=64)
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        plan_dp(spec, np.array([400, 410]), 405.0, cfg, key="experiments.x.dp")


def test_bad_budget_in_trainer_builds_no_model():
    X, y, pid = pbc_like(n_patients=20)
    calls = []

    def build():
        calls.append(1)
        return mlp_builder(X.shape[1])()

    with pytest.raises(ValueError, match=r"dp\.epsilon"):
        train_ensemble_dp(
            build, X, y, [np.arange(len(y))], np.arange(len(y)), TrainConfig(epochs=1), {"epsilon": 0}, [0], CPU
        )
    assert not calls


def test_batchnorm_model_is_refused_with_the_key():
    X, y, pid = pbc_like(n_patients=20)

    def build():
        return nn.Sequential(nn.Linear(X.shape[1], 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))

    with pytest.raises(ValueError, match="norm: group"):
        train_ensemble_dp(
            build, X, y, [np.arange(len(y))], np.arange(len(y)), TrainConfig(epochs=1), {"epsilon": "inf"}, [0], CPU
        )


# ---------------------------------------------------------------------------
# image inputs
# ---------------------------------------------------------------------------


def test_dp_training_of_an_image_ensemble_with_the_input_transform():
    """DP-SGD on uint8 images: the transform (normalise + augment) runs before per-sample clipping."""
    from functools import partial

    from mia_audit.data.synthetic import make_synthetic_cohort
    from mia_audit.train.dp_sgd import privacy_units, train_ensemble_dp
    from mia_audit.train.ensemble import InputTransform, TrainConfig, model_seed, predict_ensemble
    from mia_audit.train.families import build_model

    rec, images = make_synthetic_cohort(n_patients=12, images_per_patient=(2, 3), size=32, seed=1)
    X = torch.as_tensor(images)
    y = torch.as_tensor(rec["label"].to_numpy(copy=True))
    rows = [np.arange(0, len(rec), 2), np.arange(1, len(rec), 2)]
    units = privacy_units(rec["patient_id"], "patient")
    build = partial(build_model, {"arch": "wrn", "depth": 10, "widen": 1, "norm": "group"}, tuple(X.shape[1:]), 2)
    gen = torch.Generator().manual_seed(0)
    tf = InputTransform(
        "image", torch.tensor([0.5]), torch.tensor([0.25]), augment=True, generator=gen, channels_last=False
    )
    cfg = TrainConfig(epochs=1, batch_size=4, lr=1e-3)
    dp_cfg = {"epsilon": 50.0, "delta": 1e-3, "max_grad_norm": 1.0, "level": "patient", "accountant": "rdp"}
    base, params, buffers, hist, guarantees = train_ensemble_dp(
        build, X, y, rows, units, cfg, dp_cfg, [model_seed(0, m) for m in range(2)], torch.device("cpu"), transform=tf
    )
    assert len(guarantees) == 2 and (guarantees["dp_epsilon"] <= 50.0 * 1.0001).all()
    assert all(torch.isfinite(v).all() for v in params.values())
    logits = predict_ensemble(base, params, buffers, X, transform=lambda x, train=False: tf(x, train=False))
    assert logits.shape == (2, len(rec), 2) and torch.isfinite(logits).all()


# ---------------------------------------------------------------------------
# model selection and canaries of a DP experiment
# ---------------------------------------------------------------------------


def test_dp_selection_trains_each_candidate_with_its_dp_overrides(monkeypatch):
    from mia_audit.train import dp_sgd

    exp = {
        "dp": {"epsilon": 2.0, "level": "patient", "canaries": {}},
        "selection": {"candidates": {"a": {}, "b": {"dp": {"max_grad_norm": 0.1}, "train": {"lr": 0.01}}}},
    }
    seen = []

    def fake(build, X, y, rows, units, cfg, dp_spec, seeds, device):
        seen.append((dict(dp_spec), units.copy()))
        return "base", "params", "buffers", None, None

    monkeypatch.setattr(dp_sgd, "train_ensemble_dp", fake)
    pid = np.array(["p1", "p1", "p2"])
    train = dp_sgd.selection_trainer(exp, pid)
    assert train("a", None, None, None, [], None, [0], CPU) == ("base", "params", "buffers")
    train("b", None, None, None, [], None, [0], CPU)
    assert seen[0][0] == {"epsilon": 2.0, "level": "patient"}  # no canaries in selection
    assert seen[1][0] == {"epsilon": 2.0, "level": "patient", "max_grad_norm": 0.1}
    np.testing.assert_array_equal(seen[0][1], [0, 0, 1])  # patient units
    # the chosen candidate's dp keys reach the target models' training
    got = dp_sgd.apply_dp_choice({"dp": {"epsilon": 2.0, "max_grad_norm": 1.0}}, {"dp": {"max_grad_norm": 0.1}})
    assert got["dp"] == {"epsilon": 2.0, "max_grad_norm": 0.1}
    assert dp_sgd.apply_dp_choice({"dp": {"epsilon": 2.0}}, None) == {"dp": {"epsilon": 2.0}}


@pytest.mark.parametrize("level", ["record", "patient"])
def test_canaries_join_the_training_sets_their_coins_pick_and_leave_the_plan_alone(level):
    import pandas as pd

    from mia_audit.train.dp_sgd import train_shard_dp

    X, y, pid = pbc_like(n_patients=60, seed=2)
    records = pd.DataFrame({"patient_id": pid.astype(str)})
    pool = pid < 50
    rng = np.random.default_rng(0)
    member = np.stack([np.isin(pid, rng.choice(50, 25, replace=False)) for _ in range(6)])
    cfg = TrainConfig(epochs=1, batch_size=8 if level == "patient" else 32, lr=0.01)
    base_exp = {"dp": {"epsilon": 4.0, "delta": 1e-4, "level": level}}
    can_exp = {"dp": {**base_exp["dp"], "canaries": {"records": 4, "patients": 1, "patient_records": 3}}}
    out = {}
    for name, exp in (("plain", base_exp), ("canaries", can_exp)):
        out[name] = train_shard_dp(
            exp, records, X, y, member, pool, (2, 5), cfg, mlp_builder(X.shape[1], 8), [1, 2, 3], CPU,
            "experiments.x.dp", 2,
        )  # fmt: skip
    plain, with_can = out["plain"][5], out["canaries"][5]
    for key in ("noise_multiplier", "sample_rate", "steps", "dp_epsilon", "dp_delta"):
        assert plain[key] == with_can[key]  # the canaries change neither the plan nor the guarantees
    can = with_can["canaries"]
    coins = np.asarray(can["member"], dtype=bool)
    from mia_audit.train import canaries as canary_lib

    np.testing.assert_array_equal(coins, canary_lib.coins(6, 5, 0)[2:5])  # the data set's coins, this shard's rows
    logits = np.asarray(can["logits"])
    assert logits.shape == (3, 7, 2) and np.isfinite(logits).all()
    assert can["kind"] == ["record"] * 4 + ["patient"] and can["size"] == [1, 1, 1, 1, 3]
    with pytest.raises(ValueError, match=r"experiments\.x\.dp\.canaries"):
        train_shard_dp(
            can_exp, records, X[:, :, None], y, member, pool, (0, 1), cfg, None, [0], CPU, "experiments.x.dp", 2
        )
