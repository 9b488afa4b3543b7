"""DP-SGD gradients for a stacked ensemble of target models.

:func:`dp_gradients`, :func:`poisson_batches` and :func:`sample_loss_fn` follow the Opacus
recipe (Abadi et al. 2016; Yousefpour et al. 2021), written with ``torch.func`` so that M
models, each with its own Poisson batch of its own member records, are processed in one
vectorised call. The privacy unit is a record (record-level DP) or a patient (patient-level
DP: a patient's records are summed into one gradient before clipping, so the patient's whole
contribution is bounded by C). :func:`dp_gradients_linear` computes the same clipped sums for
MLPs from one batched backward pass, without per-sample gradients (docs/methods.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

if TYPE_CHECKING:  # torch is imported by the DP-SGD functions only: the audit's DP bounds do without it
    import torch

ArrayLike = float | np.ndarray


# ---------------------------------------------------------------------------
# DP-SGD for a stacked ensemble
# ---------------------------------------------------------------------------


def sample_loss_fn(
    model: torch.nn.Module,
    loss: Callable | None = None,
    buffers: Mapping[str, torch.Tensor] | None = None,
) -> Callable:
    """Per-sample loss ``f(params, x, y) -> scalar`` for :func:`dp_gradients`.

    ``loss`` defaults to ``torch.nn.functional.cross_entropy``.

    ``params`` holds one model's parameters (unstacked), ``x`` one input without batch
    dimension, ``y`` its target; the model runs on a batch of one via
    :func:`torch.func.functional_call`. ``buffers`` (shared, unstacked) are passed along.
    """
    import torch
    from torch.func import functional_call

    loss = torch.nn.functional.cross_entropy if loss is None else loss
    bufs = dict(buffers or {})

    def f(params, x, y):
        out = functional_call(model, (params, bufs), (x.unsqueeze(0),))
        return loss(out, y.unsqueeze(0))

    return f


def dp_gradients(
    fmodel_loss: Callable,
    params: Mapping[str, torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    unit_index: torch.Tensor,
    max_grad_norm: float,
    noise_multiplier: float,
    expected_batch_units: float | torch.Tensor,
    generator: torch.Generator | None = None,
) -> dict[str, torch.Tensor]:
    """DP-SGD gradients for M stacked models, each on its own (padded) Poisson batch.

    For model m with batch rows i (``unit_index[m, i] >= 0``; padding rows are -1)::

        g_u      = Σ_{i: unit(i) = u} ∇_θ ℓ(θ_m; x_mi, y_mi)          (sum within a unit)
        ĝ_u      = g_u · min(1, C / (‖g_u‖₂ + 10⁻⁶))                  (clip, global norm)
        grad_m   = (Σ_u ĝ_u + N(0, σ² C² I)) / E_m                    (noise, average)

    with C = ``max_grad_norm``, σ = ``noise_multiplier`` and E_m = ``expected_batch_units``
    (sample rate × number of units of model m), exactly Opacus's ``DPOptimizer`` for
    Poisson sampling (Abadi et al. 2016, Alg. 1; Yousefpour et al. 2021) with the per-unit
    sum of McMahan et al. 2018 (user-level DP). Record-level DP: ``unit_index`` = row ids.

    Parameters
    ----------
    fmodel_loss : callable ``(params_m, x_i, y_i) -> scalar loss`` for one model and one
        sample (see :func:`sample_loss_fn`).
    params : dict of stacked (M, ...) tensors (``torch.func.stack_module_state``).
    x : (M, B, ...) inputs; y : (M, B) targets.
    unit_index : (M, B) int, the privacy unit of each row; -1 marks padding.
    max_grad_norm : C > 0. noise_multiplier : σ >= 0.
    expected_batch_units : float or (M,) tensor, E_m > 0.
    generator : torch.Generator on the parameters' device, for the noise.

    Padding rows enter the per-sample loss with weight 0, so they must hold finite inputs
    (e.g. any real record, as ``x[rows.clamp(min=0)]`` gives). Memory: the per-sample
    gradients take M·B·(number of parameters) floats; when some unit has several rows in
    the batch they are summed by :func:`unit_sums`.
    Models with buffers (shared, unstacked) can close over them in ``fmodel_loss``.

    Returns
    -------
    dict name -> (M, ...) gradient, shaped like ``params`` (detached).
    """
    import torch
    from torch.func import grad, vmap

    _check_dp_args(max_grad_norm, noise_multiplier, unit_index, x, y)
    M, B = unit_index.shape
    params = {k: v.detach() for k, v in params.items()}
    first = next(iter(params.values()))
    device, dtype = first.device, first.dtype
    unit_index = unit_index.to(device)

    valid = unit_index >= 0

    def weighted_loss(p, xi, yi, wi):  # padding rows get weight 0, hence zero gradient
        return fmodel_loss(p, xi, yi) * wi

    per_model = vmap(grad(weighted_loss), in_dims=(None, 0, 0, 0), randomness="different")
    per_sample = vmap(per_model, in_dims=(0, 0, 0, 0), randomness="different")(params, x, y, valid.to(dtype))

    slot, distinct = _unit_slots(unit_index, valid)
    unit_grads = {}
    sq_norm = 0.0
    for name, g in per_sample.items():
        flat = g.reshape(M, B, -1)
        # record-level: every row is its own unit, no summing needed
        ug = flat if distinct else unit_sums(flat, slot, valid)
        unit_grads[name] = ug
        sq_norm += torch.linalg.vector_norm(ug, dim=2).square()
    # Opacus's flat clipping factor; empty slots have zero gradient and contribute nothing.
    factor = (max_grad_norm / (sq_norm.sqrt() + 1e-6)).clamp(max=1.0)
    summed = {
        name: torch.einsum("ms,msp->mp", factor, ug).reshape(params[name].shape) for name, ug in unit_grads.items()
    }
    return _noisy_mean(summed, noise_multiplier, max_grad_norm, expected_batch_units, generator)


def _check_dp_args(max_grad_norm: float, noise_multiplier: float, unit_index: torch.Tensor, x, y) -> None:
    if not (max_grad_norm > 0):
        raise ValueError(f"max_grad_norm must be > 0, got {max_grad_norm!r}")
    if not (noise_multiplier >= 0) or (noise_multiplier > 0 and math.isinf(max_grad_norm)):
        raise ValueError(
            f"noise_multiplier must be >= 0 with a finite max_grad_norm, got "
            f"σ={noise_multiplier!r}, C={max_grad_norm!r}"
        )
    if unit_index.dim() != 2:
        raise ValueError(f"unit_index must be (models, batch), got shape {tuple(unit_index.shape)}")
    M, B = unit_index.shape
    if x.shape[:2] != (M, B) or y.shape[:2] != (M, B):
        raise ValueError(f"x {tuple(x.shape)} and y {tuple(y.shape)} must start with (models, batch) = {(M, B)}")


def _unit_slots(unit_index: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """Per model, slot s = rank of the unit among that model's unit ids in the batch (a batch
    of B rows has at most B units; padding rows join no slot), and whether every valid row is
    its own unit (record-level DP: no summing needed)."""
    import torch

    M, B = unit_index.shape
    device = unit_index.device
    stride = int(unit_index.max().clamp(min=0).item()) + 1
    key = torch.where(valid, unit_index, stride) + torch.arange(M, device=device)[:, None] * (stride + 1)
    uniq, inv = torch.unique(key.reshape(-1), return_inverse=True)
    model_start = torch.searchsorted(uniq, torch.arange(M, device=device) * (stride + 1))
    slot = inv.reshape(M, B) - model_start[:, None]
    n_pad_keys = int((~valid).any(dim=1).sum())
    return slot, uniq.numel() == int(valid.sum()) + n_pad_keys


def _noisy_mean(summed: dict, noise_multiplier: float, max_grad_norm: float, expected_batch_units, generator) -> dict:
    """(Σ_u ĝ_u + N(0, σ² C² I)) / E_m for every parameter, noise drawn in ``summed``'s order."""
    import torch

    first = next(iter(summed.values()))
    M, device, dtype = first.shape[0], first.device, first.dtype
    expected = torch.as_tensor(expected_batch_units, device=device, dtype=dtype).reshape(-1)
    if expected.numel() not in (1, M) or not bool((expected > 0).all()):
        raise ValueError(
            f"expected_batch_units must be > 0, a scalar or one per model ({M}), got {expected_batch_units!r}"
        )
    expected = expected.expand(M)
    out = {}
    for name, s in summed.items():
        if noise_multiplier > 0:
            noise = torch.randn(s.shape, generator=generator, device=device, dtype=s.dtype)
            s = s + noise * (noise_multiplier * max_grad_norm)
        out[name] = s / expected.reshape((M,) + (1,) * (s.dim() - 1))
    return out


