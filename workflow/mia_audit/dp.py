"""Differential privacy for ensembles of target models: accounting, DP-SGD, MIA bounds.

Four parts:

* **Accounting** (:func:`validate_dp`, :func:`noise_multiplier_for`,
  :func:`achieved_epsilon`): thin wrappers around Opacus's accountants that turn a
  configured (ε, δ) budget into a DP-SGD noise multiplier σ and back.
* **DP-SGD for a stacked ensemble** (:func:`dp_gradients`, :func:`poisson_batches`,
  :func:`sample_loss_fn`): the Opacus recipe (Abadi et al. 2016; Yousefpour et al. 2021)
  written with ``torch.func`` so that M models, each with its own Poisson batch of its own
  member records, are processed in one vectorised call. The privacy unit is either a record
  (record-level DP) or a patient (patient-level DP: a patient's records are summed into one
  gradient before clipping, so the patient's whole contribution is bounded by C).
* **The bound on membership inference**: the largest AUC any attack can reach against a
  DP training run. :func:`profile_auc_bound` takes it from the run's whole privacy profile
  (dp-accounting's privacy-loss distribution of the Poisson-subsampled Gaussian, for a
  group of k units as a mixture of Gaussians, :func:`group_pld`), turned into an AUC by
  :func:`tradeoff_auc_bound`; :func:`max_auc_bound` and :func:`group_privacy` are the
  single-(ε, δ)-point bound and the classic group statement (the reported fallback).
* **Violations** (:func:`violation_pvalues`, :func:`holm_adjust`): a noncentral-t test of
  each record's AUC against its bound, adjusted across an experiment's records.

Accountant choice: dp-accounting's PLD (Google; Doroshenko et al. 2022 "Connect the dots")
gives δ(ε) for every ε with pessimistic rounding (each δ an upper bound), composes by FFT in
about a second for a thousand steps, and has the mixture-of-Gaussians loss that represents
a group exactly. Opacus's PRV accountant gives ε(δ) for the plain subsampled Gaussian only
(no groups) and exhausted memory at large ε; Opacus's RDP accountant stays the calibration
of σ for training (fast and robust up to ε = 10⁴), and the PLD ε at the same σ is smaller.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
from scipy.special import expit

if TYPE_CHECKING:  # torch is imported by the DP-SGD functions only: the audit's DP bounds do without it
    import torch

ArrayLike = float | np.ndarray

# ---------------------------------------------------------------------------
# Accounting
# ---------------------------------------------------------------------------

#: RDP orders used by :func:`noise_multiplier_for` and :func:`achieved_epsilon`.
#: Opacus's default grid (1.1 … 63) plus orders down to 1.001 and up to 256. At large ε
#: (≳ 100) the optimal order sits at the grid's lower edge (1.1); without the extra small
#: orders the ε → σ conversion is loose (at ε = 1000, q = 0.08, 250 steps Opacus's grid
#: demands σ = 0.159 where the widened grid proves σ = 0.131 suffices). The large orders
#: serve very small ε over many steps.
RDP_ALPHAS: tuple = tuple(
    sorted(
        {float(1.0 + x) for x in np.geomspace(1e-3, 0.1, 20, endpoint=False)}
        | {1.0 + x / 10.0 for x in range(1, 100)}
        | {float(a) for a in range(12, 64)}
        | {64.0, 80.0, 96.0, 128.0, 192.0, 256.0}
    )
)

#: Above this ε the PRV accountant's discretisation grows until it exhausts memory
#: (observed at ε = 1000, q = 0.08, 250 steps), so it is refused there.
PRV_MAX_EPSILON = 100.0

_ACCOUNTANTS = ("rdp", "prv", "gdp")


def _is_inf_spec(value) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in {"inf", "+inf", "infinity", ".inf"}
    try:
        return math.isinf(float(value)) and float(value) > 0
    except (TypeError, ValueError):
        return False


def validate_dp(epsilon, delta=None, n_units: int | None = None) -> tuple[float, float]:
    """Check and normalise a DP budget.

    Parameters
    ----------
    epsilon : float or "inf"
        Privacy loss ε > 0. ``"inf"`` (or ``float("inf")``) means clipping without noise:
        no formal guarantee.
    delta : float, optional
        0 < δ < 1. Defaults to ``1 / n_units``, where ``n_units`` is the number of privacy
        units in one model's training set (records for record-level DP, patients for
        patient-level DP).
    n_units : int, optional
        Required when ``delta`` is None.

    Returns
    -------
    (epsilon, delta) as floats (ε may be ``inf``).

    Raises
    ------
    ValueError naming ``dp.epsilon`` or ``dp.delta`` and the offending value.
    """
    if _is_inf_spec(epsilon):
        eps = math.inf
    else:
        try:
            eps = float(epsilon)
        except (TypeError, ValueError):
            raise ValueError(f"dp.epsilon must be a positive number or 'inf', got {epsilon!r}") from None
        if not math.isfinite(eps) or eps <= 0:
            raise ValueError(f"dp.epsilon must be a positive finite number or 'inf', got {epsilon!r}")
    if delta is None:
        if n_units is None or int(n_units) < 1:
            raise ValueError(
                f"dp.delta is unset and the number of privacy units is {n_units!r}; "
                "set dp.delta explicitly or give n_units >= 1 (default δ = 1/n_units)"
            )
        dlt = 1.0 / int(n_units)
        if dlt >= 1.0:
            raise ValueError(
                f"dp.delta defaults to 1/n_units = {dlt!r}, which must be < 1; "
                "set dp.delta explicitly (n_units must be at least 2)"
            )
    else:
        try:
            dlt = float(delta)
        except (TypeError, ValueError):
            raise ValueError(f"dp.delta must be a number in (0, 1), got {delta!r}") from None
        if not (0.0 < dlt < 1.0):
            raise ValueError(f"dp.delta must lie strictly between 0 and 1, got {delta!r}")
    return eps, dlt


def _accountant_kwargs(accountant: str) -> dict:
    if accountant not in _ACCOUNTANTS:
        raise ValueError(f"dp.accountant must be one of {_ACCOUNTANTS}, got {accountant!r}")
    return {"alphas": list(RDP_ALPHAS)} if accountant == "rdp" else {}


def achieved_epsilon(
    noise_multiplier: float,
    sample_rate: float,
    steps: int,
    delta: float,
    accountant: str = "rdp",
) -> float:
    """ε spent by ``steps`` DP-SGD steps with Poisson ``sample_rate`` and noise σ.

    Uses the Opacus accountant's ``history`` ``[(σ, q, steps)]`` and ``get_epsilon(δ)``
    (for RDP with the widened order grid :data:`RDP_ALPHAS`). σ = 0 gives ``inf``. For RDP
    the curve over the orders (Opacus's ``compute_rdp``, what ``get_epsilon`` sums over the
    history) does not depend on δ and is cached per (σ, q, T), so many δ (one per model, as
    :func:`mia_audit.dp_training.model_guarantees` asks) cost one curve.
    """
    kwargs = _accountant_kwargs(accountant)
    if noise_multiplier <= 0:
        return math.inf
    if accountant == "rdp":
        from opacus.accountants.analysis import rdp as rdp_analysis

        curve = _rdp_curve(float(noise_multiplier), float(sample_rate), int(steps))
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Optimal order is the")
            eps, _ = rdp_analysis.get_privacy_spent(orders=list(RDP_ALPHAS), rdp=curve, delta=float(delta))
        return float(eps)
    from opacus.accountants import create_accountant

    acc = create_accountant(mechanism=accountant)
    acc.history = [(float(noise_multiplier), float(sample_rate), int(steps))]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Optimal order is the")
        return float(acc.get_epsilon(delta=float(delta), **kwargs))


@functools.lru_cache(maxsize=256)
def _rdp_curve(sigma: float, q: float, steps: int) -> np.ndarray:
    from opacus.accountants.analysis import rdp as rdp_analysis

    return np.asarray(rdp_analysis.compute_rdp(q=q, noise_multiplier=sigma, steps=steps, orders=list(RDP_ALPHAS)))


def noise_multiplier_for(
    epsilon: float,
    delta: float,
    sample_rate: float,
    steps: int,
    accountant: str = "rdp",
    rel_tolerance: float = 0.01,
) -> float:
    """Noise multiplier σ so that ``steps`` Poisson-sampled DP-SGD steps are (ε, δ)-DP.

    Calls :func:`opacus.accountants.utils.get_noise_multiplier` (a doubling-then-bisection
    search on σ) with a tolerance relative to ε (Opacus's default is an absolute 0.01,
    i.e. 10 % at ε = 0.1), then checks the result with :func:`achieved_epsilon`: the
    returned σ gives ε_achieved ≤ ε and ε_achieved ≥ (1 − rel_tolerance)·ε.

    Accountant choice: **RDP** (Mironov 2017; Mironov, Talwar & Zhang 2019) with the
    widened order grid :data:`RDP_ALPHAS` is the default. It is fast (≈ 1 s per search),
    works from ε = 0.1 to ε = 10⁴, and with orders down to 1.001 it stays tight at large ε,
    where Opacus's default grid hits its smallest order and overstates the noise needed.
    The PRV accountant (Gopi et al. 2021) is tighter at small ε but slower (≈ 17 s at
    ε = 100) and exhausted memory at ε = 1000 in our tests, so it is refused above
    :data:`PRV_MAX_EPSILON`. ε = inf returns σ = 0 (clipping only).

    Raises
    ------
    ValueError naming ``dp.epsilon`` when the budget cannot be met (σ would exceed 10⁶),
    with what to change (larger ε or δ, fewer epochs, smaller batch).
    """
    kwargs = _accountant_kwargs(accountant)
    if math.isinf(epsilon) and epsilon > 0:
        return 0.0
    if not (epsilon > 0) or not (0 < delta < 1):
        raise ValueError(f"dp.epsilon must be > 0 and dp.delta in (0, 1), got ε={epsilon!r}, δ={delta!r}")
    if not (0 < sample_rate <= 1) or int(steps) < 1:
        raise ValueError(f"sample_rate must be in (0, 1] and steps >= 1, got {sample_rate!r}, {steps!r}")
    if accountant == "prv" and epsilon > PRV_MAX_EPSILON:
        raise ValueError(
            f"dp.epsilon = {epsilon!r} is above {PRV_MAX_EPSILON} where the 'prv' accountant "
            "runs out of memory; use dp.accountant = 'rdp'"
        )
    from opacus.accountants.utils import get_noise_multiplier

    hint = (
        f"dp.epsilon = {epsilon!r} (δ = {delta!r}) is not reachable with sample rate "
        f"{sample_rate!r} over {int(steps)} steps; raise dp.epsilon or dp.delta, train for "
        "fewer epochs, or use a smaller batch (lower sample rate)"
    )
    if accountant == "rdp":
        # As σ → ∞ the RDP of every order → 0, leaving the conversion term
        # −(log δ + log α)/(α − 1) + log((α − 1)/α) (Balle et al. 2020): no σ gets below it.
        a = np.asarray(RDP_ALPHAS)
        floor = float(np.min(-(np.log(delta) + np.log(a)) / (a - 1) + np.log((a - 1) / a)))
        if epsilon <= 1.01 * floor:
            raise ValueError(
                f"{hint}: with δ = {delta!r} no noise level brings the RDP accountant below ε ≈ {floor:.3g}"
            )
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Optimal order is the")
            sigma = get_noise_multiplier(
                target_epsilon=float(epsilon),
                target_delta=float(delta),
                sample_rate=float(sample_rate),
                steps=int(steps),
                accountant=accountant,
                epsilon_tolerance=rel_tolerance * float(epsilon),
                **kwargs,
            )
    except ValueError as err:
        raise ValueError(f"{hint} ({err})") from err
    got = achieved_epsilon(sigma, sample_rate, steps, delta, accountant)
    if not (got <= epsilon * (1 + 1e-9) and got >= (1 - rel_tolerance) * epsilon):
        raise ValueError(f"{hint}: the search ended at σ = {sigma:.4g} with ε = {got:.4g}")
    return float(sigma)


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
    whose only child is one, as :class:`~mia_audit.models.MLP`); else None. Dropout with
    p > 0 is refused (its masks are drawn per sample by the general path)."""
    import torch

    from .models import MLP

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
    autograd by hand in ``tests/test_dp.py``), same noise draws. A Linear layer's gradient
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


