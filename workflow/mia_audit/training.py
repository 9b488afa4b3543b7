"""Training a shard of target models as one vectorised ensemble.

The models of a shard share an architecture; their parameters are stacked with
:func:`torch.func.stack_module_state` and the forward pass runs for all of them at once
with :func:`torch.func.vmap` over :func:`torch.func.functional_call`. Each model sees only
its own member records.

The training procedure (identical for the ensemble and for :func:`train_one`, the plain
one-model reference used in tests and benchmarks):

* model ``m`` is initialised from ``torch.manual_seed(model_seed(seed, m))``;
* its records are streamed in a fresh random order every pass (numpy PCG64 seeded by the
  same model seed), in batches of exactly ``batch_size`` records; a pass that runs out
  mid-batch continues with the next reshuffled pass;
* every model takes the same fixed budget of ``epochs × steps_per_epoch`` optimiser steps,
  where ``steps_per_epoch = ceil(expected members / batch_size)`` is set by the data set,
  not by the shard, so results do not depend on how models are grouped into jobs;
* AdamW (or SGD with momentum) with weight decay; learning rate warmed up linearly for
  ``warmup_epochs`` then cosine-annealed to 0 (PyTorch's own schedulers).

AdamW and SGD act element-wise, so one optimiser over the stacked parameters is exactly
one optimiser per model; with dropout off, ensemble and one-by-one training agree to
floating-point rounding (tested). Dropout draws differ between the two (vmap uses one
random stream), which changes results only in distribution.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, stack_module_state, vmap


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 100
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    optimizer: str = "adamw"  # adamw | sgd
    momentum: float = 0.9
    schedule: str = "cosine"  # cosine | constant
    warmup_epochs: float = 0.0
    task: str = "multiclass"  # multiclass | multilabel

    @classmethod
    def from_config(cls, cfg: dict) -> "TrainConfig":
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in cfg.items() if k in known})


def model_seed(seed: int, model_index: int) -> int:
    """A 63-bit seed for model ``model_index`` of a run with base ``seed``."""
    return int(np.random.SeedSequence([int(seed), int(model_index)]).generate_state(1, np.uint64)[0] >> 1)


def resolve_device(device: str = "auto") -> torch.device:
    """'auto' → CUDA when present, else CPU; 'cuda' without a GPU is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(
            f"config key device is {device!r} but no CUDA device is available; "
            "set device: auto (falls back to the CPU) or device: cpu"
        )
    return torch.device(device)


class IndexStream:
    """Per-model batches of record indices: reshuffled passes, fixed batch size."""

    def __init__(self, rows: np.ndarray, batch_size: int, seed: int):
        if len(rows) == 0:
            raise ValueError("a target model has no training records")
        self.rows = np.asarray(rows, dtype=np.int64)
        self.batch_size = batch_size
        self.rng = np.random.default_rng(seed)
        self.buffer = np.empty(0, dtype=np.int64)

    def take(self, n_batches: int) -> np.ndarray:
        need = n_batches * self.batch_size
        parts = [self.buffer]
        have = len(self.buffer)
        while have < need:
            perm = self.rows[self.rng.permutation(len(self.rows))]
            parts.append(perm)
            have += len(perm)
        stream = np.concatenate(parts)
        self.buffer = stream[need:]
        return stream[:need].reshape(n_batches, self.batch_size)


def _make_optimizer(params, cfg: TrainConfig, total_steps: int, steps_per_epoch: int):
    if cfg.optimizer == "adamw":
        opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    elif cfg.optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    else:
        raise ValueError(f"train.optimizer must be 'adamw' or 'sgd', got {cfg.optimizer!r}")
    warm = int(round(cfg.warmup_epochs * steps_per_epoch))
    if cfg.schedule == "constant":
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warm) if warm else 1.0)
    elif cfg.schedule == "cosine":
        cos = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, total_steps - warm))
        if warm:
            lin = torch.optim.lr_scheduler.LinearLR(opt, start_factor=1.0 / warm, total_iters=warm)
            sched = torch.optim.lr_scheduler.SequentialLR(opt, [lin, cos], milestones=[warm])
        else:
            sched = cos
    else:
        raise ValueError(f"train.schedule must be 'cosine' or 'constant', got {cfg.schedule!r}")
    return opt, sched


def loss_fn(logits: torch.Tensor, y: torch.Tensor, task: str) -> torch.Tensor:
    """Mean loss over the last-but-one (batch) dimension; works on (B, C) or (M, B, C)."""
    if task == "multiclass":
        return F.cross_entropy(logits.flatten(0, -2), y.flatten(), reduction="none").view(y.shape).mean(-1)
    if task == "multilabel":
        return F.binary_cross_entropy_with_logits(logits, y.to(logits.dtype), reduction="none").mean((-1, -2))
    raise ValueError(f"unknown task {task!r}; expected 'multiclass' or 'multilabel'")


