"""Differential privacy for ensembles of target models: accounting, DP-SGD, MIA bounds.

Three parts:

* **Accounting** (:func:`validate_dp`, :func:`noise_multiplier_for`,
  :func:`achieved_epsilon`): thin wrappers around Opacus's accountants that turn a
  configured (ε, δ) budget into a DP-SGD noise multiplier σ and back.
* **DP-SGD for a stacked ensemble** (:func:`dp_gradients`, :func:`poisson_batches`,
  :func:`sample_loss_fn`): the Opacus recipe (Abadi et al. 2016; Yousefpour et al. 2021)
  written with ``torch.func`` so that M models, each with its own Poisson batch of its own
  member records, are processed in one vectorised call. The privacy unit is either a record
  (record-level DP) or a patient (patient-level DP: a patient's records are summed into one
  gradient before clipping, so the patient's whole contribution is bounded by C).
* **The bound on membership inference** (:func:`max_auc_bound`, :func:`group_privacy`,
  :func:`patient_bounds`, :func:`flag_violations`): the largest AUC any attack can reach
  against an (ε, δ)-DP training run, used to flag records or patients whose measured
  MIA AUC exceeds what the guarantee allows; :func:`accountant_auc_bound` gives a tighter
  bound for a given DP-SGD run from its whole (ε(δ), δ) curve.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping
from typing import NamedTuple

import numpy as np
import torch
from scipy.special import expit

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
    (for RDP with the widened order grid :data:`RDP_ALPHAS`). σ = 0 gives ``inf``.
    """
    kwargs = _accountant_kwargs(accountant)
    if noise_multiplier <= 0:
        return math.inf
    from opacus.accountants import create_accountant

    acc = create_accountant(mechanism=accountant)
    acc.history = [(float(noise_multiplier), float(sample_rate), int(steps))]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Optimal order is the")
        return float(acc.get_epsilon(delta=float(delta), **kwargs))


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
    loss: Callable = torch.nn.functional.cross_entropy,
    buffers: Mapping[str, torch.Tensor] | None = None,
) -> Callable:
    """Per-sample loss ``f(params, x, y) -> scalar`` for :func:`dp_gradients`.

    ``params`` holds one model's parameters (unstacked), ``x`` one input without batch
    dimension, ``y`` its target; the model runs on a batch of one via
    :func:`torch.func.functional_call`. ``buffers`` (shared, unstacked) are passed along.
    """
    from torch.func import functional_call

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
    the batch they are summed with one (M, B, B) 0/1 batched matrix product per tensor.
    Models with buffers (shared, unstacked) can close over them in ``fmodel_loss``.

    Returns
    -------
    dict name -> (M, ...) gradient, shaped like ``params`` (detached).
    """
    from torch.func import grad, vmap

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
    params = {k: v.detach() for k, v in params.items()}
    first = next(iter(params.values()))
    device, dtype = first.device, first.dtype
    unit_index = unit_index.to(device)

    valid = unit_index >= 0

    def weighted_loss(p, xi, yi, wi):  # padding rows get weight 0, hence zero gradient
        return fmodel_loss(p, xi, yi) * wi

    per_model = vmap(grad(weighted_loss), in_dims=(None, 0, 0, 0), randomness="different")
    per_sample = vmap(per_model, in_dims=(0, 0, 0, 0), randomness="different")(params, x, y, valid.to(dtype))

    # Per model, slot s = rank of the unit among that model's unit ids in the batch; a
    # batch of B rows has at most B units. Padding rows join no slot.
    stride = int(unit_index.max().clamp(min=0).item()) + 1
    key = torch.where(valid, unit_index, stride) + torch.arange(M, device=device)[:, None] * (stride + 1)
    uniq, inv = torch.unique(key.reshape(-1), return_inverse=True)
    model_start = torch.searchsorted(uniq, torch.arange(M, device=device) * (stride + 1))
    slot = inv.reshape(M, B) - model_start[:, None]
    n_pad_keys = int((~valid).any(dim=1).sum())
    distinct = uniq.numel() == int(valid.sum()) + n_pad_keys
    if distinct:  # record-level: every row is its own unit, no summing needed
        assign = None
    else:  # (M, slots, rows) 0/1 matrix: unit gradient = assign @ per-sample gradients
        assign = (slot[:, None, :] == torch.arange(B, device=device)[None, :, None]) & valid[:, None, :]
        assign = assign.to(dtype)

    unit_grads = {}
    sq_norm = torch.zeros(M, B, device=device, dtype=dtype)
    for name, g in per_sample.items():
        flat = g.reshape(M, B, -1)
        ug = flat if assign is None else torch.bmm(assign, flat)
        unit_grads[name] = ug
        sq_norm += torch.linalg.vector_norm(ug, dim=2).square()
    # Opacus's flat clipping factor; empty slots have zero gradient and contribute nothing.
    factor = (max_grad_norm / (sq_norm.sqrt() + 1e-6)).clamp(max=1.0)

    expected = torch.as_tensor(expected_batch_units, device=device, dtype=dtype).reshape(-1)
    if expected.numel() not in (1, M) or not bool((expected > 0).all()):
        raise ValueError(
            f"expected_batch_units must be > 0, a scalar or one per model ({M}), got {expected_batch_units!r}"
        )
    expected = expected.expand(M)

    out = {}
    for name, ug in unit_grads.items():
        summed = torch.einsum("ms,msp->mp", factor, ug).reshape(params[name].shape)
        if noise_multiplier > 0:
            noise = torch.randn(summed.shape, generator=generator, device=device, dtype=summed.dtype)
            summed = summed + noise * (noise_multiplier * max_grad_norm)
        out[name] = summed / expected.reshape((M,) + (1,) * (summed.dim() - 1))
    return out


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


def flag_violations(auc: ArrayLike, se: ArrayLike, bound: ArrayLike, z: float = 1.96) -> np.ndarray:
    """True where the measured AUC exceeds the DP bound beyond sampling error.

    Flag = AUC − z·SE > bound (a one-sided test at level Φ(−z); z = 1.96 → 2.5 %).
    NaN inputs give False. Vectorised with broadcasting.
    """
    auc = np.asarray(auc, dtype=float)
    se = np.asarray(se, dtype=float)
    bound = np.asarray(bound, dtype=float)
    with np.errstate(invalid="ignore"):
        lower = auc - z * se
        return np.asarray(np.where(np.isnan(lower) | np.isnan(bound), False, lower > bound), dtype=bool)


def accountant_auc_bound(
    noise_multiplier: float,
    sample_rate: float,
    steps: int,
    deltas: np.ndarray | None = None,
    n_grid: int = 20001,
) -> float:
    """AUC bound from the whole (ε(δ), δ) curve of a DP-SGD run (tighter than one point).

    A run of ``steps`` Poisson-subsampled Gaussian steps is (ε(δ), δ)-DP for every δ at
    once, with ε(δ) from Opacus's RDP analysis (``compute_rdp`` over :data:`RDP_ALPHAS`,
    then ``get_privacy_spent`` per δ). Each pair gives a trade-off lower bound f_δ (see
    :func:`max_auc_bound`), so the attack's type-II error is at least the envelope
    f(α) = max_δ f_δ(α) (Dong, Roth & Su 2019, Prop. 2.5 applied per δ), and

        AUC ≤ 1 − ∫₀¹ max_δ f_δ(α) dα.

    f is non-increasing, so the integral is bounded from below by a right-endpoint sum on
    a grid of ``n_grid`` points: the returned value is an upper bound on the AUC and is
    never above :func:`max_auc_bound` (ε(δ), δ) for any δ of the grid ``deltas`` (default
    10⁻¹² … 0.5, 60 log-spaced values). σ = 0 gives 1.
    """
    if noise_multiplier <= 0:
        return 1.0
    from opacus.accountants.analysis import rdp as rdp_analysis

    if deltas is None:
        deltas = np.geomspace(1e-12, 0.5, 60)
    deltas = np.asarray(deltas, dtype=float)
    orders = np.asarray(RDP_ALPHAS)
    rdp = rdp_analysis.compute_rdp(
        q=float(sample_rate), noise_multiplier=float(noise_multiplier), steps=int(steps), orders=orders
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Optimal order is the")
        eps = np.array([rdp_analysis.get_privacy_spent(orders=orders, rdp=rdp, delta=d)[0] for d in deltas])
    keep = np.isfinite(eps)
    if not keep.any():
        return 1.0
    eps, deltas = np.maximum(eps[keep], 0.0), deltas[keep]
    alpha = np.linspace(0.0, 1.0, int(n_grid))
    f = np.zeros_like(alpha)
    for e, d in zip(eps, deltas, strict=True):
        f = np.maximum(f, np.maximum(1 - d - np.exp(e) * alpha, np.exp(-e) * (1 - d - alpha)))
    lower_integral = float(np.sum(f[1:] * np.diff(alpha)))
    return 1.0 - lower_integral