# ---------------------------------------------------------------------------
# The bound on membership inference
# ---------------------------------------------------------------------------


def max_auc_bound(epsilon: ArrayLike, delta: ArrayLike) -> ArrayLike:
    """Largest ROC AUC any membership-inference attack can reach against (ε, δ)-DP.

    An (ε, δ)-DP mechanism's hypothesis-testing trade-off is at least (Kairouz, Oh &
    Viswanath 2015; Dong, Roth & Su 2019, Prop. 2.5)::

        f(α) = max(0, 1 − δ − e^ε α, e^{−ε}(1 − δ − α)),

    so every attack has TPR(α) ≤ 1 − f(α) at FPR α. The two lines cross at
    α* = (1 − δ)/(1 + e^ε) (where f(α*) = α*) and f vanishes from α = 1 − δ, giving

        ∫₀¹ f(α) dα = (1 − δ)α* − e^ε α*²/2 + e^{−ε}(1 − δ − α*)²/2 = (1 − δ)² / (1 + e^ε)

        AUC ≤ 1 − (1 − δ)² / (1 + e^ε) = 1 − (1 − δ)² · expit(−ε).

    Equals 0.5 at ε = δ = 0, tends to 1 as ε → ∞ or δ → 1, increasing in both.
    Vectorised (NumPy broadcasting); ε may be ``inf``; δ is clipped to [0, 1].
    """
    eps = np.asarray(epsilon, dtype=float)
    dlt = np.clip(np.asarray(delta, dtype=float), 0.0, 1.0)
    if np.any(eps < 0):
        raise ValueError(f"epsilon must be >= 0, got {epsilon!r}")
    out = 1.0 - (1.0 - dlt) ** 2 * expit(-eps)
    return out if out.ndim else float(out)