def steps_per_epoch(expected_members: float, batch_size: int) -> int:
    return max(1, math.ceil(expected_members / batch_size))


def init_ensemble(build: Callable[[], nn.Module], seeds: list[int], device):
    """Build one model per seed and stack their parameters and buffers."""
    models = []
    for s in seeds:
        torch.manual_seed(s)
        models.append(build().to(device))
    params, buffers = stack_module_state(models)
    base = copy.deepcopy(models[0]).to("meta")
    return base, params, buffers


def train_ensemble(
    build: Callable[[], nn.Module],
    X: torch.Tensor,
    y: torch.Tensor,
    member_rows: list[np.ndarray],
    cfg: TrainConfig,
    seeds: list[int],
    n_steps_per_epoch: int,
    device: torch.device,
    log: Callable[[str], None] | None = None,
):
    """Train ``len(seeds)`` models at once; model m on the records ``member_rows[m]``.

    ``X``/``y`` are on ``device``. Returns ``(base, params, buffers, history)`` where
    ``params``/``buffers`` are stacked state dicts (leading model dimension) and ``history``
    lists per-epoch mean training losses per model.
    """
    M = len(seeds)
    base, params, buffers = init_ensemble(build, seeds, device)
    base.train()
    streams = [IndexStream(r, cfg.batch_size, s) for r, s in zip(member_rows, seeds)]
    torch.manual_seed(seeds[0] ^ 0x5EED)  # the shared stream vmap's dropout draws from

    def fmodel(p, b, x):
        return functional_call(base, (p, b), (x,))

    forward = vmap(fmodel, in_dims=(0, 0, 0), randomness="different")
    total = cfg.epochs * n_steps_per_epoch
    opt, sched = _make_optimizer(list(params.values()), cfg, total, n_steps_per_epoch)
    history = []
    t0 = time.perf_counter()
    for epoch in range(cfg.epochs):
        idx = np.stack([s.take(n_steps_per_epoch) for s in streams], axis=1)  # (steps, M, B)
        idx_t = torch.as_tensor(idx, device=device)
        ep_loss = torch.zeros(M, device=device)
        for step in range(n_steps_per_epoch):
            rows = idx_t[step]
            logits = forward(params, buffers, X[rows])
            per_model = loss_fn(logits, y[rows], cfg.task)
            opt.zero_grad(set_to_none=True)
            per_model.sum().backward()
            opt.step()
            sched.step()
            ep_loss += per_model.detach()
        history.append((ep_loss / n_steps_per_epoch).cpu().numpy())
        if log and (epoch + 1 == cfg.epochs or (epoch + 1) % max(1, cfg.epochs // 10) == 0):
            log(
                f"epoch {epoch + 1}/{cfg.epochs}: mean train loss {history[-1].mean():.4f} "
                f"over {M} models ({time.perf_counter() - t0:.1f} s)"
            )
    params = {k: v.detach() for k, v in params.items()}
    return base, params, buffers, np.stack(history)


def train_one(
    build: Callable[[], nn.Module],
    X: torch.Tensor,
    y: torch.Tensor,
    rows: np.ndarray,
    cfg: TrainConfig,
    seed: int,
    n_steps_per_epoch: int,
    device: torch.device,
) -> nn.Module:
    """The same procedure for one model, as an ordinary PyTorch loop (the reference)."""
    torch.manual_seed(seed)
    model = build().to(device)
    model.train()
    stream = IndexStream(rows, cfg.batch_size, seed)
    total = cfg.epochs * n_steps_per_epoch
    opt, sched = _make_optimizer(model.parameters(), cfg, total, n_steps_per_epoch)
    for _ in range(cfg.epochs):
        idx = torch.as_tensor(stream.take(n_steps_per_epoch), device=device)
        for step in range(n_steps_per_epoch):
            rows_t = idx[step]
            loss = loss_fn(model(X[rows_t]), y[rows_t], cfg.task)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return model


@torch.no_grad()
def predict_ensemble(base: nn.Module, params, buffers, X: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
    """Logits of every model on every record, in eval mode: (models, records, outputs)."""
    base.eval()

    def fmodel(p, b, x):
        return functional_call(base, (p, b), (x,))

    forward = vmap(fmodel, in_dims=(0, 0, None))
    outs = [forward(params, buffers, X[i : i + batch_size]) for i in range(0, X.shape[0], batch_size)]
    return torch.cat(outs, dim=1)


def stacked_state_to_modules(build: Callable[[], nn.Module], params, buffers) -> list[nn.Module]:
    """Unstack a shard's state into ordinary modules (for inspection or export)."""
    M = next(iter(params.values())).shape[0]
    out = []
    for m in range(M):
        mod = build()
        mod.load_state_dict({**{k: v[m] for k, v in params.items()}, **{k: v[m] for k, v in buffers.items()}})
        out.append(mod)
    return out
