"""Who carries the risk: composition of the most exposed records and patients by subgroup.

The *tail* of a level (records or patients) is every unit whose MIA AUC is at or above the
``quantile`` of the defined AUCs (``numpy.quantile``, linear interpolation; ties at the
threshold all join the tail). Units with an undefined (NaN) AUC are excluded from both the
tail and the overall composition, and counted (``n_undefined``).

At patient level a patient's AUC is their worst record's AUC (see
:func:`mia_audit.stats.patient_risk`) and **the patient's group is the group of that worst
record** — the record that defines the patient's exposure. (For attributes that change over
a patient's visits, such as binned age, this is the group the patient was in when most
exposed.)

For one attribute with groups g = 1..k, overall counts N_g (share π_g = N_g / N) and tail
counts O_g (tail size n = Σ O_g):

* expected count   E_g = π_g · n
* Pearson residual r_g = (O_g − E_g) / √E_g
* relative change  O_g / E_g − 1
* goodness-of-fit  X² = Σ r_g², dof = k − 1, H0: the tail is a multinomial(n, π) sample.

The p-value comes from ``scipy.stats.chisquare`` when every E_g ≥ 5 (Cochran 1954). Otherwise
the asymptotic χ² law is not trusted and P(X² ≥ X²_obs | H0) is computed exactly by
enumerating every composition of n into k groups (when there are at most
``exact_max_outcomes`` of them), or estimated by Monte-Carlo from ``draws`` seeded
multinomial samples as (1 + #{X²_sim ≥ X²_obs}) / (1 + draws) (Davison & Hinkley 1997,
§4.2; Phipson & Smyth 2010) — the same statistic and ordering as the exact test, so the two
agree up to Monte-Carlo error. The ``test`` column says which was used.

No p-value is invented: an attribute with one group only, an empty tail, or a tail smaller
than the number of groups (at least k − n groups must be empty, whatever the truth) gets
``p = NaN``, ``test = "none"`` and a ``note`` saying why. Groups absent from the tail keep
their row (O = 0, residual −√E, relative change −1) and are named in the note.

P-values are adjusted across every test of a run (all data sets, experiments, attributes
and both levels together) with ``statsmodels.stats.multitest.multipletests``.
"""

from __future__ import annotations

import itertools
import math
import zlib
from itertools import pairwise

import numpy as np
import pandas as pd
from scipy import stats as sps

LEVELS = ("record", "patient")
TEST_CHI2 = "chi2"
TEST_EXACT = "exact"
TEST_MONTE_CARLO = "monte_carlo"
TEST_NONE = "none"
#: ``cluster_test`` values: records tested with patients as clusters, or patients as the units
CLUSTER_PERMUTATION = "patient_permutation"
CLUSTER_UNITS = "patients_are_units"

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