def group_privacy(epsilon: ArrayLike, delta: ArrayLike, k: ArrayLike) -> tuple:
    """(ε, δ)-DP for one unit implies (kε, k·e^{(k−1)ε}·δ)-DP for groups of k units.

    Dwork & Roth 2014, Thm 2.2 (stated for δ = 0) generalised as in Vadhan 2017, Lemma
    2.2; applies to a patient with k records under record-level DP. Vectorised over ε, δ,
    k (k ≥ 1); δ_k is capped at 1 (0 stays 0 even where e^{(k−1)ε} overflows).
    """
    eps = np.asarray(epsilon, dtype=float)
    dlt = np.asarray(delta, dtype=float)
    kk = np.asarray(k, dtype=float)
    if np.any(kk < 1):
        raise ValueError(f"group size k must be >= 1, got {k!r}")
    eps_k = kk * eps
    with np.errstate(over="ignore", invalid="ignore"):
        growth = np.exp(np.where(kk == 1, 0.0, (kk - 1) * eps))  # k = 1 exact even at ε = inf
        dlt_k = np.where(dlt > 0, kk * growth * dlt, 0.0)
    dlt_k = np.minimum(dlt_k, 1.0)
    if eps_k.ndim == 0 and dlt_k.ndim == 0:
        return float(eps_k), float(dlt_k)
    return eps_k, dlt_k