#: Parameter-free elementwise layers (``torch.nn`` names) that a :func:`linear_chain` may
#: hold between its Linear layers.
_ELEMENTWISE = ("ReLU", "LeakyReLU", "ELU", "GELU", "SiLU", "Tanh", "Sigmoid", "Identity")


def linear_chain(model: torch.nn.Module) -> list | None:
    """The model as a chain of ``("linear", weight_name, bias_name | None)`` and
    ``("fn", module)`` steps, when it is a feed-forward stack of ``nn.Linear`` layers and
    parameter-free elementwise activations on flat inputs (an ``nn.Sequential``, or a module
    whose only child is one, as :class:`~mia_audit.train.families.MLP`); else None. Dropout with
    p > 0 is refused (its masks are drawn per sample by the general path)."""
    import torch

    from mia_audit.train.families import MLP

    elementwise = tuple(getattr(torch.nn, name) for name in _ELEMENTWISE)
    prefix, seq = "", model
    if isinstance(model, MLP):
        prefix, seq = "net.", model.net
    if not isinstance(seq, torch.nn.Sequential):
        return None
    chain = []
    for name, layer in seq.named_children():
        if isinstance(layer, torch.nn.Linear):
            chain.append(("linear", f"{prefix}{name}.weight", None if layer.bias is None else f"{prefix}{name}.bias"))
        elif isinstance(layer, torch.nn.Dropout) and layer.p == 0:
            continue
        elif isinstance(layer, elementwise):
            chain.append(("fn", layer))
        else:
            return None
    if not chain or chain[0][0] != "linear":
        return None
    return chain


