"""Aggregate membership-inference attacks in the standard protocol.

A few target models are attacked with every other model of the ensemble as a reference;
ROC, AUC and TPR at low FPR are computed per target with its membership as labels, which no
attack function ever receives. LiRA (online, offline, fixed variance), RMIA (online,
offline) and the loss threshold; views are combined as their papers do. One registry,
:data:`ATTACKS`, holds every attack's name, label, scoring function and the references it
needs; the schema, the tables, the figures and the external audits take their attacks from it.
The protocol, the handling of bad input and the differences from the reference code:
docs/methods.md, "Aggregate attacks".
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import special
from scipy import stats as sps

from mia_audit import roc
from mia_audit.errors import ConfigError, DataError

#: FPR levels of the aggregate-attack table
FPRS = (0.001, 0.01, 0.1)
#: floor on Gaussian SDs so a record with constant reference signals gets a finite score
MIN_SD = 1e-6
#: default offline-RMIA ``a`` where it cannot be tuned (one reference model); the value
#: Zarifzadeh et al. report for their offline setting
DEFAULT_RMIA_A = 0.3
#: grid searched when tuning ``a``
A_GRID = np.round(np.linspace(0.0, 1.0, 21), 10)

STATUS_OK = "ok"
STATUS_TARGET_NONFINITE = "target_nonfinite"
STATUS_NO_SCORES = "no_scorable_records"
#: ``tpr_status`` of a row with a TPR left NaN because its FPR level is below 1 / non-members
STATUS_UNRESOLVABLE_FPR = "fpr_below_min_resolvable"


# --------------------------------------------------------------------------- helpers


def _as_cube(conf, name: str = "conf") -> np.ndarray:
    """(models, records) or (models, records, views) → float64 (models, records, views)."""
    c = np.asarray(conf, dtype=np.float64)
    if c.ndim == 2:
        c = c[:, :, None]
    if c.ndim != 3:
        raise ValueError(f"{name} must be (models, records) or (models, records, views); got shape {c.shape}")
    return c


def _check_member(member, conf: np.ndarray, name: str = "member") -> np.ndarray:
    m = np.asarray(member)
    if m.dtype != bool:
        raise TypeError(f"{name} must be a bool array, got dtype {m.dtype}")
    if m.shape != conf.shape[:2]:
        raise ValueError(f"{name} must be (models, records) = {conf.shape[:2]}, got {m.shape}")
    return m


def split_targets(n_models: int, n_targets: int = 10, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Seeded choice of ``n_targets`` target models; all the others are references.

    Returns sorted (targets, references) index arrays. Raises ``ValueError`` naming
    ``audit.n_targets`` unless 1 ≤ n_targets and at least 2 reference models remain.
    """
    if n_targets < 1 or n_models - n_targets < 2:
        raise ValueError(
            f"audit.n_targets = {n_targets} with {n_models} models leaves {n_models - n_targets} "
            f"reference models; need 1 ≤ audit.n_targets ≤ {n_models - 2} (at least 2 references)"
        )
    rng = np.random.default_rng(seed)
    targets = np.sort(rng.choice(n_models, size=n_targets, replace=False))
    refs = np.setdiff1d(np.arange(n_models), targets)
    return targets, refs


def nonfinite_models(conf) -> np.ndarray:
    """Indices of models with any non-finite confidence (diverged models)."""
    c = _as_cube(conf)
    return np.flatnonzero(~np.isfinite(c).all(axis=(1, 2)))


def _gaussian_moments(ref_conf: np.ndarray, mask: np.ndarray):
    """Per (record, view) mean, variance (ddof=1) and count over the models in ``mask``.

    ref_conf (M, R, V), mask (M, R). Mean is NaN where n = 0, variance where n < 2.
    """
    w = mask[:, :, None].astype(np.float64)
    n = w.sum(axis=0)  # (R, 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mu = (ref_conf * w).sum(axis=0) / n
        dev = (ref_conf - mu) * w
        var = (dev * dev).sum(axis=0) / (n - 1)
    mu = np.where(n >= 1, mu, np.nan)
    var = np.where(n >= 2, var, np.nan)
    return mu, var, n[:, 0].astype(np.int64)