def patient_bounds(epsilon: float, delta: float, n_records_per_patient: ArrayLike, level: str) -> np.ndarray:
    """AUC bound per patient for a training run that is (ε, δ)-DP at ``level``.

    ``level = "patient"``: the guarantee covers the patient's whole data, bound =
    :func:`max_auc_bound` (ε, δ) for everyone. ``level = "record"``: a patient with k
    records gets only the group guarantee (kε, k e^{(k−1)ε} δ) (:func:`group_privacy`), bound
    ≤ 1. ε = inf gives 1.
    """
    k = np.asarray(n_records_per_patient)
    if level == "patient":
        return np.broadcast_to(np.asarray(max_auc_bound(epsilon, delta)), k.shape).astype(float)
    if level == "record":
        eps_k, dlt_k = group_privacy(epsilon, delta, k)
        return np.minimum(np.asarray(max_auc_bound(eps_k, dlt_k), dtype=float), 1.0)
    raise ValueError(f"dp.level must be 'record' or 'patient', got {level!r}")


# ---------------------------------------------------------------------------
# The bound from the whole privacy profile (PLD accounting), for groups too
# ---------------------------------------------------------------------------

#: Profile bounds at or above this are *saturated*: every larger group of the same run is
#: reported as 1 (the trivial bound) without computing it (it lies in [this, 1]).
AUC_SATURATED = 1.0 - 1e-6

