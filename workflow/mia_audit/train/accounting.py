"""The privacy accounting of a DP-SGD training run: a configured (ε, δ) budget turned into a
noise multiplier σ and back.

:func:`validate_dp`, :func:`noise_multiplier_for` and :func:`achieved_epsilon` calibrate and
account with Google's dp-accounting privacy-loss distribution (PLD, the default: ``dp.accountant:
pld``) or Opacus's Rényi-DP accountant (``rdp``; PRV and GDP on request). The audit's bounds on
membership inference (:mod:`mia_audit.dp.bounds`) take the same run's whole privacy profile from
the PLD; docs/methods.md ("Differential privacy: accounting") compares the accountants.
"""

from __future__ import annotations

import functools
import math
import warnings

import numpy as np

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

#: Above this ε the PLD accountant is refused: dp-accounting turns δ back into ε through
#: exp(ε) in double precision, which overflows near ε ≈ 709 (at ε = 1000, q = 0.08, 379 steps
#: its calibration ends at ε = 709 with overflow warnings). Larger budgets take ``rdp``.
PLD_MAX_EPSILON = 500.0

#: The largest finite budget accepted. Beyond it no membership attack is bounded in any useful
#: sense (the run's AUC bound is 1 to 14 decimals already at ε = 1000, δ = 1e-5) and the
#: accountants' numerics fail (ε = 10¹² asked dp-accounting for 1.9 TiB in the audit), so a
#: larger ε is refused before any work with the advice to write ``inf`` (clipping without noise).
MAX_EPSILON = 1000.0

#: The fixed δ at which every DP experiment also reports its ε (``dp_utility.tsv``), so that
#: experiments with different δ (the default 1/n differs by level and data set) compare.
REFERENCE_DELTA = 1e-5

#: PLD discretisation: the privacy-loss grid step as a share of the target ε (the pessimistic
#: connect-the-dots PLD overstates ε by about this share or less; measured 0.04 % at ε = 1 for
#: 10⁻³), and the most grid points one composition may hold (memory: a few hundred MB).
PLD_RELATIVE_INTERVAL = 1e-3
PLD_MAX_POINTS = 2e7

_ACCOUNTANTS = ("pld", "rdp", "prv", "gdp")


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
        Privacy loss 0 < ε ≤ :data:`MAX_EPSILON`. ``"inf"`` (or ``float("inf")``) means
        clipping without noise: no formal guarantee.
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
    ValueError naming ``dp.epsilon`` or ``dp.delta`` and the offending value (also for a
    finite ε above :data:`MAX_EPSILON`, with the advice to write ``inf``).
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
        if eps > MAX_EPSILON:
            raise ValueError(
                f"dp.epsilon = {epsilon!r} is above {MAX_EPSILON:g}, where the guarantee bounds no membership "
                "attack (the AUC bound is 1 to many decimals) and the accountants' numerics fail; "
                "write dp.epsilon: inf for clipping without noise"
            )
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


# ---------------------------------------------------------------------------
# PLD (dp-accounting)
# ---------------------------------------------------------------------------


def _step_loss_width(noise_multiplier: float, sample_rate: float) -> float:
    """Width of the support of one step's privacy loss as dp-accounting discretises it.

    dp-accounting truncates the Gaussian where its tail mass is below e⁻⁵⁰ (|x| ≲ 10σ), and
    the subsampled Gaussian's loss log(1 − q + q·exp((2x − 1)/(2σ²))) then spans at most
    (1 + 20σ)/(2σ²) + |log q| + |log(1 − q)|; T compositions span at most T times that.
    """
    s, q = float(noise_multiplier), float(sample_rate)
    return (1.0 + 20.0 * s) / (2.0 * s * s) + abs(math.log(q)) + (abs(math.log1p(-q)) if q < 1 else 0.0)


def pld_interval(noise_multiplier: float, sample_rate: float, steps: int, epsilon_scale: float) -> float:
    """Privacy-loss grid step for a PLD of ``steps`` steps at σ, q.

    :data:`PLD_RELATIVE_INTERVAL` × ``epsilon_scale`` (the target ε, or the ε of the run: the
    pessimistic discretisation then overstates ε by about that share), but never so fine that
    the composed support (at most T × :func:`_step_loss_width`) holds more than
    :data:`PLD_MAX_POINTS` points, which bounds time and memory (σ = 10⁻³ at interval 10⁻⁴
    would need 40 GB). A coarser grid is still an upper bound, only a looser one.
    """
    width = int(steps) * _step_loss_width(noise_multiplier, sample_rate)
    return float(max(PLD_RELATIVE_INTERVAL * float(epsilon_scale), width / PLD_MAX_POINTS, 1e-6))


