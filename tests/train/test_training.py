from functools import partial

import numpy as np
import pytest
import torch

from mia_audit.device import resolve_device
from mia_audit.errors import DataError
from mia_audit.train.ensemble import (
    TrainConfig,
    model_seed,
    predict_ensemble,
    steps_per_epoch,
    train_ensemble,
    train_one,
)
from mia_audit.train.families import MLP


def _task(n=600, f=10, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, f)).astype(np.float32)
    w = rng.normal(size=f)
    y = (X @ w + rng.normal(scale=1.0, size=n) > 0).astype(np.int64)
    return torch.from_numpy(X), torch.from_numpy(y)


def test_ensemble_equals_one_by_one_training_without_dropout():
    X, y = _task()
    rng = np.random.default_rng(1)
    rows = [np.sort(rng.choice(len(X), 300, replace=False)) for _ in range(5)]
    cfg = TrainConfig(epochs=4, batch_size=32, lr=3e-3, weight_decay=1e-3, warmup_epochs=1)
    seeds = [model_seed(7, m) for m in range(5)]
    spe = steps_per_epoch(300, 32)
    build = partial(MLP, 10, 2, depth=2, width=32)
    base, params, buffers, hist = train_ensemble(build, X, y, rows, cfg, seeds, spe, torch.device("cpu"))
    assert hist.shape == (4, 5)
    logits = predict_ensemble(base, params, buffers, X)
    for m in range(5):
        ref = train_one(build, X, y, rows[m], cfg, seeds[m], spe, torch.device("cpu"))
        for k, v in ref.state_dict().items():
            torch.testing.assert_close(params[k][m], v, rtol=1e-5, atol=1e-6)
        ref.eval()
        torch.testing.assert_close(logits[m], ref(X), rtol=1e-5, atol=1e-5)


def test_sgd_ensemble_equals_one_by_one_too():
    X, y = _task(seed=2)
    rows = [np.arange(0, 400), np.arange(200, 600)]
    cfg = TrainConfig(epochs=2, batch_size=50, lr=0.05, optimizer="sgd", schedule="constant")
    seeds = [model_seed(0, m) for m in range(2)]
    build = partial(MLP, 10, 2, depth=1, width=16)
    _, params, _, _ = train_ensemble(build, X, y, rows, cfg, seeds, 8, torch.device("cpu"))
    for m in range(2):
        ref = train_one(build, X, y, rows[m], cfg, seeds[m], 8, torch.device("cpu"))
        for k, v in ref.state_dict().items():
            torch.testing.assert_close(params[k][m], v, rtol=1e-5, atol=1e-6)


def test_a_models_result_does_not_depend_on_its_shard():
    X, y = _task(seed=3)
    rng = np.random.default_rng(0)
    rows = [np.sort(rng.choice(len(X), 300, replace=False)) for _ in range(4)]
    cfg = TrainConfig(epochs=2, batch_size=32)
    build = partial(MLP, 10, 2, depth=1, width=16)
    seeds = [model_seed(5, m) for m in range(4)]
    _, whole, _, _ = train_ensemble(build, X, y, rows, cfg, seeds, 10, torch.device("cpu"))
    _, half, _, _ = train_ensemble(build, X, y, rows[2:], cfg, seeds[2:], 10, torch.device("cpu"))
    for k in whole:
        torch.testing.assert_close(whole[k][2:], half[k], rtol=1e-5, atol=1e-6)


def test_with_dropout_ensemble_matches_loop_in_distribution():
    """Dropout masks differ between vmap and a loop; the trained models must not."""
    X, y = _task(n=800, seed=4)
    Xte, yte = X[600:], y[600:]
    rng = np.random.default_rng(2)
    M = 12
    rows = [np.sort(rng.choice(600, 300, replace=False)) for _ in range(M)]
    cfg = TrainConfig(epochs=5, batch_size=32, lr=3e-3)
    build = partial(MLP, 10, 2, depth=2, width=32, dropout=0.3)
    seeds = [model_seed(11, m) for m in range(M)]
    spe = steps_per_epoch(300, 32)
    base, params, buffers, _ = train_ensemble(build, X, y, rows, cfg, seeds, spe, torch.device("cpu"))
    ens = torch.nn.functional.cross_entropy(
        predict_ensemble(base, params, buffers, Xte).transpose(1, 2), yte.expand(M, -1), reduction="none"
    ).mean(1)
    loop = []
    for m in range(M):
        mod = train_one(build, X, y, rows[m], cfg, seeds[m], spe, torch.device("cpu")).eval()
        with torch.no_grad():
            loop.append(torch.nn.functional.cross_entropy(mod(Xte), yte).item())
    loop = np.array(loop)
    ens = ens.numpy()
    # same distribution: means agree within a few standard errors; the weights are not identical
    se = np.sqrt(ens.var(ddof=1) / M + loop.var(ddof=1) / M)
    assert abs(ens.mean() - loop.mean()) < 4 * se + 1e-3
    assert not np.allclose(ens, loop)


def test_cuda_requested_without_gpu_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(DataError, match="config key device is 'cuda'"):
        resolve_device("cuda")
    assert resolve_device("auto").type == "cpu"


def test_resolving_a_device_is_importable_without_torch():
    """The scripts' runtime module stays light: torch is imported only when a device is resolved."""
    import subprocess
    import sys

    code = "import sys, mia_audit.pipeline.runtime; assert 'torch' not in sys.modules, 'torch imported'"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