#: The profile is evaluated at this many ε from 0 up to where δ(ε) < 10⁻¹⁵ (at most
#: :data:`PROFILE_MAX_EPSILON`).
PROFILE_POINTS = 1000

#: Lines with a larger ε are left out of the envelope: they are positive only for
#: α < e^{−ε}, so leaving them out adds less than 2·e^{−50} to the bound.
PROFILE_MAX_EPSILON = 50.0

#: Most distinct group sizes whose profile bound one call of :func:`profile_auc_bounds` computes.
MAX_GROUP_SIZES = 100

#: Privacy-loss discretisation, as a share of the per-step loss scale (see :func:`pld_interval`).
PLD_RELATIVE_INTERVAL = 0.05


def tradeoff_auc_bound(epsilons, deltas, deltas_reverse=None) -> float:
    """AUC bound from a set of (ε_i, δ_i) guarantees that one mechanism meets at once.

    Each pair bounds the trade-off function β(α) (the smallest type-II error of any test of
    membership at type-I error α) from below (Kairouz, Oh & Viswanath 2015; Dong, Roth & Su
    2022, Prop. 2.5), so a mechanism that meets every pair obeys the envelope::

        f(α) = max(0, max_i max(1 − δ_i − e^{ε_i} α, e^{−ε_i} (1 − δ'_i − α)))

        AUC = 1 − ∫₀¹ β(α) dα ≤ 1 − ∫₀¹ f(α) dα.

    δ_i bounds the hockey-stick divergence H_{e^ε}(P‖Q) of the pair (P, Q) the test tells
    apart and δ'_i = ``deltas_reverse`` the reverse one H_{e^ε}(Q‖P); an (ε, δ)-DP statement
    bounds both, so δ' = δ by default. With the whole profile of both directions, f is the
    pair's trade-off function itself (Dong, Roth & Su 2022, Prop. 2.12), and the bound is
    the AUC of the most powerful test; a finite grid of ε gives an envelope below f and so a
    valid, slightly larger bound. f is convex and piecewise linear: its pieces are found
    exactly (lines sorted by slope, a monotone-stack upper hull) and integrated in closed
    form, so the result is exact for the pairs given. One pair gives :func:`max_auc_bound`.
    Pairs with ε > :data:`PROFILE_MAX_EPSILON`, ε < 0, δ ≥ 1 or NaN are left out (which can
    only enlarge the bound); no usable pair gives 1.
    """
    e = np.asarray(epsilons, dtype=float).ravel()
    d = np.asarray(deltas, dtype=float).ravel()
    d2 = d if deltas_reverse is None else np.asarray(deltas_reverse, dtype=float).ravel()
    if not (e.shape == d.shape == d2.shape):
        raise ValueError(f"epsilons and deltas must have the same length, got {e.size}, {d.size} and {d2.size}")
    usable = np.isfinite(e) & (e >= 0) & (e <= PROFILE_MAX_EPSILON)
    ok1, ok2 = usable & np.isfinite(d) & (d < 1), usable & np.isfinite(d2) & (d2 < 1)
    c1, c2 = 1.0 - np.clip(d[ok1], 0.0, 1.0), 1.0 - np.clip(d2[ok2], 0.0, 1.0)
    if not ok1.any() and not ok2.any():
        return 1.0
    slope = np.concatenate([-np.exp(e[ok1]), -np.exp(-e[ok2]), [0.0]])
    icpt = np.concatenate([c1, c2 * np.exp(-e[ok2]), [0.0]])
    order = np.lexsort((icpt, slope))
    slope, icpt = slope[order], icpt[order]
    top = np.r_[slope[1:] != slope[:-1], True]  # per slope, the largest intercept
    slope, icpt = slope[top], icpt[top]

    def cross(i: int, j: int) -> float:  # α where line j (the shallower) overtakes line i
        return (icpt[i] - icpt[j]) / (slope[j] - slope[i])

    hull: list[int] = []
    for j in range(slope.size):
        while len(hull) >= 2 and cross(hull[-2], j) <= cross(hull[-2], hull[-1]):
            hull.pop()
        hull.append(j)
    h = np.asarray(hull)
    knots = np.array([cross(a, b) for a, b in zip(hull[:-1], hull[1:], strict=True)])
    left = np.clip(np.r_[-np.inf, knots], 0.0, 1.0)
    right = np.clip(np.r_[knots, np.inf], 0.0, 1.0)
    area = np.sum(icpt[h] * (right - left) + slope[h] * (right**2 - left**2) / 2.0)
    return float(min(1.0, max(0.5, 1.0 - area)))