def _pooled_var(var: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Pooled within-record variance per view: Σ (n_r − 1) s_r² / Σ (n_r − 1)."""
    ok = n >= 2
    dof = (n[ok] - 1).astype(np.float64)[:, None]
    if dof.sum() == 0:
        raise ValueError("fixed-variance LiRA: no record has 2 reference samples on this side")
    return (var[ok] * dof).sum(axis=0) / dof.sum()


def _check_refs(target_conf, ref_conf, ref_member):
    t = _as_cube(target_conf, "target_conf")
    r = _as_cube(ref_conf, "ref_conf")
    m = _check_member(ref_member, r, "ref_member")
    if t.shape[1:] != r.shape[1:]:
        raise ValueError(f"target_conf {t.shape} and ref_conf {r.shape} differ in (records, views)")
    if not np.isfinite(r).all():
        raise ValueError(f"ref_conf has non-finite values in models {nonfinite_models(r).tolist()}; drop them first")
    if r.shape[0] < 1:
        raise ValueError("no reference models")
    return t, r, m


# --------------------------------------------------------------------------- LiRA


def _lira(target_conf, ref_conf, ref_member, online: bool, fixed: bool, min_sd: float) -> np.ndarray:
    t, r, m = _check_refs(target_conf, ref_conf, ref_member)
    mu_out, var_out, n_out = _gaussian_moments(r, ~m)
    need = 1 if fixed else 2
    ok = n_out >= need
    if fixed:
        var_out = np.broadcast_to(_pooled_var(var_out, n_out), mu_out.shape)
    sd_out = np.maximum(np.sqrt(var_out), min_sd)
    if online:
        mu_in, var_in, n_in = _gaussian_moments(r, m)
        ok &= n_in >= need
        if fixed:
            var_in = np.broadcast_to(_pooled_var(var_in, n_in), mu_in.shape)
        sd_in = np.maximum(np.sqrt(var_in), min_sd)
        score = (sps.norm.logpdf(t, mu_in, sd_in) - sps.norm.logpdf(t, mu_out, sd_out)).sum(axis=-1)
    else:
        score = -sps.norm.logsf(t, mu_out, sd_out).sum(axis=-1)
    return np.where(ok[None, :], score, np.nan)


def lira_online(target_conf, ref_conf, ref_member, *, min_sd: float = MIN_SD) -> np.ndarray:
    r"""LiRA online (Carlini et al. 2022, Alg. 1): per-record Gaussian likelihood ratio.

    .. math:: s(x) = \sum_v \log\mathcal N(\varphi_v; \mu_{in,v}, \sigma_{in,v}^2)
                      - \log\mathcal N(\varphi_v; \mu_{out,v}, \sigma_{out,v}^2)

    with μ, σ (ddof=1) of the reference models that did / did not train on the record.

    Parameters
    ----------
    target_conf : (targets, records[, views]) φ of the attacked models.
    ref_conf : (refs, records[, views]) finite φ of the reference models.
    ref_member : (refs, records) bool membership of the reference models.

    Returns (targets, records) float64 scores; NaN (excluded) where a record has fewer
    than 2 in- or out-references.
    """
    return _lira(target_conf, ref_conf, ref_member, online=True, fixed=False, min_sd=min_sd)


def lira_offline(target_conf, ref_conf, ref_member, *, min_sd: float = MIN_SD) -> np.ndarray:
    r"""LiRA offline (Carlini et al. 2022, §VI-C): one-sided test against the out-Gaussian.

    .. math:: s(x) = -\sum_v \log \Pr_{Z\sim\mathcal N(\mu_{out,v},\sigma_{out,v}^2)}[Z \ge \varphi_v]

    (``scipy.stats.norm.logsf``). Only out-references are used. NaN where a record has
    fewer than 2 out-references.
    """
    return _lira(target_conf, ref_conf, ref_member, online=False, fixed=False, min_sd=min_sd)


def lira_online_fixed(target_conf, ref_conf, ref_member, *, min_sd: float = MIN_SD) -> np.ndarray:
    """LiRA online with one global variance per side and view (Carlini et al.'s fixed variance).

    As :func:`lira_online`, but σ_in² and σ_out² are the pooled within-record variances
    Σ_r (n_r − 1) s_r² / Σ_r (n_r − 1) over all records, so only the means are per record
    (needs ≥ 1 in- and ≥ 1 out-reference per record).
    """
    return _lira(target_conf, ref_conf, ref_member, online=True, fixed=True, min_sd=min_sd)


def lira_offline_fixed(target_conf, ref_conf, ref_member, *, min_sd: float = MIN_SD) -> np.ndarray:
    """LiRA offline with the pooled global out-variance (see :func:`lira_online_fixed`)."""
    return _lira(target_conf, ref_conf, ref_member, online=False, fixed=True, min_sd=min_sd)


# --------------------------------------------------------------------------- RMIA


def log_prob_from_signal(conf) -> np.ndarray:
    r"""log p of the true class from φ, averaged over views in probability space.

    p = sigmoid(φ) (φ is the log-odds of the true class), so
    :math:`\log \bar p = \operatorname{logsumexp}_v \log\sigma(\varphi_v) - \log V`.
    conf (models, records[, views]) → (models, records).
    """
    c = _as_cube(conf)
    return special.logsumexp(special.log_expit(c), axis=-1) - np.log(c.shape[-1])


def _log_mean_prob(log_p: np.ndarray, mask: np.ndarray):
    """log of the mean of p over the models in ``mask``, per record; −inf/NaN-free count."""
    n = mask.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        lm = special.logsumexp(np.where(mask, log_p, -np.inf), axis=0) - np.log(n)
    return np.where(n > 0, lm, np.nan), n


def population_indices(n_records: int, population: int | None = None, seed: int = 0) -> np.ndarray:
    """Seeded sorted subset of ``population`` record indices (all records if None)."""
    if population is None or population >= n_records:
        return np.arange(n_records)
    if population < 1:
        raise ConfigError(f"population must be ≥ 1 records, got {population}")
    return np.sort(np.random.default_rng([seed, 7]).choice(n_records, size=population, replace=False))


def rmia_score_from_lr(log_lr: np.ndarray, pop: np.ndarray, gamma: float = 1.0) -> np.ndarray:
    r"""RMIA score from per-record log likelihood ratios.

    .. math:: s(x) = \frac{1}{|Z \setminus \{x\}|}\,\big|\{z \in Z\setminus\{x\}:
              \mathrm{LR}(x)/\mathrm{LR}(z) \ge \gamma\}\big|

    log_lr (targets, records), NaN where undefined (excluded, and dropped from the
    population); pop: record indices of the population Z. The record itself is never
    compared with itself.
    """
    log_lr = np.atleast_2d(np.asarray(log_lr, dtype=np.float64))
    pop = np.asarray(pop)
    in_pop = np.zeros(log_lr.shape[1], dtype=bool)
    in_pop[pop] = True
    log_gamma = np.log(gamma)
    out = np.full(log_lr.shape, np.nan)
    for i, row in enumerate(log_lr):
        lz = row[pop]
        lz = np.sort(lz[np.isfinite(lz)])
        ok = np.isfinite(row)
        thresh = row[ok] - log_gamma
        count = np.searchsorted(lz, thresh, side="right").astype(np.float64)
        self_in = in_pop[ok]
        # x in Z compares with itself (LR ratio 1): counted iff γ ≤ 1; remove it
        count -= self_in & (gamma <= 1)
        denom = lz.size - self_in
        with np.errstate(invalid="ignore", divide="ignore"):
            out[i, ok] = np.where(denom > 0, count / denom, np.nan)
    return out


def rmia_online(
    target_conf, ref_conf, ref_member, *, population: int | None = None, gamma: float = 1.0, seed: int = 0
) -> np.ndarray:
    r"""RMIA online (Zarifzadeh et al. 2024): pairwise likelihood-ratio test.

    :math:`\mathrm{LR}(x) = p(x|\theta)/\Pr(x)` with p = sigmoid(φ) averaged over views
    and :math:`\Pr(x) = \tfrac12(\bar p_{in}(x) + \bar p_{out}(x))`, the mean over
    reference models that did and did not train on x, balanced so that an uneven
    in/out split of the references does not bias Pr(x). Score: share of population
    records z (``population`` random records, default all; never x itself) with
    LR(x)/LR(z) ≥ γ. Records without an in- or out-reference are excluded (NaN).
    """
    t, r, m = _check_refs(target_conf, ref_conf, ref_member)
    lp_ref = log_prob_from_signal(r)
    l_in, n_in = _log_mean_prob(lp_ref, m)
    l_out, n_out = _log_mean_prob(lp_ref, ~m)
    with np.errstate(invalid="ignore"):  # NaN where a side has no reference: excluded below
        log_pr = np.logaddexp(l_in, l_out) - np.log(2)
    log_pr = np.where((n_in > 0) & (n_out > 0), log_pr, np.nan)
    log_lr = log_prob_from_signal(t) - log_pr
    return rmia_score_from_lr(log_lr, population_indices(t.shape[1], population, seed), gamma)


def _offline_log_pr(l_out: np.ndarray, a: float) -> np.ndarray:
    r""":math:`\log \Pr(x) = \log \tfrac12\big((1+a)\bar p_{out}(x) + (1-a)\big)`."""
    with np.errstate(divide="ignore", invalid="ignore"):  # a = 1: log 0; NaN l_out: excluded
        return np.logaddexp(np.log1p(a) + l_out, np.log1p(-a)) - np.log(2)


def _rmia_offline_given_a(t, r, m, a, pop, gamma):
    l_out, _ = _log_mean_prob(log_prob_from_signal(r), ~m)
    log_lr = log_prob_from_signal(t) - _offline_log_pr(l_out, a)
    return rmia_score_from_lr(log_lr, pop, gamma)


def tune_rmia_a(
    ref_conf,
    ref_member,
    *,
    pseudo_target: int | None = None,
    pseudo_refs: str = "rest",
    grid=A_GRID,
    population: int | None = None,
    gamma: float = 1.0,
    seed: int = 0,
) -> tuple[float, pd.DataFrame]:
    """Tune offline RMIA's ``a`` on the reference models only, never on a target.

    One reference model is the pseudo-target (``pseudo_target``, default a seeded
    choice); it is attacked with offline RMIA for each ``a`` in ``grid``, using as its
    references either one other reference model (``pseudo_refs="one"``: the pair
    setting of Zarifzadeh et al.'s one-/two-reference experiments) or all the other
    references (``"rest"``, default: the pseudo-target then sees as many references as
    the real target, less one, and the tuned ``a`` fits that regime — with one noisy
    reference the best ``a`` is much smaller than with a hundred). With exactly two
    reference models both choices are the pair. Each ``a`` is scored by the
    pseudo-target's AUC against its own, known membership, over the records with at
    least one out-reference.

    Returns (best a, table of ``a, auc``); ties go to the smallest a.
    """
    r = _as_cube(ref_conf, "ref_conf")
    m = _check_member(ref_member, r, "ref_member")
    if r.shape[0] < 2:
        raise ValueError(f"tuning offline RMIA's a needs 2 reference models, got {r.shape[0]}; give `a`")
    if pseudo_refs not in ("rest", "one"):
        raise ValueError(f"pseudo_refs must be 'rest' or 'one', got {pseudo_refs!r}")
    rng = np.random.default_rng([seed, 11])
    p = int(rng.integers(r.shape[0])) if pseudo_target is None else int(pseudo_target)
    others = np.delete(np.arange(r.shape[0]), p)
    q = others if pseudo_refs == "rest" else others[rng.integers(others.size) :][:1]
    l_out, _ = _log_mean_prob(log_prob_from_signal(r[q]), ~m[q])
    use = np.isfinite(l_out)  # records with an out-reference
    labels = m[p, use]
    if labels.all() or not labels.any():
        raise ValueError(
            f"tuning a: pseudo-target model {p} is all-in or all-out on the records its references did not train on"
        )
    lp = log_prob_from_signal(r[p : p + 1, use])
    pop = population_indices(int(use.sum()), population, seed)
    aucs = []
    for a in grid:
        s = rmia_score_from_lr(lp - _offline_log_pr(l_out[use], float(a)), pop, gamma)[0]
        ok = np.isfinite(s)
        aucs.append(roc.roc_auc(labels[ok], s[ok]))
    table = pd.DataFrame({"a": np.asarray(grid, dtype=float), "auc": aucs})
    best = float(table["a"].iloc[int(np.argmax(table["auc"].to_numpy()))])
    return best, table


def rmia_offline(
    target_conf,
    ref_conf,
    ref_member,
    *,
    a: float | None = None,
    population: int | None = None,
    gamma: float = 1.0,
    seed: int = 0,
    a_tuning: str = "rest",
) -> np.ndarray:
    r"""RMIA offline (Zarifzadeh et al. 2024): Pr(x) from out-references only.

    :math:`\Pr(x) = \tfrac12\big((1+a)\,\bar p_{out}(x) + (1-a)\big)`, the paper's linear
    approximation of the missing in-models; ``a`` is tuned with :func:`tune_rmia_a` on
    the reference models when not given (``a_tuning`` is :func:`tune_rmia_a`'s
    ``pseudo_refs``). Otherwise as :func:`rmia_online`.
    Records with no out-reference are excluded (NaN).
    """
    t, r, m = _check_refs(target_conf, ref_conf, ref_member)
    if a is None:
        a, _ = tune_rmia_a(r, m, pseudo_refs=a_tuning, population=population, gamma=gamma, seed=seed)
    if not 0.0 <= a <= 1.0:
        raise ValueError(f"offline RMIA a must be in [0, 1], got {a}")
    return _rmia_offline_given_a(t, r, m, float(a), population_indices(t.shape[1], population, seed), gamma)


# --------------------------------------------------------------------------- baseline


def loss_threshold(target_conf, ref_conf=None, ref_member=None) -> np.ndarray:
    """Loss-threshold baseline (Yeom et al. 2018): the score is the target's own φ.

    φ is a monotone function of the cross-entropy loss of the true class, so a global
    threshold on φ is the loss attack. Averaged over views. References are ignored.
    """
    return _as_cube(target_conf, "target_conf").mean(axis=-1)


# --------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class Attack:
    """One membership-inference attack: its scoring function, display label and what it needs.

    Attributes
    ----------
    name : str
        The attack's name in the config (``audit.attacks``), in tables and in figures.
    label : str
        Its display label in figure legends.
    score : callable
        ``score(target_conf, ref_conf, ref_member, **options)`` → (targets, records) float64
        scores, higher = more likely a member; NaN where a record is excluded.
    min_in, min_out : int
        Reference models that did (in) and did not (out) train on a record that the attack
        needs to score it; a record with fewer gets NaN (excluded, docs/methods.md, "Aggregate attacks").
    options : tuple of str
        The keyword arguments of :func:`attack_scores` that ``score`` takes.
    """

    name: str
    label: str
    score: Callable[..., np.ndarray]
    min_in: int
    min_out: int
    options: tuple[str, ...] = ()


_RMIA_OPTIONS = ("population", "gamma", "seed")

#: The one registry of attacks, name → :class:`Attack`, in the order of tables and figures;
#: its names are the config schema's ``audit.attacks`` enum (tested).
ATTACKS: dict[str, Attack] = {
    a.name: a
    for a in (
        Attack("lira_online", "LiRA online", lira_online, min_in=2, min_out=2),
        Attack("lira_offline", "LiRA offline", lira_offline, min_in=0, min_out=2),
        Attack("lira_online_fixed", "LiRA online, fixed var.", lira_online_fixed, min_in=1, min_out=1),
        Attack("lira_offline_fixed", "LiRA offline, fixed var.", lira_offline_fixed, min_in=0, min_out=1),
        Attack("rmia_online", "RMIA online", rmia_online, min_in=1, min_out=1, options=_RMIA_OPTIONS),
        Attack("rmia_offline", "RMIA offline", rmia_offline, min_in=0, min_out=1, options=(*_RMIA_OPTIONS, "a")),
        Attack("loss_threshold", "loss threshold", loss_threshold, min_in=0, min_out=0),
    )
}


# --------------------------------------------------------------------------- metrics


def min_resolvable_fpr(labels) -> float:
    """The smallest non-zero FPR an ROC curve over these labels can show: 1 / non-members."""
    n_neg = int((~np.asarray(labels, dtype=bool)).sum())
    return 1.0 / n_neg if n_neg else np.nan


def _resolvable(level: float, min_fpr: float) -> bool:
    # level ≥ 1/n, with a tolerance so that level = k/n exactly counts despite rounding
    return bool(level >= min_fpr * (1 - 1e-9))


def roc_metrics(scores, labels, fprs: Sequence[float] = FPRS) -> dict[str, float]:
    """AUC and TPR at fixed FPRs of one target's scores.

    TPR at FPR level α is the largest TPR on the ROC curve (:func:`mia_audit.roc.roc_curve`,
    scikit-learn's arithmetic; all thresholds kept) whose FPR is ≤ α — the attack may not exceed the FPR budget.
    With n non-members the smallest non-zero FPR is 1/n (``min_resolvable_fpr``): a
    level α below it cannot be measured (the curve has no point between FPR 0 and 1/n),
    so its TPR is NaN, never a number, and ``tpr_status`` says
    ``fpr_below_min_resolvable`` (else ``ok``).
    Non-finite scores (excluded records) are dropped and counted in ``n_excluded``.
    Keys: ``auc``, ``tpr_at_fpr_{α}`` for each α, ``n_scored``, ``n_excluded``,
    ``min_resolvable_fpr``, ``tpr_status``.
    """
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels, dtype=bool).ravel()
    if s.shape != y.shape:
        raise ValueError(f"scores {s.shape} and labels {y.shape} differ in length")
    ok = np.isfinite(s)
    s, y = s[ok], y[ok]
    if y.all() or not y.any():
        raise ValueError(f"roc_metrics needs members and non-members among the {y.size} scored records")
    fpr, tpr = roc.roc_curve(y, s, drop_intermediate=False)
    min_fpr = min_resolvable_fpr(y)
    out = {"auc": roc.roc_auc(y, s)}
    for level in fprs:
        out[f"tpr_at_fpr_{level:g}"] = float(tpr[fpr <= level].max()) if _resolvable(level, min_fpr) else np.nan
    out["n_scored"] = int(ok.sum())
    out["n_excluded"] = int((~ok).sum())
    out["min_resolvable_fpr"] = min_fpr
    out["tpr_status"] = STATUS_OK if all(_resolvable(f, min_fpr) for f in fprs) else STATUS_UNRESOLVABLE_FPR
    return out


def resolution_warning(table: pd.DataFrame, fprs: Sequence[float] = FPRS) -> str | None:
    """One line for the log when some TPR levels of a metrics table could not be resolved, else None.

    ``table`` has ``min_resolvable_fpr`` per row (:func:`roc_metrics`); the line names the
    levels left NaN, how many rows, and the range of the resolvable FPRs.
    """
    if "min_resolvable_fpr" not in table or table["min_resolvable_fpr"].isna().all():
        return None
    m = table["min_resolvable_fpr"].to_numpy(dtype=np.float64)
    bad = [f for f in fprs if np.any(np.isfinite(m) & (f < m * (1 - 1e-9)))]
    if not bad:
        return None
    rows = int(np.sum(np.isfinite(m) & (min(bad) < m * (1 - 1e-9))))
    return (
        f"TPR at FPR {', '.join(f'{f:g}' for f in bad)} not reported (NaN, tpr_status "
        f"{STATUS_UNRESOLVABLE_FPR!r}) for {rows} of {len(table)} rows: with n non-members the smallest "
        f"measurable FPR is 1/n, here {np.nanmin(m):.3g} to {np.nanmax(m):.3g}"
    )


def mean_roc(scores_by_target, labels_by_target, grid=None) -> pd.DataFrame:
    """Mean ROC over targets on a log-spaced FPR grid, for log–log ROC plots.

    For each target, TPR(α) on the grid is the largest TPR with FPR ≤ α (as in
    :func:`roc_metrics`). The curve stops at the largest of the targets'
    :func:`min_resolvable_fpr` (below it at least one target's TPR cannot be measured):
    grid points below it are dropped and that FPR is the first point. Returns ``fpr,
    tpr_mean, tpr_sd`` (ddof=1, 0 for one target), ``n_targets`` and
    ``min_resolvable_fpr``. ``grid`` defaults to 10⁻⁴ … 1, 200 points.
    """
    grid = np.logspace(-4, 0, 200) if grid is None else np.asarray(grid, dtype=np.float64)
    fits = []
    for s, y in zip(scores_by_target, labels_by_target, strict=True):
        s = np.asarray(s, dtype=np.float64).ravel()
        y = np.asarray(y, dtype=bool).ravel()
        ok = np.isfinite(s)
        fpr, tpr = roc.roc_curve(y[ok], s[ok], drop_intermediate=False)
        fits.append((fpr, tpr, min_resolvable_fpr(y[ok])))
    if not fits:
        raise ValueError("mean_roc: no targets")
    start = max(m for _, _, m in fits)
    grid = np.unique(np.r_[start, grid[grid >= start * (1 - 1e-9)]])
    curves = []
    for fpr, tpr, _ in fits:
        # fpr is non-decreasing: the last index with fpr ≤ α carries the largest tpr
        idx = np.searchsorted(fpr, grid * (1 + 1e-12), side="right") - 1
        curves.append(tpr[idx])
    c = np.vstack(curves)
    sd = c.std(axis=0, ddof=1) if len(c) > 1 else np.zeros(grid.size)
    return pd.DataFrame(
        {"fpr": grid, "tpr_mean": c.mean(axis=0), "tpr_sd": sd, "n_targets": len(c), "min_resolvable_fpr": start}
    )


# --------------------------------------------------------------------------- protocol


def attack_scores(
    conf,
    member,
    *,
    n_targets: int = 10,
    seed: int = 0,
    attacks: Sequence[str] = tuple(ATTACKS),
    population: int | None = None,
    gamma: float = 1.0,
    a: float | None = None,
    a_tuning: str = "rest",
) -> dict:
    """Scores of every attack for every target in the standard protocol.

    Returns a dict with ``targets`` (model indices), ``references`` (finite reference
    models used), ``nonfinite_models``, ``labels`` (targets, records) bool (for
    evaluation only), ``rmia_a`` (the offline ``a`` used, or None; tuned on the
    references by :func:`tune_rmia_a` with ``pseudo_refs=a_tuning`` unless given) and ``scores``:
    attack → (targets, records) array (NaN rows for non-finite targets).
    """
    c = _as_cube(conf)
    m = _check_member(member, c)
    unknown = [k for k in attacks if k not in ATTACKS]
    if unknown:
        raise ConfigError(f"unknown attack(s) {unknown}; expected some of {list(ATTACKS)}")
    targets, refs = split_targets(c.shape[0], n_targets, seed)
    bad = nonfinite_models(c)
    refs = np.setdiff1d(refs, bad)
    if refs.size < 2:
        raise DataError(
            f"only {refs.size} finite reference models remain (non-finite models: {bad.tolist()}); "
            "lower audit.n_targets or drop the diverged models"
        )
    good_t = np.isin(targets, bad, invert=True)
    rc, rm = c[refs], m[refs]
    tc = c[targets[good_t]]
    result = {
        "targets": targets,
        "references": refs,
        "nonfinite_models": bad,
        "labels": m[targets],
        "scores": {},
        "rmia_a": None,
    }
    if a is None and any("a" in ATTACKS[name].options for name in attacks):
        a, _ = tune_rmia_a(rc, rm, pseudo_refs=a_tuning, population=population, gamma=gamma, seed=seed)
    given = {"population": population, "gamma": gamma, "seed": seed, "a": a}
    for name in attacks:
        kw = {k: given[k] for k in ATTACKS[name].options}
        if "a" in kw:
            result["rmia_a"] = float(a)
        s = np.full(m[targets].shape, np.nan)
        if tc.shape[0]:
            s[good_t] = ATTACKS[name].score(tc, rc, rm, **kw)
        result["scores"][name] = s
    return result


def run_aggregate_attacks(
    conf,
    member,
    n_targets: int = 10,
    seed: int = 0,
    attacks: Sequence[str] = tuple(ATTACKS),
    population: int | None = None,
    gamma: float = 1.0,
    a: float | None = None,
    a_tuning: str = "rest",
) -> pd.DataFrame:
    """The aggregate-attack table: one row per attack × target.

    Columns ``attack, target, auc, tpr_at_fpr_0.001, tpr_at_fpr_0.01, tpr_at_fpr_0.1,
    n_scored, n_excluded, status`` (``ok``, ``target_nonfinite`` or
    ``no_scorable_records``; metrics are NaN exactly when status is not ``ok``),
    ``min_resolvable_fpr`` and ``tpr_status`` (see :func:`roc_metrics`; a TPR is also NaN
    where its FPR level is below the resolvable one).
    ``attrs`` carry ``references``, ``nonfinite_models`` and ``rmia_a``.
    See :func:`attack_scores` for the protocol.
    """
    res = attack_scores(
        conf,
        member,
        n_targets=n_targets,
        seed=seed,
        attacks=attacks,
        population=population,
        gamma=gamma,
        a=a,
        a_tuning=a_tuning,
    )
    return aggregate_table(res)


def aggregate_table(res: dict) -> pd.DataFrame:
    """The per attack × target table from :func:`attack_scores`' result (see :func:`run_aggregate_attacks`)."""
    attacks = list(res["scores"])
    bad = set(res["nonfinite_models"].tolist())
    metric_cols = ["auc"] + [f"tpr_at_fpr_{f:g}" for f in FPRS]
    rows = []
    for name in attacks:
        for i, t in enumerate(res["targets"]):
            row = {"attack": name, "target": int(t)}
            s = res["scores"][name][i]
            n_ok = int(np.isfinite(s).sum())
            if int(t) in bad:
                row.update(
                    {k: np.nan for k in metric_cols}, n_scored=0, n_excluded=s.size, status=STATUS_TARGET_NONFINITE
                )
            elif n_ok == 0 or res["labels"][i][np.isfinite(s)].all() or not res["labels"][i][np.isfinite(s)].any():
                row.update(
                    {k: np.nan for k in metric_cols}, n_scored=n_ok, n_excluded=s.size - n_ok, status=STATUS_NO_SCORES
                )
            else:
                row.update(roc_metrics(s, res["labels"][i]), status=STATUS_OK)
            row.setdefault("min_resolvable_fpr", np.nan)
            row.setdefault("tpr_status", row["status"])
            rows.append(row)
    df = pd.DataFrame(
        rows,
        columns=[
            "attack",
            "target",
            *metric_cols,
            "n_scored",
            "n_excluded",
            "status",
            "min_resolvable_fpr",
            "tpr_status",
        ],
    )
    df.attrs.update(references=res["references"].tolist(), nonfinite_models=sorted(bad), rmia_a=res["rmia_a"])
    return df


# --------------------------------------------------------------------------- tables of scored records


def patient_maximum(
    scores: pd.DataFrame,
    names: Sequence[str],
    by: Sequence[str] = ("patient_id",),
    first: Sequence[str] = (),
) -> pd.DataFrame:
    r"""Patient-level scores: each attack's maximum over the patient's records.

    .. math:: s(\text{patient}) = \max_{x \in \text{patient}} s(x)

    A patient is exposed if any one of its records is (the patient-level risk of the
    design, applied to attack scores). Excluded records (NaN) are skipped; a patient with
    no scored record gets NaN.

    Parameters
    ----------
    scores : one row per record with a bool ``member`` column, the ``by`` columns and one
        score column per attack in ``names``.
    names : the attacks (score columns) to aggregate.
    by : the columns that identify a patient (e.g. ``("target", "patient_id")``).
    first : further columns to carry, each patient's first value.

    Returns one row per patient, sorted by ``by``: the ``by`` columns, the attacks' maxima,
    ``member`` (any record a member), ``n_records`` and the ``first`` columns.
    """
    g = scores.groupby(list(by), sort=True)
    out = g[list(names)].max()
    out["member"] = g["member"].any()
    out["n_records"] = g.size()
    for col in first:
        out[col] = g[col].first()
    return out.reset_index()


def summary_table(scores: pd.DataFrame, names: Sequence[str], by: Sequence[str] = ()) -> pd.DataFrame:
    """AUC and TPR at FPR 0.1 %, 1 %, 10 % (:func:`roc_metrics`) of each attack, per group.

    Parameters
    ----------
    scores : one row per scored unit (record or patient) with a bool ``member`` column
        (the evaluation labels) and one score column per attack in ``names`` (NaN =
        excluded).
    names : the attacks (score columns) to evaluate.
    by : columns whose groups are evaluated separately (e.g. ``("target",)``), in order of
        appearance; none = the whole table.

    Returns one row per group × attack: the ``by`` columns, ``attack``, ``auc``,
    ``tpr_at_fpr_0.001``, ``tpr_at_fpr_0.01``, ``tpr_at_fpr_0.1``, ``n_scored``,
    ``n_excluded``, ``min_resolvable_fpr``, ``tpr_status`` (:func:`roc_metrics`), and
    ``n_members``, ``n_nonmembers`` among the scored.
    """
    groups = scores.groupby(list(by), sort=False) if by else [((), scores)]
    rows = []
    for key, d in groups:
        key = key if isinstance(key, tuple) else (key,)
        y = d["member"].to_numpy(dtype=bool)
        for name in names:
            ok = np.isfinite(d[name].to_numpy(dtype=np.float64))
            rows.append(
                {
                    **dict(zip(by, key, strict=True)),
                    "attack": name,
                    **roc_metrics(d[name].to_numpy(), y),
                    "n_members": int(y[ok].sum()),
                    "n_nonmembers": int((~y[ok]).sum()),
                }
            )
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- external target

#: The attacks run against a model not trained here (:mod:`mia_audit.external.scores`,
#: :mod:`mia_audit.external.public_models`): offline ones, as no reference is known to share the
#: target's members, and the loss baseline; in the order of their tables and figures.
EXTERNAL_ATTACKS = ("rmia_offline", "lira_offline", "loss_threshold")


def rmia_offline_external(
    target_conf,
    reference_conf,
    candidate_is_member,
    population_size: int = 500,
    a: float | None = None,
    seed: int = 0,
    reference_member=None,
    gamma: float = 1.0,
) -> pd.DataFrame:
    r"""Offline RMIA against one model that was not trained here.

    Parameters
    ----------
    target_conf : (records[, views]) φ of the external target on the candidate records.
    reference_conf : (n_ref ∈ {1, 2}, records[, views]) φ of the reference model(s).
    candidate_is_member : (records,) bool, the target's membership, used for the output
        column ``member`` only (evaluation), never for the score.
    population_size : population records Z, a seeded random subset of the candidates;
        each candidate is compared with the others only (never with itself).
    a : offline correction; with one reference it cannot be tuned and defaults to
        ``DEFAULT_RMIA_A`` = 0.3 (Zarifzadeh et al.'s offline setting); with two it is
        tuned on the pair (:func:`tune_rmia_a`) when None, which needs
        ``reference_member``.
    reference_member : (n_ref, records) bool, the candidates each reference trained on;
        None = the references trained on none of them (e.g. on population data).
        A reference is used for x only where it did not train on x.

    Returns a DataFrame indexed by candidate position with ``score`` (NaN where no
    reference is out on the candidate), ``member`` and ``status`` (``ok`` or
    ``no_out_reference``); ``attrs["a"]`` is the ``a`` used.
    """
    t = _as_cube(np.asarray(target_conf, dtype=np.float64)[None], "target_conf")
    r = _as_cube(reference_conf, "reference_conf")
    if r.shape[0] not in (1, 2):
        raise ValueError(f"reference_conf must hold 1 or 2 reference models, got {r.shape[0]}")
    y = np.asarray(candidate_is_member, dtype=bool)
    if y.shape != (t.shape[1],):
        raise ValueError(f"candidate_is_member must be ({t.shape[1]},), got {y.shape}")
    m = (
        np.zeros(r.shape[:2], dtype=bool)
        if reference_member is None
        else _check_member(reference_member, r, "reference_member")
    )
    if a is None:
        if r.shape[0] == 1:
            a = DEFAULT_RMIA_A
        else:
            if reference_member is None:
                raise ValueError(
                    "tuning a on the reference pair needs reference_member (which candidates each "
                    "reference trained on); give it, or give `a`"
                )
            a, _ = tune_rmia_a(r, m, pseudo_target=0, population=population_size, gamma=gamma, seed=seed)
    s = rmia_offline(t, r, m, a=a, population=population_size, gamma=gamma, seed=seed)[0]
    df = pd.DataFrame({"score": s, "member": y, "status": np.where(np.isfinite(s), STATUS_OK, "no_out_reference")})
    df.attrs["a"] = float(a)
    return df