def _dp_event(noise_multiplier: float, sample_rate: float, steps: int):
    import dp_accounting

    step = dp_accounting.GaussianDpEvent(float(noise_multiplier))
    if float(sample_rate) < 1.0:
        step = dp_accounting.PoissonSampledDpEvent(float(sample_rate), step)
    return dp_accounting.SelfComposedDpEvent(step, int(steps))


def _pld_accountant(interval: float):
    from dp_accounting.pld.pld_privacy_accountant import PLDAccountant

    return PLDAccountant(value_discretization_interval=float(interval))


@functools.lru_cache(maxsize=1024)
def pld_epsilon(noise_multiplier: float, sample_rate: float, steps: int, delta: float, interval: float) -> float:
    """ε at δ of ``steps`` Poisson-subsampled Gaussian steps by dp-accounting's PLD accountant.

    ``PLDAccountant`` (add-or-remove-one adjacency, pessimistic connect-the-dots
    discretisation with grid step ``interval``; Doroshenko et al. 2022) composing
    ``SelfComposedDpEvent(PoissonSampledDpEvent(q, GaussianDpEvent(σ)), T)``. Cached.
    """
    with np.errstate(over="ignore"), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=RuntimeWarning)
        acc = _pld_accountant(interval)
        acc.compose(_dp_event(noise_multiplier, sample_rate, steps))
        return float(acc.get_epsilon(float(delta)))


def _gdp_sigma_guess(epsilon: float, delta: float, sample_rate: float, steps: int) -> float:
    """A starting σ: the central-limit μ-GDP of DP-SGD (Bu, Dong, Long & Su 2020,
    μ = q·√(T(e^{1/σ²} − 1))) at the μ whose (ε, δ) curve (Dong, Roth & Su 2022, Cor. 2.13)
    passes through the target. An approximation only; the PLD decides."""
    from scipy.optimize import brentq
    from scipy.special import log_ndtr

    def delta_of(mu: float) -> float:
        return math.exp(log_ndtr(-epsilon / mu + mu / 2)) - math.exp(epsilon + log_ndtr(-epsilon / mu - mu / 2))

    lo, hi = 1e-6, 1.0
    while delta_of(hi) < delta and hi < 1e4:
        hi *= 2.0
    mu = brentq(lambda m: delta_of(m) - delta, lo, hi, xtol=1e-10) if delta_of(hi) >= delta else hi
    q, t = float(sample_rate), int(steps)
    return float(1.0 / math.sqrt(math.log1p(mu * mu / (q * q * t))))


def _calibrate_pld(epsilon: float, delta: float, sample_rate: float, steps: int, rel_tolerance: float) -> float:
    """σ with PLD ε ≤ target, via ``dp_accounting.calibrate_dp_mechanism`` on a bracket
    found from :func:`_gdp_sigma_guess` (each end checked with the same accountant)."""
    import dp_accounting

    def eps_at(sigma: float, interval: float) -> float:
        return pld_epsilon(sigma, sample_rate, steps, delta, interval)

    guess = _gdp_sigma_guess(epsilon, delta, sample_rate, steps)
    lo, hi = 0.5 * guess, 2.0 * guess
    for _ in range(40):  # hi: enough noise; lo: too little (each step doubles or halves)
        interval = pld_interval(lo, sample_rate, steps, epsilon)
        if eps_at(hi, interval) > epsilon:
            lo, hi = hi, 2.0 * hi
        elif eps_at(lo, interval) <= epsilon:
            hi, lo = lo, 0.5 * lo
        else:
            break
    else:
        raise ValueError("no bracket")
    interval = pld_interval(lo, sample_rate, steps, epsilon)
    with np.errstate(over="ignore"), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=RuntimeWarning)
        sigma = dp_accounting.calibrate_dp_mechanism(
            lambda: _pld_accountant(interval),
            lambda s: _dp_event(s, sample_rate, steps),
            float(epsilon),
            float(delta),
            dp_accounting.ExplicitBracketInterval(lo, hi),
            tol=rel_tolerance * lo / 10.0,
        )
    return float(sigma)


# ---------------------------------------------------------------------------
# Accounting
# ---------------------------------------------------------------------------