def pld_interval(noise_multiplier: float, sample_rate: float, group_size: int = 1) -> float:
    """Discretisation interval of the privacy loss for :func:`profile_auc_bound`.

    :data:`PLD_RELATIVE_INTERVAL` times the per-step loss scale s, with
    s² = χ²(P‖Q) = Σ_{i,j} p_i p_j e^{ij/σ²} − 1 the χ²-divergence of the step's mixture
    P = Σ_j p_j N(j, σ²) from Q = N(0, σ²) (p = Binomial(k, q)), i.e. the variance of the
    likelihood ratio (≈ the loss variance when losses are small). The composed loss after T
    steps spans ≈ √T·s, so the number of grid points, hence the time, hardly depends on σ,
    q or k; clipped to [10⁻⁶, 0.1]. Coarser is still valid (pessimistic), only less tight.
    """
    from scipy.special import logsumexp
    from scipy.stats import binom

    j = np.arange(int(group_size) + 1, dtype=float)
    with np.errstate(divide="ignore"):
        logp = binom.logpmf(j, int(group_size), float(sample_rate))
    log_m2 = logsumexp(logp[:, None] + logp[None, :] + np.outer(j, j) / float(noise_multiplier) ** 2)
    chi2 = math.expm1(log_m2) if log_m2 < 700 else math.inf
    return float(np.clip(PLD_RELATIVE_INTERVAL * math.sqrt(max(chi2, 0.0)), 1e-6, 0.1))


def group_pld(noise_multiplier: float, sample_rate: float, steps: int, group_size: int = 1, interval=None):
    """Privacy-loss distribution of ``steps`` DP-SGD steps for a group of k units.

    With Poisson sampling at rate q, each of the group's k units enters a step's batch on its
    own, so the number J that enters is Binomial(k, q); each contributes a clipped gradient
    of norm ≤ C, and the step adds N(0, σ²C²I). The worst case (all k gradients aligned)
    is the mixture of Gaussians pair P = Σ_j Binomial(j; k, q) N(j, σ²) vs Q = N(0, σ²), in
    units of C, which dominates the step for the group (Ganesh 2024, "Tight group-level DP
    guarantees for DP-SGD with sampling via mixture of Gaussians mechanisms", arXiv:2401.10294,
    Thm. for Poisson sampling; vectors reduce to their norms by Choquette-Choo, Ganesh,
    Steinke & Thakurta 2023, arXiv:2310.15526, Cor. 4.7). k = 1 is the usual subsampled
    Gaussian. The pair is built with dp-accounting's ``MixtureGaussianPrivacyLoss``
    (connect-the-dots discretisation, pessimistic, add and remove adjacency; for k = 1 the
    identical pair from ``from_gaussian_mechanism`` with ``sampling_prob`` = q) and composed
    ``steps`` times; ``interval`` defaults to :func:`pld_interval`.
    """
    from dp_accounting.pld import privacy_loss_distribution as pld_lib
    from scipy.stats import binom

    k, q = int(group_size), float(sample_rate)
    if interval is None:
        interval = pld_interval(noise_multiplier, q, k)
    if k == 1:  # the same pair, with the Gaussian's closed-form inverse (≈ 40× faster to build)
        single = pld_lib.from_gaussian_mechanism(
            standard_deviation=float(noise_multiplier), sampling_prob=q, value_discretization_interval=float(interval)
        )
        return single.self_compose(int(steps))
    j = np.arange(k + 1)
    probs = binom.pmf(j, k, q)
    keep = probs > 0
    single = pld_lib.from_mixture_gaussian_mechanism(
        standard_deviation=float(noise_multiplier),
        sensitivities=j[keep].astype(float),
        sampling_probs=probs[keep] / probs[keep].sum(),
        value_discretization_interval=float(interval),
    )
    return single.self_compose(int(steps))