def dp_gradients_linear(
    chain: list,
    params: Mapping[str, torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    unit_index: torch.Tensor,
    loss_rows: Callable,
    max_grad_norm: float,
    noise_multiplier: float,
    expected_batch_units: float | torch.Tensor,
    generator: torch.Generator | None = None,
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """:func:`dp_gradients` for a :func:`linear_chain` (an MLP), without per-sample gradients.

    Same gradients (to floating-point rounding; checked against :func:`dp_gradients` and
    autograd by hand in ``tests/dp/test_dp.py``), same noise draws. A Linear layer's gradient
    for row i is the outer product ``δ_i a_iᵀ`` of the gradient δ_i of the loss with respect
    to its output and its input a_i (bias: δ_i), so one batched backward pass gives every
    row's δ and a, and (Goodfellow 2015; Li et al. 2022, "ghost clipping"; Bu et al. 2023
    for the book-keeping)::

        ‖g_u‖²   = Σ_layers Σ_{i,j ∈ u} (δ_i·δ_j) (a_i·a_j + 1)        (per-unit norm, Gram form)
        Σ_u ĝ_u  = Σ_i c_{u(i)} δ_i a_iᵀ = (c ⊙ δ)ᵀ a                    (clipped sum, one matmul)

    with c_u = min(1, C / (‖g_u‖ + 10⁻⁶)). Record-level DP (every row its own unit) needs
    only the diagonal, ‖δ_i‖² (‖a_i‖² + 1); at patient level the rows are grouped by unit
    first, so the Gram matrices are per unit, (K × K) for a unit of K rows. Memory:
    O(M·B·width) activations instead of M·B·(parameters) per-sample gradients.
    ``benchmarks/bench_dp.py --preset config/presets/dp_pbc.yaml`` times it in the workflow's
    trainer.

    ``loss_rows(logits (M, B, C), y) -> (M, B)`` per-row losses. ``x`` (M, B, features).
    Returns ``(gradients, per-row losses (M, B), detached)``.
    """
    import torch

    _check_dp_args(max_grad_norm, noise_multiplier, unit_index, x, y)
    M, B = unit_index.shape
    first = next(iter(params.values()))
    device, dtype = first.device, first.dtype
    unit_index = unit_index.to(device)
    valid = unit_index >= 0
    weight = valid.to(dtype)
    inputs, outputs = [], []
    with torch.enable_grad():
        a = x.to(dtype)
        for step in chain:
            if step[0] == "fn":
                a = step[1](a)
                continue
            _, wname, bname = step
            z = torch.bmm(a, params[wname].detach().transpose(1, 2))
            if bname is not None:
                z = z + params[bname].detach()[:, None, :]
            if not z.requires_grad:  # the first layer: its output is where the graph starts
                z.requires_grad_(True)
            inputs.append(a.detach())
            outputs.append(z)
            a = z
        losses = loss_rows(a, y)
        deltas = torch.autograd.grad((losses * weight).sum(), outputs)

    slot, distinct = _unit_slots(unit_index, valid)
    linear = [step for step in chain if step[0] == "linear"]
    if distinct:
        sq_row = torch.zeros(M, B, device=device, dtype=dtype)
        for (_, _, bname), a_in, d in zip(linear, inputs, deltas, strict=True):
            sq_row += d.square().sum(-1) * (a_in.square().sum(-1) + (bname is not None))
        row_factor = (max_grad_norm / (sq_row.sqrt() + 1e-6)).clamp(max=1.0)
    else:
        # rows grouped by unit, (M, S, K) row indices (K = most rows of one unit; B = a zero row)
        S = int(slot[valid].max()) + 1
        key = torch.where(valid, slot, S)
        order = torch.argsort(key * B + torch.arange(B, device=device), dim=1)
        sorted_key = torch.gather(key, 1, order)
        counts = torch.zeros(M, S + 1, dtype=torch.long, device=device).scatter_add_(1, key, torch.ones_like(key))
        start = torch.cumsum(counts, 1) - counts
        rank = torch.arange(B, device=device)[None, :] - torch.gather(start, 1, sorted_key)
        K = int(counts[:, :S].max())
        table = torch.full((M, S + 1, K + 1), B, dtype=torch.long, device=device)
        table[torch.arange(M, device=device)[:, None], sorted_key, rank.clamp(max=K)] = order
        # flat row numbers in an (M·(B + 1), F) table whose last row per model is zero
        flat_rows = (table[:, :S, :K] + torch.arange(M, device=device)[:, None, None] * (B + 1)).reshape(-1)

        def grouped(t):  # (M, B, F) -> (M * S, K, F), zero rows where a unit has fewer than K rows
            padded = torch.cat([t, t.new_zeros(M, 1, t.shape[-1])], 1).reshape(M * (B + 1), -1)
            return padded.index_select(0, flat_rows).reshape(M * S, K, -1)

        sq_unit = torch.zeros(M * S, device=device, dtype=dtype)
        for (_, _, bname), a_in, d in zip(linear, inputs, deltas, strict=True):
            du, au = grouped(d), grouped(a_in)
            gram_a = torch.bmm(au, au.transpose(1, 2)) + (bname is not None)
            sq_unit += (torch.bmm(du, du.transpose(1, 2)) * gram_a).sum((1, 2))
        unit_factor = (max_grad_norm / (sq_unit.clamp(min=0).sqrt() + 1e-6)).clamp(max=1.0).reshape(M, S)
        row_factor = torch.gather(unit_factor, 1, torch.where(valid, slot, 0))
    row_factor = row_factor * weight

    summed = {}
    for (_, wname, bname), a_in, d in zip(linear, inputs, deltas, strict=True):
        cd = d * row_factor[:, :, None]
        summed[wname] = torch.bmm(cd.transpose(1, 2), a_in)
        if bname is not None:
            summed[bname] = cd.sum(1)
    # the noise in the parameters' order, as dp_gradients draws it
    summed = {name: summed[name] for name in params if name in summed}
    if set(summed) != set(params):
        raise ValueError(f"linear_chain misses parameters {sorted(set(params) - set(summed))}")
    return _noisy_mean(summed, noise_multiplier, max_grad_norm, expected_batch_units, generator), losses.detach()


def unit_sums(flat: torch.Tensor, slot: torch.Tensor, valid: torch.Tensor, method: str | None = None) -> torch.Tensor:
    """Per-unit sums of per-row gradients: ``out[m, s] = Σ_{i: slot[m, i] = s, valid[m, i]} flat[m, i]``.

    ``flat`` (M, B, P), ``slot`` (M, B) in 0 … B−1, ``valid`` (M, B) bool; returns
    (M, S, P) with S = 1 + the largest slot of a valid row (0 without valid rows). Invalid
    (padding) rows never reach a unit, whatever their values. ``method`` ``"index_add"``
    adds each row into its unit's row of a flat (M·S, P) table (``index_add_``, O(M·B·P));
    ``"matmul"`` multiplies by the (M, S, B) 0/1 assignment matrix (O(M·S·B·P),
    deterministic on CUDA, where ``index_add_`` uses atomics). Default: index_add on CPU,
    matmul elsewhere. At patient level a PBC batch has B ≈ 200 rows of S ≈ 30 patients.
    """
    import torch

    if method is None:
        method = "index_add" if flat.device.type == "cpu" else "matmul"
    if method not in ("index_add", "matmul"):
        raise ValueError(f"method must be 'index_add' or 'matmul', got {method!r}")
    M, B, P = flat.shape
    S = int(torch.where(valid, slot, -1).max()) + 1 if B else 0
    if method == "matmul":
        assign = (slot[:, None, :] == torch.arange(S, device=flat.device)[None, :, None]) & valid[:, None, :]
        return torch.bmm(assign.to(flat.dtype), torch.where(valid[:, :, None], flat, 0.0))
    offset = torch.arange(M, device=flat.device)[:, None] * S
    index = torch.where(valid, slot + offset, M * S).reshape(-1)  # padding rows: one discarded row
    out = torch.zeros(M * S + 1, P, dtype=flat.dtype, device=flat.device)
    out.index_add_(0, index, flat.reshape(M * B, P))
    return out[: M * S].view(M, S, P)


class PoissonBatch(NamedTuple):
    """Padded Poisson batch for M models.

    rows : (M, B) long, position of each batch row in the model's record list; -1 = padding.
    unit_index : (M, B) long, the privacy unit of each row; -1 = padding.
    """

    rows: torch.Tensor
    unit_index: torch.Tensor


def poisson_batches(
    record_units: torch.Tensor,
    sample_rate: float,
    generator: torch.Generator | None = None,
    min_size: int = 1,
) -> PoissonBatch:
    """Draw one Poisson-sampled batch of privacy units per model, expanded to record rows.

    ``record_units[m, r]`` is the unit id (≥ 0) of model m's r-th training record, -1 for
    padding (models with fewer records). Each unit of each model enters the batch
    independently with probability q = ``sample_rate`` (Poisson sampling, as Opacus's
    ``UniformWithReplacementSampler``), bringing all its records along. Unit ids need not
    be contiguous (e.g. global patient indices); the draw is over ids 0 … max id.

    Returns a :class:`PoissonBatch` padded to the largest batch among the models (at least
    ``min_size`` rows), rows in their original order.
    """
    import torch

    if not (0 < sample_rate <= 1):
        raise ValueError(f"sample_rate must be in (0, 1], got {sample_rate!r}")
    if record_units.dim() != 2:
        raise ValueError(f"record_units must be (models, records), got shape {tuple(record_units.shape)}")
    gen_device = generator.device if generator is not None else record_units.device
    units = record_units.to(gen_device).long()
    M, R = units.shape
    if R == 0:
        empty = torch.full((M, max(int(min_size), 1)), -1, dtype=torch.long, device=record_units.device)
        return PoissonBatch(empty, empty.clone())
    n_ids = int(units.max().clamp(min=0).item()) + 1
    draw = torch.rand((M, n_ids), generator=generator, device=gen_device) < sample_rate
    sel = (units >= 0) & torch.gather(draw, 1, units.clamp(min=0))
    counts = sel.sum(dim=1)
    size = max(int(counts.max().item()), int(min_size))
    # Selected row r of model m goes to column (number of selected rows before r), in
    # order; unselected rows go to a spill column that is dropped.
    col = torch.where(sel, sel.cumsum(dim=1) - 1, size)
    rows = torch.full((M, size + 1), -1, dtype=torch.long, device=gen_device)
    rows.scatter_(1, col, torch.arange(R, device=gen_device).expand(M, R))
    rows = rows[:, :size]
    unit_index = torch.where(rows >= 0, torch.gather(units, 1, rows.clamp(min=0)), -1)
    dev = record_units.device
    return PoissonBatch(rows.to(dev), unit_index.to(dev))
