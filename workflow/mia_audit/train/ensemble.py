"""Training a shard of target models as one vectorised ensemble.

The models' parameters are stacked (:func:`torch.func.stack_module_state`) and run at once
(:func:`torch.func.vmap` over :func:`torch.func.functional_call`), each model on its own member
records with its own seeds, a fixed step budget set by the data set, AdamW or SGD and a
warm-up then cosine schedule; :func:`train_one` is the plain one-model reference. Without
dropout the two give the same weights. Images and signals are gathered by index from one
device tensor and transformed per step (:class:`InputTransform`). The procedure:
docs/methods.md, "Training the target models".
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from mia_audit.settings import complete


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
    augment: bool = True  # images: random crop + flip; signals: random shift + scale
    amp: bool = True  # bf16 autocast and channels-last images, on CUDA only

    @classmethod
    def from_config(cls, cfg: dict | None) -> TrainConfig:
        """From an experiment's ``train`` block, its schema defaults filled in."""
        cfg = dict(cfg or {})
        task = cfg.pop("task", None)  # not a config key: a shard's metadata adds the data set's task
        cfg = complete(cfg, "train")
        known = {f for f in cls.__dataclass_fields__}
        out = cls(**{k: v for k, v in cfg.items() if k in known})
        return out if task is None else replace(out, task=task)