@functools.lru_cache(maxsize=4096)
def _profile_auc_bound(sigma: float, q: float, steps: int, k: int) -> float:
    pld = group_pld(sigma, q, steps, k)
    # up to where δ(ε) is within 10⁻¹⁵ of its floor, the mass of infinite loss (the
    # pessimistic discretisation puts truncated tails there)
    floor = float(np.asarray(pld.get_delta_for_epsilon([math.inf])).ravel()[0])
    top = pld.get_epsilon_for_delta(floor + 1e-15)
    top = PROFILE_MAX_EPSILON if not math.isfinite(top) else min(PROFILE_MAX_EPSILON, max(top, 1e-3))
    eps = np.linspace(0.0, top, PROFILE_POINTS)
    # One direction's profile (remove: H(P‖Q)) for the steep lines, the other (add, the
    # same pair reversed) for the shallow ones: together the pair's exact trade-off. The
    # public PLD API only gives their maximum (both line families from one δ), which is
    # valid but looser for small σ; it is the fallback.
    remove, add = getattr(pld, "_pmf_remove", None), getattr(pld, "_pmf_add", None)
    if remove is not None and add is not None:
        d_remove = np.asarray(remove.get_delta_for_epsilon(eps), dtype=float)
        d_add = np.asarray(add.get_delta_for_epsilon(eps), dtype=float)
        return tradeoff_auc_bound(eps, d_remove, d_add)
    return tradeoff_auc_bound(eps, np.asarray(pld.get_delta_for_epsilon(eps), dtype=float))


def profile_auc_bound(noise_multiplier: float, sample_rate: float, steps: int, group_size: int = 1) -> float:
    """Largest MIA AUC against a group of k units after a DP-SGD run, from its privacy profile.

    The run: ``steps`` Poisson-subsampled Gaussian steps with sample rate q and noise
    multiplier σ (the ``dp_*`` columns of ``models/metrics.tsv``). Its privacy-loss
    distribution for a group of k units (:func:`group_pld`; k = 1 for one unit) gives δ(ε)
    on a grid of ε (dp-accounting's pessimistic PLD: each δ is an upper bound), and
    :func:`tradeoff_auc_bound` turns the whole profile into the AUC bound. Unlike one
    (ε, δ) point this needs no δ, and for groups it replaces the (kε, k e^{(k−1)ε} δ) group
    statement, which is far looser. Results are cached per (σ, q, T, k).

    Reference values (q = 64/780, T = 1,300, σ calibrated with the RDP accountant to ε = 1
    and 10 at δ = 1/780): 0.598 and 0.941, where :func:`max_auc_bound` gives 0.732 and
    0.99995. σ = 0 (clipping without noise) gives 1.
    """
    sigma, q, t, k = float(noise_multiplier), float(sample_rate), int(steps), int(group_size)
    if not (sigma >= 0) or not (0 < q <= 1) or t < 1 or k < 1:
        raise ValueError(
            f"need noise_multiplier >= 0, sample_rate in (0, 1], steps >= 1 and group_size >= 1, "
            f"got {noise_multiplier!r}, {sample_rate!r}, {steps!r}, {group_size!r}"
        )
    if sigma == 0:
        return 1.0
    return _profile_auc_bound(sigma, q, t, k)