def level_units(
    records: pd.DataFrame, record_risk: pd.DataFrame, patient_risk: pd.DataFrame, attributes: list[str]
) -> dict[str, pd.DataFrame]:
    """Per level, one row per unit: ``auc`` and one column per attribute (the unit's group).

    Records: every row of ``record_risk`` (with its ``patient_id``, the cluster of the
    patient-clustered test) joined to its attributes in ``records``.
    Patients: every row of ``patient_risk``; the group is that of the patient's worst record
    (``worst_record_id``); a patient without a defined AUC has no worst record and NaN AUC.
    """
    for name, df, cols in (
        ("records", records, ["record_id", *attributes]),
        ("record_risk", record_risk, ["record_id", "patient_id", "auc"]),
        ("patient_risk", patient_risk, ["patient_id", "auc", "worst_record_id"]),
    ):
        missing = [c for c in cols if c not in df.columns]
        if missing:
            raise KeyError(f"{name} table lacks column(s) {missing}; has {list(df.columns)}")
    attrs = records.set_index("record_id")[attributes]
    rec = record_risk[["record_id", "patient_id", "auc"]].join(attrs, on="record_id")
    unknown = rec[attributes[0]].isna() if attributes else pd.Series(False, index=rec.index)
    if unknown.any():
        raise KeyError(f"record_risk has record_id(s) not in records: {rec.loc[unknown, 'record_id'].head(5).tolist()}")
    pat = patient_risk[["patient_id", "auc", "worst_record_id"]].join(attrs, on="worst_record_id")
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
    **test_kw,
) -> pd.DataFrame:
    """Tail-composition rows (one per group) and the test of one attribute at one level.

    ``groups`` and ``auc`` are aligned per unit. Groups are those present among units with a
    defined AUC, in ``order`` where given (others follow, sorted). ``test_kw`` go to
    :func:`goodness_of_fit` (the naive test: units independent, columns ``test``, ``p``).

    ``clusters`` (the patient of each unit, for records) adds the patient-clustered test
    :func:`cluster_permutation_test` with ``permutations`` draws from ``cluster_rng``
    (``p_cluster``, ``design_effect``, ``n_tail_patients``, ``cluster_test`` =
    ``patient_permutation``). Without it the units are patients: ``p_cluster`` is ``p``,
    the design effect 1 and ``cluster_test`` = ``patients_are_units``.
    """
    g = pd.Series(np.asarray(groups, dtype=object), dtype=object)
    g = g.where(g.isna(), g.astype(str))  # a patient without a defined AUC has no group (NaN)
    a = np.asarray(auc, dtype=np.float64)
    if len(g) != len(a):
        raise ValueError(f"groups ({len(g)}) and auc ({len(a)}) differ in length")
    defined = np.isfinite(a)
    in_tail, threshold = tail_mask(a, quantile)
    overall = g[defined].value_counts()
    tail = g[in_tail].value_counts()
    present = list(overall.index)
    ordered = _ordered(present, order)
    dropped = sorted(set(g[~defined].dropna()) - set(present))
    big_n = overall.reindex(ordered).to_numpy(np.int64)
    o = tail.reindex(ordered, fill_value=0).to_numpy(np.int64)
    n, total = int(o.sum()), int(big_n.sum())
    test = (
        goodness_of_fit(o, big_n, **test_kw)
        if len(ordered)
        else {"test": TEST_NONE, "chi2": np.nan, "dof": 0, "p": np.nan, "note": "no unit with a defined AUC: no test"}
    )
    cluster = {"cluster_test": TEST_NONE, "p_cluster": np.nan, "design_effect": np.nan, "n_tail_patients": n}
    if clusters is None:
        cluster.update(cluster_test=CLUSTER_UNITS, p_cluster=test["p"], design_effect=1.0 if n else np.nan)
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
            "quantile": quantile,
            "threshold": threshold,
            "test": test["test"],
            "chi2": test["chi2"],
            "dof": test["dof"],
            "p": test["p"],
            "note": "; ".join(notes),
            **cluster,
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
) -> pd.DataFrame:
    """All attributes × both levels of one experiment, unadjusted (``p_adj``, ``p_cluster_adj`` NaN).

    At record level the patient-clustered test (:func:`cluster_permutation_test`,
    ``permutations`` draws) is added beside the naive one; at patient level the units are
    the patients and ``p_cluster`` = ``p``.
    """
    units = level_units(records, record_risk, patient_risk, attributes)
    parts = []
    for level in LEVELS:
        for attr in attributes:
            t = attribute_table(
                units[level][attr],
                units[level]["auc"],
                quantile,
                order=(orders or {}).get(attr),
                min_expected=min_expected,
                draws=draws,
                exact_max_outcomes=exact_max_outcomes,
                rng=test_seed(seed, dataset, experiment, attr, level),
                clusters=units[level]["patient_id"] if level == "record" else None,
                permutations=permutations,
                cluster_rng=test_seed(seed, dataset, experiment, attr, level, "patients"),
            )
            parts.append(t.assign(dataset=dataset, experiment=experiment, attribute=attr, level=level))
    out = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=COLUMNS)
    out["p_adj"] = np.nan
    out["p_cluster_adj"] = np.nan
    out["p_adjust_method"] = ""
    return out[COLUMNS]


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
    ]
    return table[cols].reset_index(drop=True)


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