class InputTransform:
    """Raw gathered inputs → model inputs, on the device, for a whole (…, record, …) block.

    modality ``image``: x uint8 (..., C, H, W) → [random crop (reflect pad ``pad``) + flip,
    training only] → float (x/255 − mean[c]) / std[c] → channels-last on CUDA.
    modality ``signal``: x float (..., L, T) → [random circular shift ≤ ``max_shift`` samples
    and amplitude scale in ``scale``, training only] → (x − mean[l]) / std[l].
    modality ``table``: identity. ``mean``/``std`` are per channel (lead), computed from the
    pool records by :func:`channel_stats` and stored with the models so the query stage
    normalises the same way. Augmentation draws come from ``generator`` (seeded: runs are
    reproducible for a given seed and ``models_per_job``).
    """

    def __init__(
        self,
        modality: str,
        mean=None,
        std=None,
        augment: bool = False,
        generator: torch.Generator | None = None,
        channels_last: bool = False,
        pad: int = 4,
        max_shift: int | None = None,
        scale: tuple[float, float] = (0.9, 1.1),
    ):
        if modality not in ("table", "image", "signal"):
            raise ValueError(f"modality {modality!r}: expected 'table', 'image' or 'signal'")
        self.modality, self.augment, self.generator = modality, augment, generator
        self.channels_last, self.pad, self.max_shift, self.scale = channels_last, pad, max_shift, scale
        self.mean = None if mean is None else torch.as_tensor(mean, dtype=torch.float32)
        self.std = None if std is None else torch.as_tensor(std, dtype=torch.float32)

    def __call__(self, x: torch.Tensor, train: bool = True) -> torch.Tensor:
        from mia_audit.train import augment as train_augment

        if self.modality == "table":
            return x
        aug_now = train and self.augment
        if self.modality == "image":
            if aug_now:
                pad = min(self.pad, x.shape[-1] - 1, x.shape[-2] - 1)
                x = train_augment.random_crop_flip(x, pad=pad, generator=self.generator)
            x = train_augment.normalize_uint8(x, self.mean.to(x.device), self.std.to(x.device))
            if self.channels_last and x.dim() >= 4:
                lead = x.shape[:-3]
                x = x.reshape(-1, *x.shape[-3:]).contiguous(memory_format=torch.channels_last)
                x = x.unflatten(0, lead) if len(lead) != 1 else x
            return x
        x = x.to(torch.float32)
        if aug_now:
            ms = self.max_shift if self.max_shift is not None else max(1, x.shape[-1] // 20)
            x = train_augment.signal_shift_scale(x, max_shift=ms, scale=self.scale, generator=self.generator)
        if self.mean is not None:
            x = (x - self.mean.to(x.device)[:, None]) / self.std.to(x.device)[:, None]
        return x


@torch.no_grad()
def channel_stats(X: torch.Tensor, rows: np.ndarray, modality: str, block: int = 1024) -> tuple[list, list]:
    """Per-channel (image) or per-lead (signal) mean and SD over the records ``rows``.

    Images are on the [0, 1] scale (uint8 / 255), the statistics over records and pixels;
    signals over records and time. Accumulated in float64 blocks of ``block`` records, so
    the uint8 tensor is never converted whole. SDs below 1e-6 are set to 1.
    """
    rows_t = torch.as_tensor(np.asarray(rows, dtype=np.int64), device=X.device)
    axes = (0, 2, 3) if modality == "image" else (0, 2)
    s = s2 = None
    n = 0
    for i in range(0, len(rows_t), block):
        x = X[rows_t[i : i + block]].to(torch.float64)
        if modality == "image":
            x = x / 255.0
        a, b = x.sum(axes), (x * x).sum(axes)
        s, s2 = (a, b) if s is None else (s + a, s2 + b)
        n += x.numel() // x.shape[1]
    if n == 0:
        raise ValueError("channel_stats: no records to compute the normalisation from")
    mean = s / n
    sd = torch.sqrt(torch.clamp(s2 / n - mean * mean, min=0.0))
    sd = torch.where(sd < 1e-6, torch.ones_like(sd), sd)
    return mean.cpu().tolist(), sd.cpu().tolist()


def autocast_context(device: torch.device, enabled: bool):
    """bf16 autocast on CUDA when ``enabled``; a no-op context otherwise (CPU runs stay fp32)."""
    return torch.autocast(
        device_type=device.type, dtype=torch.bfloat16, enabled=bool(enabled) and device.type == "cuda"
    )


def model_seed(seed: int, model_index: int) -> int:
    """A 63-bit seed for model ``model_index`` of a run with base ``seed``."""
    return int(np.random.SeedSequence([int(seed), int(model_index)]).generate_state(1, np.uint64)[0] >> 1)


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
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    amp: bool = False,
):
    """Train ``len(seeds)`` models at once; model m on the records ``member_rows[m]``.

    ``X``/``y`` are on ``device``; each step gathers ``X[rows]`` of shape (models, batch, …)
    and passes it through ``transform`` (e.g. :class:`InputTransform`: augmentation and
    normalisation) when given. ``amp``: bf16 autocast on CUDA. Returns ``(base, params, buffers, history)`` where
    ``params``/``buffers`` are stacked state dicts (leading model dimension) and ``history``
    lists per-epoch mean training losses per model.
    """
    M = len(seeds)
    base, params, buffers = init_ensemble(build, seeds, device)
    base.train()
    streams = [IndexStream(r, cfg.batch_size, s) for r, s in zip(member_rows, seeds, strict=True)]
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
            xb = X[rows] if transform is None else transform(X[rows])
            with autocast_context(device, amp):
                logits = forward(params, buffers, xb)
                per_model = loss_fn(logits.float(), y[rows], cfg.task)
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
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    amp: bool = False,
    epoch_losses: list | None = None,
) -> nn.Module:
    """The same procedure for one model, as an ordinary PyTorch loop (the reference);
    ``epoch_losses`` (a list), when given, receives each epoch's mean training loss."""
    torch.manual_seed(seed)
    model = build().to(device)
    model.train()
    stream = IndexStream(rows, cfg.batch_size, seed)
    total = cfg.epochs * n_steps_per_epoch
    opt, sched = _make_optimizer(model.parameters(), cfg, total, n_steps_per_epoch)
    for _ in range(cfg.epochs):
        idx = torch.as_tensor(stream.take(n_steps_per_epoch), device=device)
        total_loss = torch.zeros((), device=device)
        for step in range(n_steps_per_epoch):
            rows_t = idx[step]
            xb = X[rows_t] if transform is None else transform(X[rows_t])
            with autocast_context(device, amp):
                loss = loss_fn(model(xb).float(), y[rows_t], cfg.task)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total_loss += loss.detach()
        if epoch_losses is not None:
            epoch_losses.append(float(total_loss) / n_steps_per_epoch)
    return model


