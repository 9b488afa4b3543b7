"""Training a shard of target models with DP-SGD, as one vectorised ensemble.

The differentially private counterpart of :func:`mia_audit.train.ensemble.train_ensemble`: per
step every model draws its own Poisson batch of privacy units (records or patients,
:func:`mia_audit.train.dp_gradients.poisson_batches`), gets per-unit clipped, noised gradients
(:func:`mia_audit.train.dp_gradients.dp_gradients`) and takes one step of the non-DP optimiser.
One sample rate, step count and noise multiplier per experiment (calibrated by
:func:`mia_audit.train.accounting.noise_multiplier_for` at the smallest δ of any model), so no
guarantee depends on the shard grouping. Method: docs/methods.md, "Differential privacy".
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.func import functional_call, vmap

from mia_audit.settings import complete
from mia_audit.train import accounting
from mia_audit.train import dp_gradients as train_dp_gradients
from mia_audit.train.ensemble import TrainConfig, _make_optimizer, init_ensemble, loss_fn

LEVELS = ("record", "patient")

#: Per-model columns added to the shard metrics TSV (and, as lists, to the shard metadata).
DP_COLUMNS = ("dp_epsilon", "dp_delta", "dp_noise_multiplier", "dp_sample_rate", "dp_steps", "dp_level")


@dataclass(frozen=True)
class DPPlan:
    """A resolved DP-SGD budget for every model of an experiment (docs/methods.md, "Differential privacy").

    ``epsilon`` is the configured target (``inf`` = clipping without noise), ``delta`` the δ
    the noise is calibrated at, ``delta_config`` the configured δ (None → 1/n_m per model).
    ``key`` is the config path of the ``dp`` block, used in error messages.
    """

    epsilon: float
    delta: float
    delta_config: float | None
    max_grad_norm: float
    level: str
    accountant: str
    sample_rate: float
    steps: int
    noise_multiplier: float
    expected_units: float
    key: str = "dp"

    def to_dict(self) -> dict:
        return asdict(self)


def _keyed(err: Exception, key: str) -> ValueError:
    """Re-raise a :mod:`mia_audit.train.accounting` error with the full config key (``dp.x`` → ``key.x``)."""
    return ValueError(str(err).replace("dp.", f"{key}."))


def privacy_units(patient_ids, level: str, key: str = "dp") -> np.ndarray:
    """The privacy unit of each record: its own index (record level) or its patient's index.

    ``patient_ids`` is one entry per record (records.parquet ``patient_id``, row order).
    Patients are numbered 0 … P−1 in order of first appearance.
    """
    if level == "record":
        return np.arange(len(patient_ids), dtype=np.int64)
    if level == "patient":
        codes, _ = pd.factorize(pd.Series(patient_ids).astype(str), sort=False)
        return codes.astype(np.int64)
    raise ValueError(f"{key}.level must be 'record' or 'patient', got {level!r}")


def check_dp_model(model: nn.Module, key: str = "dp") -> None:
    """Refuse layers DP-SGD cannot train privately (BatchNorm mixes records of a batch).

    Uses Opacus's :class:`~opacus.validators.ModuleValidator`; image models need
    ``model.norm: group`` (GroupNorm) instead of BatchNorm.
    """
    from opacus.validators import ModuleValidator

    errors = ModuleValidator.validate(model, strict=False)
    if errors:
        raise ValueError(
            f"{key}: the model cannot be trained with DP-SGD: "
            + "; ".join(str(e) for e in errors[:3])
            + " (use model.norm: group for image models; BatchNorm is not DP-compatible)"
        )


def plan_dp(
    dp_cfg: dict,
    unit_counts_all: np.ndarray,
    expected_units: float,
    cfg: TrainConfig,
    key: str = "dp",
) -> DPPlan:
    """Resolve an experiment's ``dp`` block into q, T and σ, or fail naming ``key``.

    ``unit_counts_all``: units (records or patients) in each model's training set, over
    *all* models of the data set (so the plan does not depend on the shard).
    ``expected_units``: expected units per model (half the pool's units).
    Raises ``ValueError`` for ε ≤ 0, δ ∉ (0, 1), or an ε not reachable in the epoch budget.
    """
    dp_cfg = complete(dp_cfg, "dp", key)
    level = dp_cfg["level"]
    if level not in LEVELS:
        raise ValueError(f"{key}.level must be one of {LEVELS}, got {level!r}")
    accountant = dp_cfg["accountant"]
    clip = dp_cfg["max_grad_norm"]
    try:
        clip = float(clip)
    except (TypeError, ValueError):
        clip = float("nan")
    if not clip > 0:
        raise ValueError(f"{key}.max_grad_norm must be a number > 0, got {dp_cfg.get('max_grad_norm')!r}")
    counts = np.asarray(unit_counts_all, dtype=np.int64)
    if counts.size == 0 or counts.min() < 1:
        raise ValueError(f"{key}: every model needs at least one training {level}, got counts {counts[:5]}…")
    delta_cfg = dp_cfg.get("delta")
    try:
        eps, delta = accounting.validate_dp(dp_cfg.get("epsilon"), delta_cfg, int(counts.max()))
    except ValueError as err:
        raise _keyed(err, key) from err
    q = min(1.0, cfg.batch_size / float(expected_units))
    steps = int(math.ceil(cfg.epochs / q))
    try:
        sigma = accounting.noise_multiplier_for(eps, delta, q, steps, accountant)
    except ValueError as err:
        raise _keyed(err, key) from err
    return DPPlan(
        epsilon=eps,
        delta=delta,
        delta_config=None if delta_cfg is None else float(delta_cfg),
        max_grad_norm=clip,
        level=level,
        accountant=accountant,
        sample_rate=q,
        steps=steps,
        noise_multiplier=sigma,
        expected_units=float(expected_units),
        key=key,
    )


def model_guarantees(plan: DPPlan, unit_counts: np.ndarray) -> pd.DataFrame:
    """Per model: the achieved (ε_m, δ_m) and the run's σ, q, T, level (:data:`DP_COLUMNS`)."""
    counts = np.asarray(unit_counts, dtype=np.int64)
    deltas = np.full(len(counts), plan.delta_config) if plan.delta_config is not None else 1.0 / counts
    cache: dict[float, float] = {}
    eps = []
    for d in deltas:
        if d not in cache:
            cache[d] = accounting.achieved_epsilon(
                plan.noise_multiplier, plan.sample_rate, plan.steps, float(d), plan.accountant
            )
        eps.append(cache[d])
    return pd.DataFrame(
        {
            "dp_epsilon": np.asarray(eps, dtype=float),
            "dp_delta": deltas.astype(float),
            "dp_noise_multiplier": plan.noise_multiplier,
            "dp_sample_rate": plan.sample_rate,
            "dp_steps": plan.steps,
            "dp_level": plan.level,
        }
    )


def _padded(
    member_rows: list[np.ndarray], record_units: np.ndarray, device
) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """(M, R_max) global record rows and their unit ids, −1 padded; units per model."""
    M, R = len(member_rows), max(len(r) for r in member_rows)
    rows = np.full((M, R), -1, dtype=np.int64)
    units = np.full((M, R), -1, dtype=np.int64)
    n_units = np.empty(M, dtype=np.int64)
    for m, r in enumerate(member_rows):
        r = np.asarray(r, dtype=np.int64)
        rows[m, : len(r)] = r
        units[m, : len(r)] = record_units[r]
        n_units[m] = len(np.unique(record_units[r]))
    return torch.as_tensor(rows, device=device), torch.as_tensor(units, device=device), n_units


def train_ensemble_dp(
    build: Callable[[], nn.Module],
    X: torch.Tensor,
    y: torch.Tensor,
    member_rows: list[np.ndarray],
    record_units: np.ndarray,
    cfg: TrainConfig,
    dp_spec,
    seeds: list[int],
    device: torch.device,
    log: Callable[[str], None] | None = None,
    transform: Callable | None = None,
):
    """Train ``len(seeds)`` models with DP-SGD; model m on the records ``member_rows[m]``.

    ``transform`` (optional, as in :func:`~mia_audit.train.ensemble.train_ensemble`) turns each
    stored batch (uint8 images, raw signals) into model inputs: normalisation and
    augmentation happen before the per-sample gradients, so clipping bounds each unit's
    contribution whatever the augmentation.

    ``record_units`` (records,) int: the privacy unit of every record (see
    :func:`privacy_units`). ``dp_spec``: a :class:`DPPlan` (from :func:`plan_dp`, computed
    over all models of the data set), or an experiment's ``dp`` config dict, which is then
    planned from this shard's models alone (q from their mean unit count). All checks (ε,
    δ, reachability, model layers) run before the first step.

    Returns ``(base, params, buffers, history, guarantees)``: as
    :func:`~mia_audit.train.ensemble.train_ensemble` (history = mean batch loss per epoch of
    round(1/q) steps, per model) plus the per-model :func:`model_guarantees` table.
    """
    record_units = np.asarray(record_units, dtype=np.int64)
    if record_units.shape != (X.shape[0],):
        raise ValueError(f"record_units must have one unit per record ({X.shape[0]}), got shape {record_units.shape}")
    rows_mat, units_mat, n_units = _padded(member_rows, record_units, device)
    if isinstance(dp_spec, DPPlan):
        plan = dp_spec
    else:
        plan = plan_dp(dict(dp_spec), n_units, float(n_units.mean()), cfg)
    check_dp_model(build(), plan.key)
    guarantees = model_guarantees(plan, n_units)
    if not bool((guarantees["dp_epsilon"] <= plan.epsilon * (1 + 1e-9)).all()):
        raise ValueError(
            f"{plan.key}.epsilon: a model exceeds the target ε = {plan.epsilon} "
            f"(max {guarantees['dp_epsilon'].max():.4g}); recompute the plan over all models"
        )

    M = len(seeds)
    base, params, buffers = init_ensemble(build, seeds, device)
    if any(v.numel() for v in buffers.values()):
        raise ValueError(f"{plan.key}: DP training needs a model without buffers (running statistics)")
    base.train()
    task = cfg.task
    f_loss = train_dp_gradients.sample_loss_fn(base, loss=lambda out, yy: loss_fn(out, yy, task))
    forward = vmap(lambda p, b, x: functional_call(base, (p, b), (x,)), in_dims=(0, 0, 0), randomness="different")
    # an MLP: clipped sums from one batched backward pass (dp.dp_gradients_linear), no per-sample gradients
    chain = train_dp_gradients.linear_chain(base)

    def rows_loss(out, yy):
        return loss_fn_rows(out, yy, task)

    gen = torch.Generator(device=device).manual_seed(int(seeds[0]) ^ 0xD1FF)
    torch.manual_seed(int(seeds[0]) ^ 0x5EED)  # dropout draws, as in the non-DP path
    steps_per_epoch = max(1, int(round(1.0 / plan.sample_rate)))
    opt, sched = _make_optimizer(list(params.values()), cfg, plan.steps, steps_per_epoch)
    expected_batch = plan.sample_rate * plan.expected_units
    if log:
        log(
            f"DP-SGD at {plan.level} level: ε = {plan.epsilon}, δ = {plan.delta:.3g}, C = {plan.max_grad_norm}, "
            f"q = {plan.sample_rate:.4f}, {plan.steps} steps, σ = {plan.noise_multiplier:.4f}; "
            f"achieved ε per model {guarantees['dp_epsilon'].min():.4g}–{guarantees['dp_epsilon'].max():.4g}"
        )

    history, ep_loss, ep_n = [], torch.zeros(M, device=device), 0
    t0 = time.perf_counter()
    for step in range(plan.steps):
        batch = train_dp_gradients.poisson_batches(units_mat, plan.sample_rate, gen)
        valid = batch.rows >= 0
        rec = torch.gather(rows_mat, 1, batch.rows.clamp(min=0))  # global record rows, (M, B)
        xb, yb = X[rec], y[rec]
        if transform is not None:
            xb = transform(xb, train=True)
        if chain is not None:
            grads, lb = train_dp_gradients.dp_gradients_linear(
                chain,
                params,
                xb,
                yb,
                batch.unit_index,
                rows_loss,
                plan.max_grad_norm,
                plan.noise_multiplier,
                expected_batch,
                generator=gen,
            )
        else:
            grads = train_dp_gradients.dp_gradients(
                f_loss,
                params,
                xb,
                yb,
                batch.unit_index,
                plan.max_grad_norm,
                plan.noise_multiplier,
                expected_batch,
                generator=gen,
            )
            with torch.no_grad():
                lb = loss_fn_rows(forward(params, buffers, xb), yb, task)
        with torch.no_grad():
            w = valid.to(lb.dtype)
            ep_loss += (lb * w).sum(1) / w.sum(1).clamp(min=1)
        ep_n += 1
        for k, p in params.items():
            p.grad = grads[k]
        opt.step()
        sched.step()
        if ep_n == steps_per_epoch or step + 1 == plan.steps:
            history.append((ep_loss / ep_n).cpu().numpy())
            ep_loss, ep_n = torch.zeros(M, device=device), 0
            n_ep = len(history)
            total_ep = math.ceil(plan.steps / steps_per_epoch)
            if log and (n_ep == total_ep or n_ep % max(1, total_ep // 10) == 0):
                log(
                    f"epoch {n_ep}/{total_ep}: mean train loss {history[-1].mean():.4f} over {M} models "
                    f"({time.perf_counter() - t0:.1f} s)"
                )
    params = {k: v.detach() for k, v in params.items()}
    return base, params, buffers, np.stack(history), guarantees


def loss_fn_rows(logits: torch.Tensor, y: torch.Tensor, task: str) -> torch.Tensor:
    """Per-row loss (M, B) for stacked logits (M, B, C)."""
    if task == "multiclass":
        return torch.nn.functional.cross_entropy(logits.flatten(0, -2), y.flatten(), reduction="none").view(y.shape)
    return torch.nn.functional.binary_cross_entropy_with_logits(logits, y.to(logits.dtype), reduction="none").mean(-1)


def plan_for_shard(
    dp_cfg: dict, patient_ids, member: np.ndarray, pool: np.ndarray, cfg: TrainConfig, key: str = "dp"
) -> tuple[DPPlan, np.ndarray]:
    """The plan of an experiment from the data set's whole membership, and the record units.

    ``member`` (all models × records) bool; ``pool`` (records,) bool. Expected units per
    model = half the pool's units.
    """
    dp_cfg = complete(dp_cfg, "dp", key)
    level = dp_cfg["level"]
    units = privacy_units(patient_ids, level, key)
    if level == "record":
        counts, expected = member.sum(axis=1), pool.sum() / 2
    else:
        n_u = int(units.max()) + 1
        counts = np.array([np.bincount(units[row], minlength=n_u).astype(bool).sum() for row in member])
        expected = len(np.unique(units[pool])) / 2
    return plan_dp(dp_cfg, counts, expected, cfg, key), units
