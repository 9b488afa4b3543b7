"""The bound on membership inference against a DP training run.

:func:`profile_auc_bound` takes the largest AUC any attack can reach from the run's whole
privacy profile (dp-accounting's privacy-loss distribution of the Poisson-subsampled
Gaussian, for a group of k units as a mixture of Gaussians, :func:`group_pld`), turned into an
AUC by :func:`tradeoff_auc_bound`, and the largest TPR at each FPR by :func:`tradeoff_lines`
and :func:`tpr_cap`; :func:`max_auc_bound` and :func:`group_privacy` are the
single-(ε, δ)-point bound and the classic group statement (the reported fallback). Every
bound holds for any attack on the released models; it is attained only when the unit's
clipped gradients are aligned and every iterate is released (the dominating pair's worst
case). Method and references: docs/methods.md, "Differential privacy: the bound".
"""

from __future__ import annotations

import functools
import math

import numpy as np
from scipy.special import expit

ArrayLike = float | np.ndarray


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


def _envelope_lines(epsilons, deltas, deltas_reverse=None) -> tuple[np.ndarray, np.ndarray]:
    """(slopes, intercepts) of the lines whose maximum (with 0) is the trade-off envelope of
    :func:`tradeoff_auc_bound`, reduced to its upper hull (slopes increasing, each line the
    maximum on one interval of α); empty when no pair is usable."""
    e = np.asarray(epsilons, dtype=float).ravel()
    d = np.asarray(deltas, dtype=float).ravel()
    d2 = d if deltas_reverse is None else np.asarray(deltas_reverse, dtype=float).ravel()
    if not (e.shape == d.shape == d2.shape):
        raise ValueError(f"epsilons and deltas must have the same length, got {e.size}, {d.size} and {d2.size}")
    usable = np.isfinite(e) & (e >= 0) & (e <= PROFILE_MAX_EPSILON)
    ok1, ok2 = usable & np.isfinite(d) & (d < 1), usable & np.isfinite(d2) & (d2 < 1)
    if not ok1.any() and not ok2.any():
        return np.zeros(0), np.zeros(0)
    c1, c2 = 1.0 - np.clip(d[ok1], 0.0, 1.0), 1.0 - np.clip(d2[ok2], 0.0, 1.0)
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
    return slope[h], icpt[h]


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
    the AUC of the most powerful test against that pair; a finite grid of ε gives an
    envelope below f and so a valid, slightly larger bound. f is convex and piecewise
    linear: its pieces are found exactly (lines sorted by slope, a monotone-stack upper hull,
    :func:`_envelope_lines`) and integrated in closed form, so the result is exact for the
    pairs given. One pair gives :func:`max_auc_bound`. Pairs with ε >
    :data:`PROFILE_MAX_EPSILON`, ε < 0, δ ≥ 1 or NaN are left out (which can only enlarge
    the bound); no usable pair gives 1.
    """
    slope, icpt = _envelope_lines(epsilons, deltas, deltas_reverse)
    if slope.size == 0:
        return 1.0
    knots = (icpt[:-1] - icpt[1:]) / (slope[1:] - slope[:-1])
    left = np.clip(np.r_[-np.inf, knots], 0.0, 1.0)
    right = np.clip(np.r_[knots, np.inf], 0.0, 1.0)
    area = np.sum(icpt * (right - left) + slope * (right**2 - left**2) / 2.0)
    return float(min(1.0, max(0.5, 1.0 - area)))


def tpr_cap(fpr, lines: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Largest true-positive rate any membership test can have at false-positive rate ``fpr``:
    1 − f(α) for the envelope f of ``lines`` (:func:`tradeoff_lines`); 1 without lines."""
    a = np.clip(np.asarray(fpr, dtype=float), 0.0, 1.0)
    slope, icpt = lines
    if len(slope) == 0:
        return np.ones_like(a)
    f = np.max(icpt[:, None] + slope[:, None] * a.ravel()[None, :], axis=0).reshape(a.shape)
    return np.clip(1.0 - np.maximum(f, 0.0), 0.0, 1.0)


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


#: Most privacy-loss grid points one group PLD may hold after composition (time and memory).
PLD_MAX_POINTS = 2e7

#: Coarsest privacy-loss grid step :func:`group_pld` is allowed; a run that would need a
#: coarser one to stay within :data:`PLD_MAX_POINTS` (σ ≲ 10⁻² at T in the hundreds: such
#: runs have ε in the thousands) gets the trivial bound 1 without a PLD.
PLD_MAX_INTERVAL = 0.5


def _composed_width(noise_multiplier: float, sample_rate: float, steps: int, group_size: int) -> float:
    """Upper bound on the span of the composed privacy loss that dp-accounting discretises:
    the mixture's loss log Σ_j p_j exp((2jx − j²)/(2σ²)) over x within 10σ of the means
    (dp-accounting truncates tails of mass e⁻⁵⁰), times the steps."""
    s, q, k = float(noise_multiplier), float(sample_rate), int(group_size)
    tails = k * (abs(math.log1p(-q)) if q < 1 else 0.0) + k * abs(math.log(q))
    return int(steps) * ((k * k + 20.0 * k * s) / (2.0 * s * s) + tails)


def _guarded_group_pld(sigma: float, q: float, steps: int, k: int):
    """:func:`group_pld` on a grid no finer than :data:`PLD_MAX_POINTS` allows, or None when
    that grid would be coarser than :data:`PLD_MAX_INTERVAL`."""
    interval = max(pld_interval(sigma, q, k), _composed_width(sigma, q, steps, k) / PLD_MAX_POINTS)
    if interval > PLD_MAX_INTERVAL:
        return None
    return group_pld(sigma, q, steps, k, interval=interval)