def achieved_epsilon(
    noise_multiplier: float,
    sample_rate: float,
    steps: int,
    delta: float,
    accountant: str = "pld",
    epsilon_scale: float | None = None,
) -> float:
    """ε spent by ``steps`` DP-SGD steps with Poisson ``sample_rate`` and noise σ.

    ``pld``: :func:`pld_epsilon` with the grid step :func:`pld_interval` for ``epsilon_scale``
    (the run's target ε, as its calibration used; None: a first pass at a coarse step gives
    the scale). ``rdp``, ``prv``, ``gdp``: the Opacus accountant's ``history``
    ``[(σ, q, steps)]`` and ``get_epsilon(δ)`` (for RDP with the widened order grid
    :data:`RDP_ALPHAS`; its curve over the orders does not depend on δ and is cached per
    (σ, q, T), so many δ, one per model as :func:`mia_audit.train.dp_sgd.model_guarantees`
    asks, cost one curve). σ = 0 gives ``inf``.
    """
    kwargs = _accountant_kwargs(accountant)
    if noise_multiplier <= 0:
        return math.inf
    if accountant == "pld":
        if epsilon_scale is None:
            coarse = pld_interval(noise_multiplier, sample_rate, steps, 10.0)
            epsilon_scale = pld_epsilon(noise_multiplier, sample_rate, steps, delta, coarse)
        interval = pld_interval(noise_multiplier, sample_rate, steps, epsilon_scale)
        return pld_epsilon(float(noise_multiplier), float(sample_rate), int(steps), float(delta), interval)
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


@functools.lru_cache(maxsize=256)
def noise_multiplier_for(
    epsilon: float,
    delta: float,
    sample_rate: float,
    steps: int,
    accountant: str = "pld",
    rel_tolerance: float = 0.01,
) -> float:
    """Noise multiplier σ so that ``steps`` Poisson-sampled DP-SGD steps are (ε, δ)-DP.

    The returned σ gives ε_achieved ≤ ε and ε_achieved ≥ (1 − rel_tolerance)·ε by
    :func:`achieved_epsilon` with the same accountant (and, for PLD, ``epsilon_scale`` = ε).

    **PLD** (default): dp-accounting's ``calibrate_dp_mechanism`` (Brent's method on σ, ending
    on the side that meets the budget) with its ``PLDAccountant``, the less loose of the
    two accountants (Koskela et al. 2020; Doroshenko et al. 2022): at ε = 1 it asks for 8–10 %
    less noise than RDP on the bundled cohort's runs (docs/methods.md). About 1 s; refused
    above :data:`PLD_MAX_EPSILON`. **RDP** (Mironov 2017; Mironov, Talwar & Zhang 2019) with
    the widened order grid :data:`RDP_ALPHAS` (Opacus's ``get_noise_multiplier``, a
    doubling-then-bisection search with a tolerance relative to ε): looser, works up to
    :data:`MAX_EPSILON`. **PRV** (Gopi et al. 2021) is refused above :data:`PRV_MAX_EPSILON`.
    ε = inf returns σ = 0 (clipping only). Cached per arguments (a selection's candidates
    share one plan).

    Raises
    ------
    ValueError naming ``dp.epsilon`` when the budget cannot be met (σ would exceed 10⁶),
    with what to change (larger ε or δ, fewer epochs, smaller batch), or ``dp.accountant``.
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
            "runs out of memory; use dp.accountant = 'pld' or 'rdp'"
        )
    if accountant == "pld" and epsilon > PLD_MAX_EPSILON:
        raise ValueError(
            f"dp.epsilon = {epsilon!r} is above {PLD_MAX_EPSILON:g}, where dp-accounting's PLD overflows "
            "(exp(ε) in double precision); set dp.accountant: rdp for this budget"
        )
    hint = (
        f"dp.epsilon = {epsilon!r} (δ = {delta!r}) is not reachable with sample rate "
        f"{sample_rate!r} over {int(steps)} steps; raise dp.epsilon or dp.delta, train for "
        "fewer epochs, or use a smaller batch (lower sample rate)"
    )
    # As σ → ∞ the RDP of every order → 0, leaving the conversion term
    # −(log δ + log α)/(α − 1) + log((α − 1)/α) (Balle et al. 2020): no σ gets RDP below it.
    # PLD has no such floor, but a budget that needs σ > 10⁶ is refused by both.
    if accountant == "rdp":
        a = np.asarray(RDP_ALPHAS)
        floor = float(np.min(-(np.log(delta) + np.log(a)) / (a - 1) + np.log((a - 1) / a)))
        if epsilon <= 1.01 * floor:
            raise ValueError(
                f"{hint}: with δ = {delta!r} no noise level brings the RDP accountant below ε ≈ {floor:.3g}"
            )
    if accountant == "pld":
        try:
            sigma = _calibrate_pld(float(epsilon), float(delta), float(sample_rate), int(steps), rel_tolerance)
        except ValueError as err:
            raise ValueError(f"{hint} ({err})") from err
        if sigma > 1e6:
            raise ValueError(f"{hint}: it needs σ = {sigma:.3g}")
    else:
        from opacus.accountants.utils import get_noise_multiplier

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
    got = achieved_epsilon(sigma, sample_rate, steps, delta, accountant, epsilon_scale=epsilon)
    if not (got <= epsilon * (1 + 1e-9) and got >= (1 - rel_tolerance) * epsilon):
        raise ValueError(f"{hint}: the search ended at σ = {sigma:.4g} with ε = {got:.4g}")
    return float(sigma)