def profile_auc_bounds(noise_multiplier: float, sample_rate: float, steps: int, group_sizes) -> np.ndarray:
    """:func:`profile_auc_bound` for many group sizes: one computation per distinct k.

    Distinct sizes are computed in increasing order; the bound grows with k, so once one is
    saturated (≥ :data:`AUC_SATURATED`) every larger k gets 1. At most
    :data:`MAX_GROUP_SIZES` distinct sizes are computed (a second or a few each); larger
    ones get 1 here (the audit then reports their single-point bound). Returns an array
    shaped like ``group_sizes``.
    """
    ks = np.asarray(group_sizes)
    if ks.size and (not np.all(np.isfinite(ks)) or ks.min() < 1):
        raise ValueError(f"group sizes must be >= 1, got {np.unique(ks)[:5]}")
    uniq, inv = np.unique(ks.astype(np.int64), return_inverse=True)
    out = np.ones(uniq.size)
    for i, k in enumerate(uniq[:MAX_GROUP_SIZES]):
        out[i] = profile_auc_bound(noise_multiplier, sample_rate, steps, int(k))
        if out[i] >= AUC_SATURATED:
            break
    return out[inv].reshape(ks.shape)


# ---------------------------------------------------------------------------
# Violations: a test of each record against its bound, with multiplicity control
# ---------------------------------------------------------------------------


def violation_pvalues(mu_in, mu_out, sd_in, sd_out, n_in, n_out, bound) -> np.ndarray:
    """One-sided p-value of H₀: the record's bi-normal AUC ≤ its DP bound.

    The record's AUC is Φ(d) with d = (μ_in − μ_out)/√(σ_in² + σ_out²), so H₀ is d ≤ d₀ =
    Φ⁻¹(bound). The statistic is Welch's t = (x̄_in − x̄_out)/√(s_in²/n_in + s_out²/n_out);
    under normal signals at d = d₀ with n_in = n_out = n its numerator has mean d₀√n times
    its standard error, so t is close to a noncentral t with noncentrality λ₀ = d₀√n. The
    p-value is

        p = P(T ≥ t),   T ~ t'(ν, λ₀),   ν = min(n_in, n_out) − 1,   λ₀ = d₀·√max(n_in, n_out).

    ν = min(n) − 1 is the conservative choice for the unknown variance ratio (for the
    central t it bounds the Behrens–Fisher distribution for every ratio: Mickey & Brown
    1966, Ann. Math. Statist. 37:639; Scheffé 1970, JASA 65:1501), and √max(n) the largest
    noncentrality any variance ratio gives, so the test keeps its level whatever the ratio
    (Welch–Satterthwaite degrees of freedom do not: up to 4× the nominal rate at p = 10⁻⁴
    in simulation with a 4:1 SD ratio). Simulated sizes: ``benchmarks/bench_dp_bounds.py``.
    NaN where a side has fewer than 2 models or an input is NaN; 1 where the bound is ≥ 1.
    Vectorised with broadcasting.
    """
    from scipy.stats import nct, norm

    arrs = np.broadcast_arrays(
        *(np.asarray(a, dtype=float) for a in (mu_in, mu_out, sd_in, sd_out, n_in, n_out, bound))
    )
    mi, mo, si, so, ni, no, b = arrs
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (mi - mo) / np.sqrt(si**2 / ni + so**2 / no)
        defined = (np.minimum(ni, no) >= 2) & ~np.isnan(t) & ~np.isnan(b)
        trivial = defined & (b >= 1.0)
        test = defined & ~trivial
        p = np.full(t.shape, np.nan)
        p[trivial] = 1.0
        df = np.minimum(ni, no)[test] - 1.0
        lam = norm.ppf(np.clip(b[test], 0.5, 1.0)) * np.sqrt(np.maximum(ni, no)[test])
        p[test] = nct.sf(t[test], df, lam)
    return p if p.ndim else float(p)


def holm_adjust(pvalues) -> np.ndarray:
    """Holm (1979) step-down adjusted p-values; NaN stays NaN and is not counted.

    With the m defined p-values sorted, p_(1) ≤ … ≤ p_(m), the adjusted value of p_(i) is
    max_{j ≤ i} min(1, (m − j + 1) p_(j)). Rejecting where it is ≤ α bounds the chance of
    any false rejection among them by α under any dependence (family-wise error).
    """
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(~np.isnan(p.ravel()))
    if ok.size:
        vals = np.clip(p.ravel()[ok], 0.0, 1.0)
        order = np.argsort(vals, kind="mergesort")
        m = vals.size
        stepped = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * vals[order]))
        flat = out.ravel()
        flat[ok[order]] = stepped
        out = flat.reshape(p.shape)
    return out