def query_batch_size(n_models: int, record_shape: tuple, budget: int = 2**22, cap: int = 4096) -> int:
    """Records per forward pass of an ensemble so that models × batch × input elements ≤ ``budget``."""
    per = max(1, int(n_models) * int(np.prod(record_shape, dtype=np.int64)))
    return int(max(1, min(cap, budget // per)))


@torch.no_grad()
def predict_ensemble(
    base: nn.Module,
    params,
    buffers,
    X: torch.Tensor,
    batch_size: int = 4096,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    amp: bool = False,
) -> torch.Tensor:
    """Logits of every model on every record, in eval mode: (models, records, outputs) float32.

    ``transform`` maps a raw block ``X[i:j]`` to model inputs (called with ``train=False``
    when it is an :class:`InputTransform`: normalisation, no augmentation).
    """
    base.eval()

    def fmodel(p, b, x):
        return functional_call(base, (p, b), (x,))

    forward = vmap(fmodel, in_dims=(0, 0, None))
    device = X.device
    outs = []
    for i in range(0, X.shape[0], batch_size):
        xb = X[i : i + batch_size]
        if transform is not None:
            xb = transform(xb, train=False) if isinstance(transform, InputTransform) else transform(xb)
        with autocast_context(device, amp):
            outs.append(forward(params, buffers, xb).float())
    return torch.cat(outs, dim=1)


def vmap_failure(
    build: Callable[[], nn.Module],
    X: torch.Tensor,
    y: torch.Tensor,
    rows: np.ndarray,
    cfg: TrainConfig,
    device: torch.device,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    amp: bool = False,
) -> str | None:
    """None when models of ``build`` train and predict as a vectorised ensemble
    (:func:`torch.func.vmap`): one training step and one prediction of two models on two of
    ``rows``, on copies (nothing is kept); else the error, in one line."""
    try:
        base, params, buffers = init_ensemble(build, [1, 2], device)
        params = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
        buffers = {k: v.clone() for k, v in buffers.items()}
        base.train()
        idx = torch.as_tensor(np.stack([rows[:2], rows[:2]]), device=device)
        xb = X[idx] if transform is None else transform(X[idx])

        def fmodel(p, b, x):
            return functional_call(base, (p, b), (x,))

        with autocast_context(device, amp):
            logits = vmap(fmodel, in_dims=(0, 0, 0), randomness="different")(params, buffers, xb)
            loss = loss_fn(logits.float(), y[idx], cfg.task).sum()
        loss.backward()
        x1 = X[torch.as_tensor(rows[:2], device=device)]
        predict_ensemble(base, params, buffers, x1, transform=None if transform is None else _eval(transform), amp=amp)
    except Exception as e:  # any failure of vmap over the module: train it in a plain loop instead
        return f"{type(e).__name__}: {' '.join(str(e).split())[:300]}"
    return None


def _eval(transform):
    return (lambda x: transform(x, train=False)) if isinstance(transform, InputTransform) else transform


def train_each(
    build: Callable[[], nn.Module],
    X: torch.Tensor,
    y: torch.Tensor,
    member_rows: list[np.ndarray],
    cfg: TrainConfig,
    seeds: list[int],
    n_steps_per_epoch: int,
    device: torch.device,
    log: Callable[[str], None] | None = None,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    amp: bool = False,
):
    """:func:`train_ensemble` for networks that cannot run under vmap: the same procedure
    (:func:`train_one`), one model after another; the same return value (stacked states)."""
    models, history = [], []
    t0 = time.perf_counter()
    for i, (rows, seed) in enumerate(zip(member_rows, seeds, strict=True)):
        losses: list[float] = []
        models.append(
            train_one(build, X, y, rows, cfg, seed, n_steps_per_epoch, device, transform, amp, epoch_losses=losses)
        )
        history.append(losses)
        if log and (i + 1 == len(seeds) or (i + 1) % max(1, len(seeds) // 10) == 0):
            log(f"model {i + 1}/{len(seeds)} trained (plain loop, {time.perf_counter() - t0:.1f} s)")
    params, buffers = stack_module_state(models)
    base = copy.deepcopy(models[0]).to("meta")
    params = {k: v.detach() for k, v in params.items()}
    return base, params, buffers, np.asarray(history, dtype=np.float64).T


@torch.no_grad()
def predict_each(
    build: Callable[[], nn.Module],
    params,
    buffers,
    X: torch.Tensor,
    batch_size: int = 4096,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    amp: bool = False,
) -> torch.Tensor:
    """:func:`predict_ensemble` one model at a time (networks that cannot run under vmap)."""
    model = build().to(X.device)
    model.eval()
    n = next(iter(params.values())).shape[0]
    outs = []
    for m in range(n):
        state = ({k: v[m] for k, v in params.items()}, {k: v[m] for k, v in buffers.items()})
        parts = []
        for i in range(0, X.shape[0], batch_size):
            xb = X[i : i + batch_size]
            if transform is not None:
                xb = transform(xb, train=False) if isinstance(transform, InputTransform) else transform(xb)
            with autocast_context(X.device, amp):
                parts.append(functional_call(model, state, (xb,)).float())
        outs.append(torch.cat(parts))
    return torch.stack(outs)
