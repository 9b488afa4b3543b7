"""Who carries the risk: composition of the most exposed records and patients by subgroup.

Per attribute and level (records, patients): the tail chosen by a rule (:func:`choose_tail`:
``quantile``, ``count``, ``threshold`` or ``auto``, sized by :func:`tail_need`), observed and
expected counts, Pearson residuals, the naive goodness-of-fit test (χ², exact or Monte-Carlo)
and the primary patient-clustered permutation test, with p-values adjusted across the run
(``statsmodels``). A patient's group is that of their first record (a rule that does not
depend on the model), and the patient-level permutation is stratified by records per patient
(:func:`stratified_permutation_test`). The tests, their
simulated type-I error and their references: docs/methods.md, "Who carries the risk" and the
two "Subgroups" sections.
"""

from __future__ import annotations

import itertools
import math
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import pandas as pd
from scipy import stats as sps

from mia_audit.errors import DataError
from mia_audit.settings import complete

LEVELS = ("record", "patient")
TEST_CHI2 = "chi2"
TEST_EXACT = "exact"
TEST_MONTE_CARLO = "monte_carlo"
TEST_NONE = "none"
#: ``cluster_test`` values: records tested with patients as clusters, or patients as the units
#: (permuted within strata of equal records per patient)
CLUSTER_PERMUTATION = "patient_permutation"
CLUSTER_UNITS = "patients_stratified"
#: ``tail_rule`` values (config ``subgroups.tail``)
TAIL_RULES = ("auto", "quantile", "count", "threshold")

#: Columns of a test table (one row per group), in order.
COLUMNS = [
    "dataset",
    "experiment",
    "attribute",
    "level",
    "group",
    "n_overall",
    "share_overall",
    "n_tail",
    "share_tail",
    "expected",
    "residual",
    "rel_change",
    "n_total",
    "n_tail_total",
    "n_undefined",
    "quantile",
    "threshold",
    "test",
    "chi2",
    "dof",
    "p",
    "p_adj",
    "p_adjust_method",
    "note",
    "n_tail_patients",
    "design_effect",
    "cluster_test",
    "p_cluster",
    "p_cluster_adj",
    "tail_rule",
    "n_tail_needed",
    "tail_reason",
]
#: Columns that identify one test (one p-value).
TEST_KEY = ["dataset", "experiment", "attribute", "level"]


# --------------------------------------------------------------------------- p-values