def group_epsilon(noise_multiplier: float, sample_rate: float, steps: int, group_size: int, delta: float) -> float:
    """ε at δ of the run for a group of k units, from the group's PLD (:func:`group_pld`);
    inf for σ = 0 or a run too large for a PLD (as :func:`profile_auc_bound`)."""
    sigma, q, t, k = _check_run(noise_multiplier, sample_rate, steps, group_size)
    pld = None if sigma == 0 else _guarded_group_pld(sigma, q, t, k)
    if pld is None:
        return math.inf
    with np.errstate(over="ignore"):
        return float(pld.get_epsilon_for_delta(float(delta)))


@functools.lru_cache(maxsize=4096)
def _profile(sigma: float, q: float, steps: int, k: int) -> tuple | None:
    """(ε grid, δ_remove(ε), δ_add(ε)) of the run for a group of k, or None when the PLD would
    need a grid coarser than :data:`PLD_MAX_INTERVAL` (the caller then reports 1)."""
    pld = _guarded_group_pld(sigma, q, steps, k)
    if pld is None:
        return None
    # up to where δ(ε) is within 10⁻¹⁵ of its floor, the mass of infinite loss (the
    # pessimistic discretisation puts truncated tails there)
    floor = float(np.asarray(pld.get_delta_for_epsilon([math.inf])).ravel()[0])
    top = pld.get_epsilon_for_delta(floor + 1e-15)
    top = PROFILE_MAX_EPSILON if not math.isfinite(top) else min(PROFILE_MAX_EPSILON, max(top, 1e-3))
    eps = np.linspace(0.0, top, PROFILE_POINTS)
    # One direction's profile (remove: H(P‖Q)) for the steep lines, the other (add, the
    # same pair reversed) for the shallow ones: together the dominating pair's trade-off. The
    # public PLD API only gives their maximum (both line families from one δ), which is
    # valid but looser for small σ; it is the fallback.
    remove, add = getattr(pld, "_pmf_remove", None), getattr(pld, "_pmf_add", None)
    if remove is not None and add is not None:
        d_remove = np.asarray(remove.get_delta_for_epsilon(eps), dtype=float)
        d_add = np.asarray(add.get_delta_for_epsilon(eps), dtype=float)
        return eps, d_remove, d_add
    d = np.asarray(pld.get_delta_for_epsilon(eps), dtype=float)
    return eps, d, d


@functools.lru_cache(maxsize=4096)
def _profile_auc_bound(sigma: float, q: float, steps: int, k: int) -> float:
    prof = _profile(sigma, q, steps, k)
    return 1.0 if prof is None else tradeoff_auc_bound(*prof)


def _check_run(noise_multiplier, sample_rate, steps, group_size) -> tuple[float, float, int, int]:
    sigma, q, t, k = float(noise_multiplier), float(sample_rate), int(steps), int(group_size)
    if not (sigma >= 0) or not (0 < q <= 1) or t < 1 or k < 1:
        raise ValueError(
            f"need noise_multiplier >= 0, sample_rate in (0, 1], steps >= 1 and group_size >= 1, "
            f"got {noise_multiplier!r}, {sample_rate!r}, {steps!r}, {group_size!r}"
        )
    return sigma, q, t, k


def profile_auc_bound(noise_multiplier: float, sample_rate: float, steps: int, group_size: int = 1) -> float:
    """Largest MIA AUC against a group of k units after a DP-SGD run, from its privacy profile.

    The run: ``steps`` Poisson-subsampled Gaussian steps with sample rate q and noise
    multiplier σ (the ``dp_*`` columns of ``models/metrics.tsv``). Its privacy-loss
    distribution for a group of k units (:func:`group_pld`; k = 1 for one unit) gives δ(ε)
    on a grid of ε (dp-accounting's pessimistic PLD: each δ is an upper bound), and
    :func:`tradeoff_auc_bound` turns the whole profile into the AUC bound. Unlike one
    (ε, δ) point this needs no δ, and for groups it replaces the (kε, k e^{(k−1)ε} δ) group
    statement, which is far looser. The bound holds for any attack on the released model
    (post-processing); it is attained only by an attack that sees every iterate and whose
    units' clipped gradients are aligned (the dominating pair's worst case). Results are
    cached per (σ, q, T, k).

    Reference values (q = 64/780, T = 1,300, σ calibrated with the RDP accountant to ε = 1
    and 10 at δ = 1/780): 0.598 and 0.93997, where :func:`max_auc_bound` gives 0.732 and
    0.99995. σ = 0 (clipping without noise) gives 1, and so does a run whose PLD would need a
    grid coarser than :data:`PLD_MAX_INTERVAL` (ε in the thousands: the bound is 1 to many
    decimals there).
    """
    sigma, q, t, k = _check_run(noise_multiplier, sample_rate, steps, group_size)
    if sigma == 0:
        return 1.0
    return _profile_auc_bound(sigma, q, t, k)


def tradeoff_lines(noise_multiplier: float, sample_rate: float, steps: int, group_size: int = 1) -> tuple:
    """The run's trade-off envelope for a group of k as lines (:func:`_envelope_lines`) for
    :func:`tpr_cap`: the largest TPR any test reaches at each FPR. No lines (TPR ≤ 1 only)
    for σ = 0 or a run too large for a PLD (see :func:`profile_auc_bound`)."""
    sigma, q, t, k = _check_run(noise_multiplier, sample_rate, steps, group_size)
    prof = None if sigma == 0 else _profile(sigma, q, t, k)
    return (np.zeros(0), np.zeros(0)) if prof is None else _envelope_lines(*prof)


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
