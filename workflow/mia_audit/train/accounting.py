"""The privacy accounting of a DP-SGD training run: a configured (ε, δ) budget turned into a
noise multiplier σ and back.

:func:`validate_dp`, :func:`noise_multiplier_for` and :func:`achieved_epsilon` are thin
wrappers around Opacus's accountants (RDP by default; PRV and GDP on request). The audit's
bounds on membership inference (:mod:`mia_audit.dp.bounds`) take the same run's whole privacy
profile from dp-accounting's PLD instead; docs/methods.md compares the accountants.
"""

from __future__ import annotations

import functools
import math
import warnings
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # torch is imported by the DP-SGD functions only: the audit's DP bounds do without it
    pass

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
    :func:`mia_audit.train.dp_sgd.model_guarantees` asks) cost one curve.
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