def chi2_statistic(observed, expected) -> np.ndarray:
    """Pearson's X² = Σ (O − E)² / E over the last axis (vectorised over leading axes)."""
    o = np.asarray(observed, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    return np.sum((o - e) ** 2 / e, axis=-1)


def _at_least(stat: np.ndarray, observed: float) -> np.ndarray:
    # ≥ with a relative tolerance so that outcomes tied with the observed one in exact
    # arithmetic are counted despite rounding (as R's chisq.test does).
    return stat >= observed * (1.0 - 64 * np.finfo(float).eps) - 1e-12


def n_compositions(n: int, k: int) -> int:
    """Number of outcomes of a multinomial(n, k groups): C(n + k − 1, k − 1)."""
    return math.comb(n + k - 1, k - 1)


def compositions(n: int, k: int) -> np.ndarray:
    """Every vector of k non-negative integers summing to n, shape (C(n+k−1, k−1), k).

    Stars and bars: choosing k − 1 bar positions among n + k − 1 slots fixes one outcome.
    """
    if k == 1:
        return np.array([[n]], dtype=np.int64)
    m = n_compositions(n, k)
    bars = np.fromiter(
        itertools.chain.from_iterable(itertools.combinations(range(n + k - 1), k - 1)),
        dtype=np.int64,
        count=m * (k - 1),
    ).reshape(m, k - 1)
    edges = np.concatenate([np.full((m, 1), -1), bars, np.full((m, 1), n + k - 1)], axis=1)
    return np.diff(edges, axis=1) - 1


def exact_chisquare_pvalue(observed, probs) -> float:
    """Exact P(X² ≥ X²_obs) under H0: observed ~ multinomial(n, probs), by full enumeration.

    Probabilities from ``scipy.stats.multinomial.logpmf`` over every outcome (see
    :func:`compositions`). Cost grows as C(n + k − 1, k − 1).
    """
    o = np.asarray(observed, dtype=np.int64)
    p = np.asarray(probs, dtype=np.float64)
    n = int(o.sum())
    outcomes = compositions(n, o.size)
    expected = n * p
    stat = chi2_statistic(outcomes, expected)
    logpmf = sps.multinomial.logpmf(outcomes, n, p)
    mask = _at_least(stat, float(chi2_statistic(o, expected)))
    return float(min(1.0, np.exp(logpmf[mask]).sum()))


def monte_carlo_chisquare_pvalue(observed, probs, draws: int, rng: np.random.Generator, chunk: int = 50_000) -> float:
    """Monte-Carlo P(X² ≥ X²_obs) from ``draws`` multinomial(n, probs) samples.

    p = (1 + b) / (1 + draws), b = number of simulated X² at least the observed one, which
    is a valid (never anti-conservative) p-value (Phipson & Smyth 2010). Draws are
    generated ``chunk`` at a time with ``rng.multinomial`` (vectorised).
    """
    o = np.asarray(observed, dtype=np.int64)
    p = np.asarray(probs, dtype=np.float64)
    n = int(o.sum())
    expected = n * p
    obs = float(chi2_statistic(o, expected))
    hits, done = 0, 0
    while done < draws:
        size = min(chunk, draws - done)
        sim = rng.multinomial(n, p, size=size)
        hits += int(_at_least(chi2_statistic(sim, expected), obs).sum())
        done += size
    return (1.0 + hits) / (1.0 + draws)


def goodness_of_fit(
    observed,
    overall,
    *,
    min_expected: float = 5.0,
    draws: int = 100_000,
    exact_max_outcomes: int = 500_000,
    rng: np.random.Generator | None = None,
) -> dict:
    """Test tail counts ``observed`` against the shares of the ``overall`` counts.

    Returns ``{"test", "chi2", "dof", "p", "note"}``. ``test`` is ``chi2`` (all expected
    counts ≥ ``min_expected``), ``exact`` (enumeration), ``monte_carlo`` (seeded, ``draws``
    samples) or ``none`` (no valid test: p is NaN and ``note`` says why).
    """
    o = np.asarray(observed, dtype=np.int64)
    big_n = np.asarray(overall, dtype=np.int64)
    if o.shape != big_n.shape or o.ndim != 1:
        raise ValueError(f"observed {o.shape} and overall {big_n.shape} counts must be 1-D of the same length")
    if (big_n <= 0).any():
        raise ValueError(
            f"overall counts must all be positive (a group exists only if it has units); got {big_n.tolist()}"
        )
    if (o < 0).any() or (o > big_n).any():
        raise ValueError(f"tail counts {o.tolist()} must lie between 0 and the overall counts {big_n.tolist()}")
    k, n = o.size, int(o.sum())
    out = {"test": TEST_NONE, "chi2": np.nan, "dof": k - 1, "p": np.nan, "note": ""}
    if k < 2:
        out["note"] = "one group only: nothing to compare, no test"
        return out
    if n == 0:
        out["note"] = "empty tail: no test"
        return out
    if n < k:
        out["note"] = (
            f"tail of {n} is smaller than the {k} groups: at least {k - n} group(s) must be "
            "absent whatever the truth, no test"
        )
        expected = n * big_n / big_n.sum()
        out["chi2"] = float(chi2_statistic(o, expected))
        return out
    probs = big_n / big_n.sum()
    expected = n * probs
    out["chi2"] = float(chi2_statistic(o, expected))
    if expected.min() >= min_expected:
        res = sps.chisquare(o, expected)
        out.update(test=TEST_CHI2, chi2=float(res.statistic), p=float(res.pvalue))
        return out
    reason = f"expected count {expected.min():.2f} < {min_expected:g} (Cochran): "
    if n_compositions(n, k) <= exact_max_outcomes:
        out.update(test=TEST_EXACT, p=exact_chisquare_pvalue(o, probs))
        out["note"] = reason + "exact multinomial test"
    else:
        if rng is None:
            raise ValueError("goodness_of_fit: a Monte-Carlo test needs a seeded rng")
        out.update(test=TEST_MONTE_CARLO, p=monte_carlo_chisquare_pvalue(o, probs, draws, rng))
        out["note"] = reason + f"Monte-Carlo test, {draws} draws"
    return out


# --------------------------------------------------------------------------- patient-clustered test


def _stratum_contributions(labels: np.ndarray, tail: np.ndarray, k: int):
    """Types (distinct label vectors) of one stratum and each tail patient's count vector per type.

    labels (P_s, n) group codes of the stratum's patients (records in order); tail (P_s, n)
    bool. Returns (type counts (U,), contributions (m_s, U, k) = tail counts by group that
    tail patient i would have if it carried type u's labels, observed (k,) tail counts).
    """
    types, inverse, counts = np.unique(labels, axis=0, return_inverse=True, return_counts=True)
    tail_rows = tail[tail.any(axis=1)]
    onehot = np.eye(k, dtype=np.int64)[types]  # (U, n, k)
    contrib = np.einsum("in,unk->iuk", tail_rows.astype(np.int64), onehot)
    observed = np.bincount(labels[tail], minlength=k)
    return counts, contrib, observed


def cluster_permutation_test(
    groups,
    in_tail,
    clusters,
    expected,
    *,
    permutations: int = 10_000,
    rng: np.random.Generator,
) -> dict:
    r"""Tail-composition test that treats each patient's records as one cluster.

    The statistic is the record-level Pearson X² = Σ_g (O_g − E_g)²/E_g of the tail counts
    O against the fixed expected counts E (as in :func:`goodness_of_fit`). Its null
    distribution comes from permuting group labels **between patients**: a patient's
    records move together, carrying their tail membership, and receive the label sequence
    of another patient with the same number of records (a permutation within strata of
    equal cluster size; a patient's records keep their order, so a label that changes over
    visits, such as an age band, moves as a whole sequence). Conditioning on cluster size
    keeps the overall composition — hence E — fixed in every permutation, and protects
    against a group whose patients simply have more records. Under H0 (a patient's
    labels are exchangeable with those of any patient of the same size, whatever their
    records' AUCs) the test is exact for any number and size of clusters; the Monte-Carlo
    p-value (1 + #{X²_perm ≥ X²_obs}) / (1 + permutations) is valid (Phipson & Smyth 2010).
    See Good (2005), *Permutation, Parametric and Bootstrap Tests of Hypotheses*, §3.6
    and §6 (restricted permutations, cluster designs), and Gail et al. (1996), Stat. Med.
    15:1069–1092 (permutation tests for cluster-correlated data).

    Only the tail patients' labels matter for O; within a stratum, the labels they receive
    are a uniform random draw without replacement from the stratum's patients, drawn as
    multivariate hypergeometric counts of distinct label sequences and then shuffled,
    so the cost is O(permutations × tail patients), not × all patients.

    The design effect reported is the Rao–Scott mean generalised design effect estimated
    by the permutation: mean X²_perm divided by its mean under permutation of single
    records, (k − 1)(N − n)/(N − 1) for N units and a tail of n (Rao & Scott 1981,
    JASA 76:221–230). It is 1 when no patient has two tail records and grows with the
    clustering of the tail.

    Parameters
    ----------
    groups : (records,) int group codes 0..k−1 of the units with a defined AUC.
    in_tail : (records,) bool tail membership.
    clusters : (records,) patient keys; a patient's records in their given order.
    expected : (k,) expected tail counts E.

    Returns ``{"p", "design_effect", "n_tail_patients", "permutations"}``.
    """
    g = np.asarray(groups, dtype=np.int64)
    t = np.asarray(in_tail, dtype=bool)
    e = np.asarray(expected, dtype=np.float64)
    k = e.size
    c_codes = pd.factorize(pd.Series(np.asarray(clusters)), sort=False)[0]
    order = np.argsort(c_codes, kind="stable")
    c_sorted = c_codes[order]
    starts = np.flatnonzero(np.r_[True, np.diff(c_sorted) != 0])
    sizes = np.diff(np.r_[starts, c_sorted.size])
    n_tail_patients = int(np.unique(c_codes[t]).size)
    obs_counts = np.bincount(g[t], minlength=k)
    observed = float(chi2_statistic(obs_counts, e))
    fixed = np.zeros(k, dtype=np.int64)
    strata = []
    for n in np.unique(sizes):
        members = starts[sizes == n]
        rows = order[members[:, None] + np.arange(n)[None, :]]  # (P_s, n) record indices
        labels, tail = g[rows], t[rows]
        if not tail.any():
            continue
        counts, contrib, obs = _stratum_contributions(labels, tail, k)
        if counts.size == 1:  # one label sequence in the stratum: permutations change nothing
            fixed += obs
        else:
            strata.append((counts, contrib))
    sims = np.empty(permutations)
    width = sum(contrib.shape[0] for _, contrib in strata) * k
    chunk = max(1, min(permutations, 2**21 // max(width, 1)))  # bounds the (chunk, tail patients, k) gathers
    for b0 in range(0, permutations, chunk):
        size = min(chunk, permutations - b0)
        total = np.broadcast_to(fixed, (size, k)).astype(np.float64)
        for counts, contrib in strata:
            m_s = contrib.shape[0]
            drawn = rng.multivariate_hypergeometric(counts, m_s, size=size)  # (size, U)
            types = np.repeat(np.tile(np.arange(counts.size), size), drawn.ravel()).reshape(size, m_s)
            types = np.take_along_axis(types, rng.random((size, m_s)).argsort(axis=1), axis=1)
            total = total + contrib[np.arange(m_s)[None, :], types].sum(axis=1)
        sims[b0 : b0 + size] = chi2_statistic(total, e)
    n_units, n = g.size, int(t.sum())
    null_mean = (k - 1) * (n_units - n) / (n_units - 1) if n_units > 1 else np.nan
    return {
        "p": (1.0 + float(_at_least(sims, observed).sum())) / (1.0 + permutations),
        "design_effect": float(sims.mean() / null_mean) if null_mean else np.nan,
        "n_tail_patients": n_tail_patients,
        "permutations": permutations,
    }


def unit_permutation_test(observed, overall, *, permutations: int = 10_000, rng: np.random.Generator) -> float:
    """Tail-composition test conditional on the overall composition, units exchangeable.

    Under H0 the tail of n units is a random subset of the N units, so its counts are
    multivariate hypergeometric (``rng.multivariate_hypergeometric(overall, n)``); the
    p-value is (1 + #{X²_sim ≥ X²_obs}) / (1 + permutations) for the Pearson X² against
    E = n · N_g / N (Phipson & Smyth 2010). This is the Monte-Carlo conditional test of the
    2 × k table tail / rest × group with both margins fixed — the X² of that table is X² ·
    N / (N − n), the same ordering — as in R's ``chisq.test(simulate.p.value = TRUE)`` (Hope
    1968, JRSS B 30:582–598). Unlike :func:`goodness_of_fit`, which takes the shares as known
    (multinomial), it does not lose size when the tail is a sizeable share of the units: the
    multinomial X² overstates the null mean by N − 1 over N − n, a test of a 14 % tail
    rejects ~3 % of true nulls at 5 % (``benchmarks/bench_cluster_test.py --tail auto``).
    """
    o = np.asarray(observed, dtype=np.int64)
    big_n = np.asarray(overall, dtype=np.int64)
    n = int(o.sum())
    expected = n * big_n / big_n.sum()
    obs = float(chi2_statistic(o, expected))
    hits, done, chunk = 0, 0, 100_000
    while done < permutations:
        size = min(chunk, permutations - done)
        sim = rng.multivariate_hypergeometric(big_n, n, size=size)
        hits += int(_at_least(chi2_statistic(sim, expected), obs).sum())
        done += size
    return (1.0 + hits) / (1.0 + permutations)


def stratified_permutation_test(
    groups, in_tail, strata, *, permutations: int = 10_000, rng: np.random.Generator
) -> float:
    """Tail-composition test of units (patients) whose labels are exchangeable within strata.

    Under H0 the group labels are exchangeable between patients of the same stratum (the
    same number of records): within stratum s the tail's m_s patients carry a uniform draw
    without replacement of the stratum's labels, so its counts are multivariate
    hypergeometric (``rng.multivariate_hypergeometric(N_gs, m_s)``) and the tail's counts are
    their sum over strata. Permutations within strata keep each group's overall count, so the
    expected counts E_g = n N_g / N and the Pearson X² = Σ (O − E)²/E are those of the
    unstratified test (:func:`unit_permutation_test`, which this is with a single stratum);
    p = (1 + #{X²_perm ≥ X²_obs}) / (1 + permutations) (Phipson & Smyth 2010). A stratified
    (restricted) permutation test is exact under H0 conditionally on the strata (Good 2005,
    §3.6; Lehmann & Romano 2005, §15.2).

    groups : (units,) int codes 0..k−1; in_tail : (units,) bool; strata : (units,) keys.
    Returns the p-value.
    """
    g = np.asarray(groups, dtype=np.int64)
    t = np.asarray(in_tail, dtype=bool)
    k = int(g.max()) + 1 if g.size else 0
    big_n = np.bincount(g, minlength=k)
    n = int(t.sum())
    expected = n * big_n / big_n.sum()
    obs = float(chi2_statistic(np.bincount(g[t], minlength=k), expected))
    codes = pd.factorize(pd.Series(np.asarray(strata)), sort=False)[0]
    fixed = np.zeros(k, dtype=np.int64)
    draws = []
    for s in np.unique(codes[t]):
        in_s = codes == s
        counts = np.bincount(g[in_s], minlength=k)
        m_s = int((t & in_s).sum())
        if (counts > 0).sum() == 1 or m_s == in_s.sum():  # nothing to permute within this stratum
            fixed += np.bincount(g[t & in_s], minlength=k)
        else:
            draws.append((counts, m_s))
    hits, done, chunk = 0, 0, 100_000
    while done < permutations:
        size = min(chunk, permutations - done)
        total = np.broadcast_to(fixed, (size, k)).astype(np.float64)
        for counts, m_s in draws:
            total = total + rng.multivariate_hypergeometric(counts, m_s, size=size)
        hits += int(_at_least(chi2_statistic(total, expected), obs).sum())
        done += size
    return (1.0 + hits) / (1.0 + permutations)


# --------------------------------------------------------------------------- tables


def tail_mask(auc, quantile: float) -> tuple[np.ndarray, float]:
    """Units with a defined AUC at or above the ``quantile`` of the defined AUCs.

    Returns (mask over all units, threshold). NaN AUCs are never in the tail; with no
    defined AUC the threshold is NaN and the mask all False.
    """
    if not 0.0 <= quantile <= 1.0:
        raise ValueError(f"subgroups.quantile must lie in [0, 1], got {quantile}")
    a = np.asarray(auc, dtype=np.float64)
    defined = np.isfinite(a)
    if not defined.any():
        return np.zeros(a.shape, dtype=bool), float("nan")
    threshold = float(np.quantile(a[defined], quantile))
    return defined & (a >= threshold), threshold


def absence_need(n_units: int, n_group, alpha: float = 0.05) -> np.ndarray:
    """Smallest tail size m with P(group absent) = C(N − N_g, m) / C(N, m) ≤ α, per group.

    The hypergeometric probability that m units drawn without replacement from N contain none
    of the group's N_g (vectorised over ``n_group``): the product Π_{i<m} (N − N_g − i)/(N − i)
    accumulated on the log scale. ≈ ln(1/α) / π_g for π_g = N_g / N and large N (the "rule of
    three", Hanley & Lippman-Hand 1983). A group in every unit (N_g = N) needs 1.
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"subgroups.tail_alpha must lie in (0, 1), got {alpha}")
    k = np.atleast_1d(np.asarray(n_group, dtype=np.int64))
    if n_units < 1 or (k < 1).any() or (k > n_units).any():
        raise ValueError(f"group sizes {k.tolist()} must lie between 1 and the {n_units} units")
    i = np.arange(n_units, dtype=np.float64)
    with np.errstate(divide="ignore"):
        logp = np.cumsum(np.log(np.clip(n_units - k[:, None] - i, 0, None) / (n_units - i)), axis=1)
    # logp[:, m − 1] = log P(absent from a tail of m); P reaches 0 at m = N − N_g + 1 ≤ N
    return np.argmax(logp <= math.log(alpha) + 1e-12, axis=1) + 1


def tail_need(groups, clusters=None, alpha: float = 0.05) -> dict | None:
    """Patients a tail needs for every group's absence to be significant at ``alpha``.

    ``groups`` (per unit with a defined AUC) and ``clusters`` (its patient, for records; None
    when the units are patients). Counts patients (N) and each group's patients N_g (at record
    level: patients with a record in the group) and returns ``{"need", "group", "n_group",
    "n_patients"}`` for the binding group (the largest :func:`absence_need`), or None for an
    attribute with fewer than two groups (no test).
    """
    g_codes, names = pd.factorize(np.asarray(groups, dtype=object).astype(str))
    if names.size < 2:
        return None
    if clusters is None:
        n_units, n_group = g_codes.size, np.bincount(g_codes, minlength=names.size)
    else:
        c_codes = pd.factorize(np.asarray(clusters, dtype=object))[0]
        n_units = int(c_codes.max()) + 1 if c_codes.size else 0
        pairs = np.unique(c_codes.astype(np.int64) * names.size + g_codes)  # distinct (patient, group)
        n_group = np.bincount(pairs % names.size, minlength=names.size)
    need = absence_need(n_units, n_group, alpha)
    j = int(np.argmax(need))
    return {"need": int(need[j]), "group": str(names[j]), "n_group": int(n_group[j]), "n_patients": n_units}


@dataclass(frozen=True)
class Tail:
    """One level's tail: which units, and how and why it was chosen (see :func:`choose_tail`).

    ``quantile`` is the configured one under the ``quantile`` rule (and under ``auto`` when it
    kept that tail); otherwise the quantile that gives the same tail, (N − n)/(N − 1) for n of
    N units (``numpy.quantile``'s linear interpolation then lands on the tail's lowest AUC).
    ``cap_patients``: under ``auto``, the patients in the largest tail it may choose.
    """

    mask: np.ndarray
    threshold: float
    quantile: float
    rule: str
    reason: str
    n_units: int
    n_patients: int
    cap_patients: int | None = None
    cap_quantile: float | None = None


def _equivalent_quantile(n_defined: int, n_tail: int) -> float:
    if n_tail == 0:
        return float("nan")
    return (n_defined - n_tail) / (n_defined - 1) if n_defined > 1 else 0.0


def _tail_ladder(auc: np.ndarray, clusters) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every possible tail of the defined AUCs, most extreme first: (threshold, units, patients)."""
    order = np.argsort(-auc, kind="stable")
    s = auc[order]
    if clusters is None:
        patients = np.arange(1, s.size + 1)
    else:
        codes = pd.factorize(pd.Series(np.asarray(clusters, dtype=object)[order]), sort=False)[0]
        first = np.zeros(s.size, dtype=np.int64)
        first[np.unique(codes, return_index=True)[1]] = 1
        patients = np.cumsum(first)
    last = np.r_[s[1:] != s[:-1], True]  # the last unit of each run of tied AUCs
    return s[last], np.flatnonzero(last) + 1, patients[last]


def _per_level(value, level: str, key: str):
    """A setting given once for both levels, or as {record: …, patient: …}."""
    if isinstance(value, Mapping):
        if level not in value:
            raise ValueError(f"subgroups.{key} has no entry for level {level!r} (needs record and patient)")
        return value[level]
    return value


def choose_tail(
    auc,
    *,
    rule: str = "quantile",
    quantile: float = 0.99,
    count: int | None = None,
    threshold: float | None = None,
    clusters=None,
    needs: Mapping[str, dict | None] | None = None,
    auto_min_quantile: float = 0.8,
    tail_alpha: float = 0.05,
    unit: str = "unit",
) -> Tail:
    """The tail of one level under ``rule`` (``quantile``, ``count``, ``threshold`` or ``auto``).

    ``auc`` per unit (NaN: never in the tail); ``clusters`` the patient of each unit (records)
    or None (the units are patients). ``needs`` maps each attribute to its :func:`tail_need`
    (used by ``auto`` and in the reason). ``auto`` starts from the ``quantile`` tail and takes
    the most extreme tail with at least max_A need_A patients over the attributes A that some
    tail down to the ``auto_min_quantile`` one can satisfy; it keeps the ``quantile`` tail when
    that suffices or when no attribute can be satisfied (then the reason says that the cohort
    is too small for a useful test). The choice uses no group label beyond each attribute's
    overall composition (see the module notes on validity).
    """
    if rule not in TAIL_RULES:
        raise ValueError(f"subgroups.tail must be one of {list(TAIL_RULES)}, got {rule!r}")
    a = np.asarray(auc, dtype=np.float64)
    defined = np.isfinite(a)
    c = None if clusters is None else np.asarray(clusters, dtype=object)
    n_def = int(defined.sum())
    plural = f"{unit}s"

    def patients_in(mask) -> int:
        return int(mask.sum()) if c is None else int(pd.unique(c[mask]).size)

    def size_text(mask) -> str:
        n = int(mask.sum())
        return f"{n} {plural}" + ("" if c is None else f" from {patients_in(mask)} patients")

    def make(mask, thr, q, reason, **extra) -> Tail:
        return Tail(mask, float(thr), float(q), rule, reason, int(mask.sum()), patients_in(mask), **extra)

    if rule == "threshold":
        if threshold is None:
            raise ValueError("subgroups.tail = threshold needs subgroups.threshold (an AUC)")
        mask = defined & (a >= threshold)
        q = _equivalent_quantile(n_def, int(mask.sum()))
        return make(mask, threshold, q, f"threshold: AUC ≥ {threshold:g} as configured, {size_text(mask)}")
    if rule == "count":
        if count is None or int(count) < 1:
            raise ValueError(f"subgroups.tail = count needs subgroups.count (a positive integer), got {count!r}")
        k = int(count)
        if n_def == 0:
            return make(np.zeros(a.shape, bool), np.nan, np.nan, "count: no unit with a defined AUC")
        thr = float(np.sort(a[defined])[::-1][min(k, n_def) - 1])
        mask = defined & (a >= thr)
        reason = f"count: the {k} most exposed {plural} as configured (AUC ≥ {thr:.4f}), {size_text(mask)}"
        if k > n_def:
            reason += f"; only {n_def} {plural} have a defined AUC, all are in the tail"
        elif mask.sum() > k:
            reason += f"; {int(mask.sum()) - k} more tied at the threshold"
        return make(mask, thr, _equivalent_quantile(n_def, int(mask.sum())), reason)

    mask0, thr0 = tail_mask(a, quantile)
    if rule == "quantile":
        reason = f"quantile: AUC ≥ the {quantile:g} quantile as configured, {size_text(mask0)}"
        return make(mask0, thr0, quantile, reason)

    # auto
    if not 0.0 <= auto_min_quantile <= quantile:
        raise ValueError(
            f"subgroups.auto_min_quantile = {auto_min_quantile} must lie between 0 and subgroups.quantile = {quantile}"
        )
    if n_def == 0:
        return make(mask0, thr0, quantile, "auto: no unit with a defined AUC")
    cap_mask, _ = tail_mask(a, auto_min_quantile)
    m0, cap = patients_in(mask0), patients_in(cap_mask)
    needs = {k: v for k, v in (needs or {}).items() if v is not None}
    fits = {k: v for k, v in needs.items() if v["need"] <= cap}
    unfit = {k: v for k, v in needs.items() if v["need"] > cap}
    share = f"the top {100 * (1 - auto_min_quantile):.3g} % of {plural} ({size_text(cap_mask)})"
    start = f"the {quantile:g} quantile tail ({size_text(mask0)})"

    def binding(items) -> str:
        name, v = max(items.items(), key=lambda kv: kv[1]["need"])
        return f"{name}, group {v['group']!r}: {v['n_group']} of {v['n_patients']} patients"

    extra = {"cap_patients": cap, "cap_quantile": auto_min_quantile}
    left = ""
    if unfit:
        left = (
            "; too small for a useful test even within "
            + share
            + ": "
            + ", ".join(f"{k} (needs {v['need']} patients)" for k, v in unfit.items())
        )
    if not needs:
        return make(mask0, thr0, quantile, f"auto: no attribute with two or more groups; kept {start}", **extra)
    if not fits:
        return make(
            mask0,
            thr0,
            quantile,
            f"auto: cohort too small for any useful test at {unit} level: no tail down to {share} gives every "
            f"group of any attribute a significant absence at {tail_alpha:g} "
            + "("
            + ", ".join(f"{k} needs {v['need']} patients" for k, v in needs.items())
            + f"); kept {start}",
            **extra,
        )
    need = max(v["need"] for v in fits.values())
    rule_text = f"every group's absence significant at {tail_alpha:g} needs {need} patients ({binding(fits)})"
    if need <= m0:
        return make(mask0, thr0, quantile, f"auto: kept {start}: {rule_text}{left}", **extra)
    thresholds, _, patients = _tail_ladder(a[defined], None if c is None else c[defined])
    j = int(np.argmax(patients >= need))
    thr = float(thresholds[j])
    mask = defined & (a >= thr)
    q = _equivalent_quantile(n_def, int(mask.sum()))
    return make(
        mask,
        thr,
        q,
        f"auto: {start} is too small; {rule_text}; smallest such tail: AUC ≥ {thr:.4f} "
        f"(quantile {q:.4f}), {size_text(mask)}{left}",
        **extra,
    )


def level_tail(
    auc, attributes: Mapping[str, np.ndarray], *, clusters=None, rule: str = "auto", tail_alpha: float = 0.05, **kw
) -> Tail:
    """One level's tail, shared by its attributes: :func:`choose_tail` with each attribute's
    :func:`tail_need` over the units with a defined AUC (``attributes``: name → group per unit).
    ``kw`` go to :func:`choose_tail` (``tail_alpha`` also to :func:`tail_need`)."""
    a = np.asarray(auc, dtype=np.float64)
    defined = np.isfinite(a)
    c = None if clusters is None else np.asarray(clusters, dtype=object)
    needs = None
    if rule == "auto":
        needs = {
            name: tail_need(np.asarray(g, dtype=object)[defined], None if c is None else c[defined], tail_alpha)
            for name, g in attributes.items()
        }
    return choose_tail(a, rule=rule, clusters=c, needs=needs, tail_alpha=tail_alpha, **kw)


def level_units(
    records: pd.DataFrame, record_risk: pd.DataFrame, patient_risk: pd.DataFrame, attributes: list[str]
) -> dict[str, pd.DataFrame]:
    """Per level, one row per unit: ``auc`` and one column per attribute (the unit's group).

    Records: every row of ``record_risk`` (with its ``patient_id``, the cluster of the
    patient-clustered test) joined to its attributes in ``records``.
    Patients: every row of ``patient_risk`` (with ``n_records``, the stratum of the patient
    permutation test); the group is that of the patient's **first record** in the order of
    ``records`` (a rule independent of the model; module notes); a patient without a defined
    AUC keeps NaN AUC.
    """
    for name, df, cols in (
        ("records", records, ["record_id", "patient_id", *attributes]),
        ("record_risk", record_risk, ["record_id", "patient_id", "auc"]),
        ("patient_risk", patient_risk, ["patient_id", "auc", "n_records"]),
    ):
        missing = [c for c in cols if c not in df.columns]
        if missing:
            raise KeyError(f"{name} table lacks column(s) {missing}; has {list(df.columns)}")
    attrs = records.set_index("record_id")[attributes]
    rec = record_risk[["record_id", "patient_id", "auc"]].join(attrs, on="record_id")
    unknown = rec[attributes[0]].isna() if attributes else pd.Series(False, index=rec.index)
    if unknown.any():
        raise KeyError(f"record_risk has record_id(s) not in records: {rec.loc[unknown, 'record_id'].head(5).tolist()}")
    first = records.assign(patient_id=records["patient_id"].astype(str)).drop_duplicates("patient_id")
    pat = patient_risk[["patient_id", "auc", "n_records"]].join(
        first.set_index("patient_id")[attributes], on=patient_risk["patient_id"].astype(str)
    )
    return {"record": rec, "patient": pat}


def attribute_table(
    groups,
    auc,
    quantile: float,
    *,
    order: list[str] | None = None,
    clusters=None,
    permutations: int = 10_000,
    cluster_rng: np.random.Generator | None = None,
    tail: Tail | None = None,
    tail_alpha: float = 0.05,
    strata=None,
    **test_kw,
) -> pd.DataFrame:
    """Tail-composition rows (one per group) and the test of one attribute at one level.

    ``groups`` and ``auc`` are aligned per unit. Groups are those present among units with a
    defined AUC, in ``order`` where given (others follow, sorted). ``test_kw`` go to
    :func:`goodness_of_fit` (the naive test: units independent, columns ``test``, ``p``).

    The tail is ``tail`` (from :func:`choose_tail`, for the whole level) or else the units at
    or above ``quantile``. ``n_tail_needed`` is this attribute's :func:`tail_need` at
    ``tail_alpha`` (in patients); a tail with fewer patients gets a ``note`` that it is too
    small for a useful test (under ``auto``: that the cohort is), naming the binding group.

    ``clusters`` (the patient of each unit, for records) adds the patient-clustered test
    :func:`cluster_permutation_test` with ``permutations`` draws from ``cluster_rng``
    (``p_cluster``, ``design_effect``, ``n_tail_patients``, ``cluster_test`` =
    ``patient_permutation``). Without it the units are patients (``cluster_test`` =
    ``patients_stratified``, design effect 1) and ``p_cluster`` is the permutation test of
    patients within ``strata`` (their records per patient; :func:`stratified_permutation_test`,
    one stratum when None; the multinomial ``p`` when no ``cluster_rng`` is given).
    """
    g = pd.Series(np.asarray(groups, dtype=object), dtype=object)
    g = g.where(g.isna(), g.astype(str))  # a patient without a defined AUC has no group (NaN)
    a = np.asarray(auc, dtype=np.float64)
    if len(g) != len(a):
        raise ValueError(f"groups ({len(g)}) and auc ({len(a)}) differ in length")
    defined = np.isfinite(a)
    if tail is None:
        tail = choose_tail(a, rule="quantile", quantile=quantile, clusters=clusters)
    if len(tail.mask) != len(a):
        raise ValueError(f"tail mask ({len(tail.mask)}) and auc ({len(a)}) differ in length")
    in_tail, threshold = np.asarray(tail.mask, dtype=bool), tail.threshold
    need = tail_need(g[defined], None if clusters is None else np.asarray(clusters, dtype=object)[defined], tail_alpha)
    overall = g[defined].value_counts()
    tail_counts = g[in_tail].value_counts()
    present = list(overall.index)
    ordered = _ordered(present, order)
    dropped = sorted(set(g[~defined].dropna()) - set(present))
    big_n = overall.reindex(ordered).to_numpy(np.int64)
    o = tail_counts.reindex(ordered, fill_value=0).to_numpy(np.int64)
    n, total = int(o.sum()), int(big_n.sum())
    test = (
        goodness_of_fit(o, big_n, **test_kw)
        if len(ordered)
        else {"test": TEST_NONE, "chi2": np.nan, "dof": 0, "p": np.nan, "note": "no unit with a defined AUC: no test"}
    )
    cluster = {"cluster_test": TEST_NONE, "p_cluster": np.nan, "design_effect": np.nan, "n_tail_patients": n}
    if clusters is None:
        p_units = test["p"]
        if np.isfinite(test["p"]) and cluster_rng is not None:
            codes = pd.Categorical(g[defined], categories=ordered).codes
            st = np.zeros(int(defined.sum())) if strata is None else np.asarray(strata)[defined]
            p_units = stratified_permutation_test(
                codes, in_tail[defined], st, permutations=permutations, rng=cluster_rng
            )
        cluster.update(cluster_test=CLUSTER_UNITS, p_cluster=p_units, design_effect=1.0 if n else np.nan)
    else:
        c = np.asarray(clusters, dtype=object)
        if len(c) != len(a):
            raise ValueError(f"clusters ({len(c)}) and auc ({len(a)}) differ in length")
        cluster["n_tail_patients"] = int(pd.unique(c[in_tail]).size)
        if np.isfinite(test["p"]):
            if cluster_rng is None:
                raise ValueError("attribute_table: the patient-clustered test needs a seeded cluster_rng")
            codes = pd.Categorical(g[defined], categories=ordered).codes
            res = cluster_permutation_test(
                codes,
                in_tail[defined],
                c[defined],
                big_n / total * n,
                permutations=permutations,
                rng=cluster_rng,
            )
            cluster.update(cluster_test=CLUSTER_PERMUTATION, p_cluster=res["p"], design_effect=res["design_effect"])
    notes = [test["note"]] if test["note"] else []
    if need is not None and cluster["n_tail_patients"] < need["need"]:
        who = f"group {need['group']!r} ({need['n_group']} of {need['n_patients']} patients)"
        if tail.rule == "auto" and tail.cap_patients is not None and need["need"] > tail.cap_patients:
            notes.append(
                f"cohort too small for a useful test: {who} would need a tail of at least {need['need']} "
                f"patients for its absence to be significant at {tail_alpha:g}, the largest auto tail "
                f"(the top {100 * (1 - tail.cap_quantile):.3g} %) has {tail.cap_patients} patients",
            )
        else:
            notes.append(
                f"tail too small for a useful test: {who} needs a tail of at least {need['need']} patients "
                f"for its absence to be significant at {tail_alpha:g}, the tail has {cluster['n_tail_patients']}",
            )
    absent = [x for x, c in zip(ordered, o, strict=True) if c == 0]
    if absent and n > 0:
        notes.append("absent from the tail: " + ", ".join(absent))
    if dropped:
        notes.append("only among units with undefined AUC, left out: " + ", ".join(dropped))
    share = big_n / total if total else np.full(len(ordered), np.nan)
    expected = share * n
    with np.errstate(divide="ignore", invalid="ignore"):
        residual = np.where(expected > 0, (o - expected) / np.sqrt(expected), np.nan)
        rel = np.where(expected > 0, o / expected - 1.0, np.nan)
    return pd.DataFrame(
        {
            "group": ordered,
            "n_overall": big_n,
            "share_overall": share,
            "n_tail": o,
            "share_tail": o / n if n else np.full(len(ordered), np.nan),
            "expected": expected,
            "residual": residual,
            "rel_change": rel,
            "n_total": total,
            "n_tail_total": n,
            "n_undefined": int((~defined).sum()),
            "quantile": tail.quantile,
            "threshold": threshold,
            "test": test["test"],
            "chi2": test["chi2"],
            "dof": test["dof"],
            "p": test["p"],
            "note": "; ".join(notes),
            **cluster,
            "tail_rule": tail.rule,
            "n_tail_needed": need["need"] if need is not None else np.nan,
            "tail_reason": tail.reason,
        }
    )


def test_seed(seed: int, *key: str) -> np.random.Generator:
    """A generator seeded from the run's seed and a test's key (stable across processes)."""
    return np.random.default_rng([seed, zlib.crc32("/".join(key).encode())])


def experiment_tests(
    records: pd.DataFrame,
    record_risk: pd.DataFrame,
    patient_risk: pd.DataFrame,
    *,
    dataset: str,
    experiment: str,
    attributes: list[str],
    quantile: float = 0.99,
    orders: dict[str, list[str]] | None = None,
    seed: int = 0,
    min_expected: float = 5.0,
    draws: int = 100_000,
    exact_max_outcomes: int = 500_000,
    permutations: int = 10_000,
    tail: str = "auto",
    count: int | Mapping[str, int] | None = None,
    threshold: float | Mapping[str, float] | None = None,
    auto_min_quantile: float = 0.8,
    tail_alpha: float = 0.05,
) -> pd.DataFrame:
    """All attributes × both levels of one experiment, unadjusted (``p_adj``, ``p_cluster_adj`` NaN).

    At record level the patient-clustered test (:func:`cluster_permutation_test`,
    ``permutations`` draws) is added beside the naive one; at patient level the units are
    the patients and ``p_cluster`` is their permutation test within strata of equal records
    per patient (:func:`stratified_permutation_test`).

    Each level gets its own tail, :func:`choose_tail` under ``tail`` (``quantile`` by default;
    ``count`` and ``threshold`` may be given once or per level as ``{"record": …, "patient":
    …}``), shared by the level's attributes; ``auto`` sizes it for all of them together.
    :func:`settings_kwargs` turns the config block ``subgroups`` into these arguments.
    """
    units = level_units(records, record_risk, patient_risk, attributes)
    parts = []
    for level in LEVELS:
        u = units[level]
        auc = u["auc"].to_numpy(dtype=np.float64)
        clusters = u["patient_id"].to_numpy(dtype=object) if level == "record" else None
        chosen = level_tail(
            auc,
            {attr: u[attr].to_numpy(dtype=object) for attr in attributes},
            clusters=clusters,
            rule=tail,
            quantile=quantile,
            count=_per_level(count, level, "count"),
            threshold=_per_level(threshold, level, "threshold"),
            auto_min_quantile=auto_min_quantile,
            tail_alpha=tail_alpha,
            unit=level,
        )
        for attr in attributes:
            t = attribute_table(
                u[attr],
                auc,
                quantile,
                order=(orders or {}).get(attr),
                min_expected=min_expected,
                draws=draws,
                exact_max_outcomes=exact_max_outcomes,
                rng=test_seed(seed, dataset, experiment, attr, level),
                clusters=clusters,
                permutations=permutations,
                cluster_rng=test_seed(seed, dataset, experiment, attr, level, "patients"),
                tail=chosen,
                tail_alpha=tail_alpha,
                strata=None if level == "record" else u["n_records"].to_numpy(),
            )
            parts.append(t.assign(dataset=dataset, experiment=experiment, attribute=attr, level=level))
    out = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=COLUMNS)
    out["p_adj"] = np.nan
    out["p_cluster_adj"] = np.nan
    out["p_adjust_method"] = ""
    return out[COLUMNS]


def settings_kwargs(settings: Mapping) -> dict:
    """Keyword arguments of :func:`experiment_tests` from the config block ``subgroups`` (its
    schema defaults filled in)."""
    s = complete(settings, "subgroups")
    return {
        "quantile": s["quantile"],
        "seed": s["seed"],
        "min_expected": s["min_expected"],
        "draws": s["monte_carlo_draws"],
        "exact_max_outcomes": s["exact_max_outcomes"],
        "permutations": s["cluster_permutations"],
        "tail": s["tail"],
        "count": s.get("count"),
        "threshold": s.get("threshold"),
        "auto_min_quantile": s["auto_min_quantile"],
        "tail_alpha": s["tail_alpha"],
    }


def concat_tests(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """The run's test table: every experiment's tests, one below the other.

    An experiment whose data set has no subgroups has a table with the header only (read back
    from TSV its columns are all ``object``); it adds no rows and is left out, so that it cannot
    turn the numeric columns of the others into ``object`` (then the p-value adjustment fails).
    When no experiment has a test, the first (empty) table is the run's.
    """
    rows = [p for p in parts if len(p)]
    if not rows:
        return parts[0].copy() if parts else pd.DataFrame(columns=COLUMNS)
    return pd.concat(rows, ignore_index=True)


def adjust_pvalues(table: pd.DataFrame, method: str = "fdr_bh") -> pd.DataFrame:
    """Adjust the p-value of every test in ``table`` together (one p per :data:`TEST_KEY`).

    ``statsmodels.stats.multitest.multipletests`` over the defined p-values; tests with
    NaN p keep NaN. Returns a copy with ``p_adj`` and ``p_adjust_method`` filled in, and
    ``p_cluster_adj`` from ``p_cluster`` the same way (one family, the same method) when
    the table has it.
    """
    from statsmodels.stats.multitest import multipletests

    missing = [c for c in TEST_KEY + ["p"] if c not in table.columns]
    if missing:
        raise KeyError(f"test table lacks column(s) {missing}")
    pcols = [c for c in ("p", "p_cluster") if c in table.columns]
    tests = table.drop_duplicates(TEST_KEY)[TEST_KEY + pcols].reset_index(drop=True)
    for col in pcols:
        if (table.groupby(TEST_KEY, dropna=False)[col].nunique(dropna=False) > 1).any():
            raise ValueError(
                f"test table has different {col} values within one test (dataset, experiment, attribute, level)"
            )
    for col in pcols:
        ok = tests[col].notna().to_numpy()
        tests[f"{col}_adj"] = np.nan
        if ok.any():
            tests.loc[ok, f"{col}_adj"] = multipletests(tests.loc[ok, col].to_numpy(), method=method)[1]
    ok = tests["p"].notna().to_numpy()
    adj = [f"{c}_adj" for c in pcols]
    out = table.drop(columns=[*adj, "p_adjust_method"], errors="ignore").merge(
        tests[TEST_KEY + adj], on=TEST_KEY, how="left"
    )
    out["p_adjust_method"] = f"{method} over {int(ok.sum())} tests"
    return out[[c for c in COLUMNS if c in out.columns]]


def composition_table(table: pd.DataFrame) -> pd.DataFrame:
    """Supplementary table: tail and overall composition (counts and shares) per group."""
    cols = [
        "level",
        "attribute",
        "group",
        "n_overall",
        "share_overall",
        "n_tail",
        "share_tail",
        "n_total",
        "n_tail_total",
        "quantile",
        "threshold",
        "tail_rule",
    ]
    return table[[c for c in cols if c in table.columns]].reset_index(drop=True)


def cut_tables(tests: pd.DataFrame, tables: list[Mapping], source: str = "the run's test table") -> dict:
    """Each experiment's tables, cut from the run-wide adjusted test table ``tests``.

    ``tables`` lists entries ``{dataset, experiment, attribute, path}``
    (:func:`mia_audit.pipeline.plan.subgroup_tables`). An entry with an attribute gets that attribute's
    rows of the experiment (both levels, every column, in table order); an attribute without
    rows there is a :class:`~mia_audit.errors.DataError` naming ``source``. An entry without one
    (``attribute`` None) gets the :func:`composition_table` of all the experiment's rows (only
    its header for an experiment whose data set has no subgroups). Returns ``{path: table}``
    in the order of ``tables``.
    """
    missing = [c for c in ("dataset", "experiment", "attribute") if c not in tests.columns]
    if missing:
        raise DataError(f"{source} lacks column(s) {missing}")
    out = {}
    for t in tables:
        rows = tests[(tests["dataset"] == t["dataset"]) & (tests["experiment"] == t["experiment"])]
        if t["attribute"] is None:
            out[t["path"]] = composition_table(rows)
            continue
        cut = rows[rows["attribute"] == t["attribute"]]
        if cut.empty:
            raise DataError(
                f"{source} has no rows for dataset {t['dataset']!r}, experiment {t['experiment']!r}, "
                f"attribute {t['attribute']!r}"
            )
        out[t["path"]] = cut
    return out


def group_orders(subgroup_config: dict) -> dict[str, list[str]]:
    """Display order of each attribute's groups from the data-set config (bin labels, map values)."""
    out = {}
    for attr, spec in subgroup_config.items():
        if spec.get("bins") is not None:
            bins = spec["bins"]
            out[attr] = list(spec.get("labels") or [f"[{lo:g}, {hi:g})" for lo, hi in pairwise(bins)])
        elif spec.get("map"):
            out[attr] = list(dict.fromkeys(spec["map"].values()))
        else:
            out[attr] = []
    return out


def _natural(x: str):
    try:
        return (0, float(x), x)
    except ValueError:
        return (1, 0.0, x)


def _ordered(present: list[str], order: list[str] | None) -> list[str]:
    """Groups in the configured order, then the rest (numbers numerically), "missing" last."""
    order = [x for x in (order or []) if x != "missing"]
    first = [x for x in order if x in present]
    rest = sorted((x for x in present if x not in order and x != "missing"), key=_natural)
    return first + rest + (["missing"] if "missing" in present else [])
