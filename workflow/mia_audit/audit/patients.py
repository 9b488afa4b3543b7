"""Patient risk that accounts for taking a maximum, and a direct patient-level attack.

A patient's AUC is the largest record AUC of the patient (:func:`mia_audit.audit.stats.patient_risk`).
This module adds, per patient, in one streamed pass over the cube: the 95 % interval of that
maximum by moment selection (lower end simultaneous over the records that could be the
maximum, upper end the records' own bounds lowered for ties), the bootstrap bias-corrected
maximum (a Poisson bootstrap over models, one weight matrix for all patients), the joint
bootstrap over models and patients of the headline shares (:meth:`PatientAccumulator.headline_bootstrap`,
:func:`joint_interval`), and the direct attack that sums the patient's records' LiRA
log-likelihood ratios, cross-fitted over K folds of models, with its SE and p-value from a
membership-shuffled null. The method, its simulated coverage, its memory and its references:
docs/methods.md, "Patient AUC: a maximum, and what that costs" and "The headline and its
uncertainty".
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import sparse
from scipy import stats as sps

from mia_audit.audit import stats
from mia_audit.errors import DataError

#: floor on leave-one-out SDs in the patient score (as :data:`mia_audit.audit.attacks.MIN_SD`)
MIN_SD = 1e-6
#: one-sided level of each end of the patient interval (two-sided 95 %)
TAIL = 0.025
#: the normal quantile of one end
Z = float(sps.norm.ppf(1 - TAIL))

#: per-patient columns this module adds to ``patient_risk.parquet``
COLUMNS = [
    "auc_bc",
    "max_se",
    "max_ci_low",
    "max_ci_high",
    "max_crit",
    "max_crit_high",
    "max_candidates",
    "n_boot",
    "attack_auc",
    "attack_se",
    "attack_ci_low",
    "attack_ci_high",
    "attack_p",
    "attack_n_records",
]


def selection_margins(n_models: int) -> tuple[float, float]:
    r"""The margins (in SEs of a record) within which a record counts as possibly the maximum.

    Lower end: :math:`\kappa_n = \sqrt{\ln n}` (Andrews & Soares 2010's recommended choice);
    upper end: :math:`\kappa_n^{-2} = 1/\ln n`. n = number of models (at least 3):
    2.30 and 0.19 for 200 models.
    """
    k = float(np.sqrt(np.log(max(int(n_models), 3))))
    return k, 1.0 / k**2


def poisson_weights(n_models: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(n_boot, n_models) independent Poisson(1) model weights (the Poisson bootstrap)."""
    return rng.poisson(1.0, size=(n_boot, n_models)).astype(np.float64)


def weighted_probit_auc(conf, member, weights, estimator: str = stats.ESTIMATOR_DEFAULT):
    r"""Probit-scale bi-normal AUC and its SE of every record under every weight vector.

    For weights :math:`w` (one row of ``weights``) and side s (in / out) of record j, the
    weighted count :math:`n = \sum_m w_m`, mean and variance
    :math:`\sum_m w_m (\varphi_m - \mu)^2/(n - 1)` (ddof 0 and σ_in + 1e-10 for
    ``estimator="paper"``, as :func:`mia_audit.audit.stats.paper_moments`) give
    :math:`d = \Delta/S` and :math:`\operatorname{SE}(d)` by the delta method
    (:func:`mia_audit.audit.stats.binormal_auc_se_delta` divided by φ(d)). With the paper
    estimator d is clipped to the paper's AUC range (and the SE divided by φ at the clipped
    value, as the record table's). Non-finite signals get weight 0. With unit weights
    this is exactly the record table's Φ⁻¹(auc) and se/φ(Φ⁻¹(auc)).

    conf, member: (models, records); weights: (B, models). Returns (d, se_d), each (B, records),
    NaN where a side has a weighted count below 2.
    """
    x = np.asarray(conf, dtype=np.float64)
    member = np.asarray(member, dtype=bool)
    w = np.asarray(weights, dtype=np.float64)
    finite = np.isfinite(x)
    m = stats.binormal_moments(x, member)
    out = {}
    for side, mask in (("in", member & finite), ("out", ~member & finite)):
        # centre on the full-sample mean first: the weighted sums of squares stay accurate
        xc = np.where(mask, x - np.nan_to_num(m[f"mu_{side}"]), 0.0)
        n = w @ mask.astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            mc = (w @ xc) / n
            ss = np.clip(w @ (xc * xc) - n * mc * mc, 0.0, None)
            var = ss / (n if estimator == stats.ESTIMATOR_PAPER else n - 1)
        out[side] = (m[f"mu_{side}"] + mc, var, n)
    (mu_in, v_in, n_in), (mu_out, v_out, n_out) = out["in"], out["out"]
    if estimator == stats.ESTIMATOR_PAPER:
        v_in = (np.sqrt(v_in) + stats.PAPER_SD_IN_OFFSET) ** 2
    delta = mu_in - mu_out
    s2 = v_in + v_out
    with np.errstate(invalid="ignore", divide="ignore"):
        d = delta / np.sqrt(s2)
        var_d = (v_in / n_in + v_out / n_out) / s2 + delta**2 / (4 * s2**3) * (
            2 * v_in**2 / (n_in - 1) + 2 * v_out**2 / (n_out - 1)
        )
    se_d = np.sqrt(var_d)
    if estimator == stats.ESTIMATOR_PAPER:
        # the record table's probit SE of a clipped AUC is its delta SE over φ at the clipped value
        clipped = np.clip(d, *sps.norm.ppf(stats.PAPER_AUC_CLIP))
        with np.errstate(invalid="ignore", divide="ignore"):
            se_d = se_d * sps.norm.pdf(d) / sps.norm.pdf(clipped)
        d = clipped
    bad = (n_in < 2) | (n_out < 2)
    return np.where(bad, np.nan, d), np.where(bad, np.nan, se_d)


def fold_of_models(n_models: int, folds: int) -> np.ndarray:
    """(n_models,) fold of every model for the cross-fitted attack: model m in fold m mod K."""
    k = int(folds)
    if k < 2:
        raise ValueError(f"audit.attack_folds must be at least 2, got {folds}")
    return np.arange(int(n_models)) % k


def crossfit_llr(conf, member, folds, min_sd: float = MIN_SD) -> tuple[np.ndarray, np.ndarray]:
    r"""Cross-fitted Gaussian log-likelihood ratio of every model's signal on every record.

    For model m in fold k, record j's in- and out-Gaussians (mean, SD with ddof 1, floored at
    ``min_sd``) are fitted on the finite signals of the models of the other folds only, and
    the ratio is :math:`\log\mathcal N(x;\mu_{in},\sigma_{in}) - \log\mathcal N(x;\mu_{out},\sigma_{out})`.

    folds: (models,) int fold of each model. Returns (llr (models, records), NaN at
    non-finite signals; usable (records,) bool: every fold's reference set has ≥ 3 finite
    samples on each side, else the record's llr is all NaN).
    """
    x = np.asarray(conf, dtype=np.float64)
    member = np.asarray(member, dtype=bool)
    folds = np.asarray(folds)
    finite = np.isfinite(x)
    xf = np.where(finite, x, 0.0)
    keys = np.unique(folds)
    # per fold and side: count, and sums of x and x² centred on the side's overall mean (accuracy)
    sums = {}
    for side, own in (("in", member & finite), ("out", ~member & finite)):
        w = own.astype(np.float64)
        n_all = w.sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            c = np.nan_to_num((w * xf).sum(axis=0) / n_all)
        xc = (xf - c) * w
        per_fold = [
            (w[folds == k].sum(axis=0), xc[folds == k].sum(axis=0), (xc[folds == k] * xc[folds == k]).sum(axis=0))
            for k in keys
        ]
        sums[side] = (c, n_all, xc.sum(axis=0), (xc * xc).sum(axis=0), per_fold)
    llr = np.full(x.shape, np.nan)
    usable = np.ones(x.shape[1], dtype=bool)
    for i, k in enumerate(keys):
        rows = folds == k
        terms = []
        for side in ("in", "out"):
            c, n_all, s1_all, s2_all, per_fold = sums[side]
            n = n_all - per_fold[i][0]
            s1 = s1_all - per_fold[i][1]
            s2 = s2_all - per_fold[i][2]
            with np.errstate(invalid="ignore", divide="ignore"):
                mu = s1 / n
                sd = np.maximum(np.sqrt(np.clip(s2 - n * mu * mu, 0.0, None) / (n - 1)), min_sd)
            usable &= n >= 3
            terms.append((c + mu, sd))
        (mu_in, sd_in), (mu_out, sd_out) = terms
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            z_in = (x[rows] - mu_in) / sd_in
            z_out = (x[rows] - mu_out) / sd_out
            # log N(x; μ_in, σ_in) − log N(x; μ_out, σ_out): the normal constants cancel
            llr[rows] = 0.5 * (z_out * z_out - z_in * z_in) + np.log(sd_out / sd_in)
    llr = np.where(finite & usable, llr, np.nan)
    return llr, usable


def crossfit_auc(scores, member, folds, confidence: float = 0.95) -> dict[str, np.ndarray]:
    r"""The cross-fitted attack's AUC per column (patient) of ``scores`` (models, patients).

    Per fold k: the empirical AUC :math:`\hat A_k` of the fold's models' scores between in
    and out (:func:`mia_audit.audit.stats.mann_whitney_auc`) with its DeLong SE; at complete
    separation (:math:`\hat A_k \in \{0, 1\}`, DeLong SE 0) the SE of the Birnbaum–Klose bound
    :math:`\sqrt{A(1-A)/m_k}` at :math:`A = m_k/(m_k + z^2)`, :math:`m_k = \min(n_{in,k}, n_{out,k})`.
    Combined: weights :math:`w_k \propto n_{in,k} n_{out,k}`, :math:`\hat A = \sum_k w_k \hat A_k`
    and ``se_bound`` :math:`= \sum_k w_k \mathrm{SE}_k`, an upper bound of its SE whatever the
    folds' correlation (the folds share their models as each other's references, which makes
    their AUCs correlated even for a patient without exposure). Folds with fewer than 2 finite
    scores on a side are left out. Returns ``auc, se_bound`` (NaN for a column without a usable fold).
    """
    s = np.asarray(scores, dtype=np.float64)
    mem = np.asarray(member, dtype=bool)
    folds = np.asarray(folds)
    z = float(sps.norm.ppf(0.5 + confidence / 2))
    num = np.zeros(s.shape[1])
    sd = np.zeros(s.shape[1])
    wsum = np.zeros(s.shape[1])
    for k in np.unique(folds):
        rows = folds == k
        fin = np.isfinite(s[rows])
        n1 = (mem[rows] & fin).sum(axis=0).astype(np.float64)
        n0 = (~mem[rows] & fin).sum(axis=0).astype(np.float64)
        mw = stats.mann_whitney_auc(s[rows], mem[rows])
        a, se = mw["auc_emp"], mw["se_emp"]
        m = np.minimum(n1, n0)
        with np.errstate(invalid="ignore", divide="ignore"):
            a_bk = m / (m + z * z)
            se = np.where((a == 0) | (a == 1), np.sqrt(a_bk * (1 - a_bk) / m), se)
        ok = np.isfinite(a) & np.isfinite(se) & (n1 >= 2) & (n0 >= 2)
        w = np.where(ok, n1 * n0, 0.0)
        num += np.where(ok, w * a, 0.0)
        sd += np.where(ok, w * se, 0.0)
        wsum += w
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = num / wsum
        se = sd / wsum
    bad = wsum == 0
    return {"auc": np.where(bad, np.nan, auc), "se_bound": np.where(bad, np.nan, se)}


def _rank_auc(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mann–Whitney AUC along axis 1 of (B, models, P) ``scores`` with bool ``labels`` (midranks
    for ties); returns (auc, n_in · n_out), NaN where a side is empty."""
    ranks = sps.rankdata(scores, axis=1)
    n1 = labels.sum(axis=1).astype(np.float64)
    n0 = labels.shape[1] - n1
    r_in = np.where(labels, ranks, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = (r_in - n1 * (n1 + 1) / 2) / (n1 * n0)
    return np.where((n1 > 0) & (n0 > 0), auc, np.nan), n1 * n0


def attack_null(conf, member, patient_index, folds, perms, chunk: int = 64) -> np.ndarray:
    r"""(permutations, patients) AUCs of the cross-fitted attack with every patient's membership
    shuffled across the models.

    For permutation π, model m takes the membership of model π(m); every record's references
    are refitted with the shuffled membership, the cross-fitted log-likelihood ratios summed
    over the patient's records and their fold AUCs combined as for the real attack
    (:func:`crossfit_llr`, :func:`crossfit_auc`). Vectorised over permutations: the
    references' sums are products of the shuffled membership with the signals, and a model's
    summed score is a quadratic form of its signals,
    :math:`\sum_r a_2 x_{mr}^2 + a_1 x_{mr} + a_0` with the coefficients of its fold's
    references. ``conf``, ``member``: (models, records) of the patients' records (a record
    with a non-finite signal is left out); ``patient_index``: (records,) patient code
    0..P−1; ``perms``: (permutations, models). Patients are processed ``chunk`` at a time,
    grouped by their number of records.
    """
    x = np.asarray(conf, dtype=np.float64)
    mem = np.asarray(member, dtype=bool)
    idx = np.asarray(patient_index, dtype=np.int64)
    folds = np.asarray(folds)
    perms = np.asarray(perms, dtype=np.int64)
    n_pat = int(idx.max()) + 1 if idx.size else 0
    b_n, m_n = perms.shape
    keys = np.unique(folds)
    out = np.full((b_n, n_pat), np.nan)
    finite = np.isfinite(x).all(axis=0)
    order = np.lexsort((np.arange(idx.size), idx))
    order = order[finite[order]]
    sizes = np.bincount(idx[order], minlength=n_pat)
    starts = np.r_[0, np.cumsum(sizes)][:-1]
    first = np.unique(idx, return_index=True)[1]
    for n in np.unique(sizes[sizes > 0]):
        pats = np.flatnonzero(sizes == n)
        for c0 in range(0, pats.size, chunk):
            ps = pats[c0 : c0 + chunk]
            rec = order[starts[ps][:, None] + np.arange(n)[None, :]]  # (patients, records)
            xs = x[:, rec]  # (models, patients, records)
            q = mem[:, first[ps]][perms].astype(np.float64)  # (B, models, patients): shuffled membership
            num = np.zeros((b_n, ps.size))
            den = np.zeros((b_n, ps.size))
            usable = np.ones((b_n, ps.size, n), dtype=bool)
            coef = []
            for k in keys:
                ref = (folds != k).astype(np.float64)  # the fold's references: the other folds' models
                qin = q * ref[None, :, None]
                moments = []
                n_in = qin.sum(axis=1)[:, :, None]  # (B, patients, 1)
                s1_in = np.einsum("bmp,mpr->bpr", qin, xs)
                s2_in = np.einsum("bmp,mpr->bpr", qin, xs * xs)
                n_ref = ref.sum()
                s1_all = np.einsum("m,mpr->pr", ref, xs)[None]
                s2_all = np.einsum("m,mpr->pr", ref, xs * xs)[None]
                for cnt, s1, s2 in ((n_in, s1_in, s2_in), (n_ref - n_in, s1_all - s1_in, s2_all - s2_in)):
                    with np.errstate(invalid="ignore", divide="ignore"):
                        mu = s1 / cnt
                        var = np.clip(s2 - cnt * mu * mu, 0.0, None) / (cnt - 1)
                    moments.append((mu, np.maximum(np.sqrt(var), MIN_SD)))
                    usable &= cnt >= 3
                (mu_i, sd_i), (mu_o, sd_o) = moments
                with np.errstate(invalid="ignore", divide="ignore"):
                    coef.append(
                        (
                            0.5 * (1 / sd_o**2 - 1 / sd_i**2),
                            mu_i / sd_i**2 - mu_o / sd_o**2,
                            0.5 * (mu_o**2 / sd_o**2 - mu_i**2 / sd_i**2) + np.log(sd_o / sd_i),
                        )
                    )
            for k, (a2, a1, a0) in zip(keys, coef, strict=True):
                rows = folds == k
                a2, a1, a0 = (np.where(usable, a, 0.0) for a in (a2, a1, a0))
                xk = xs[rows]
                score = (
                    np.einsum("bpr,mpr->bmp", a2, xk * xk)
                    + np.einsum("bpr,mpr->bmp", a1, xk)
                    + a0.sum(axis=2)[:, None, :]
                )
                auc, w = _rank_auc(score, q[:, rows] > 0)
                ok = np.isfinite(auc) & (w > 0)
                num += np.where(ok, w * auc, 0.0)
                den += np.where(ok, w, 0.0)
            with np.errstate(invalid="ignore", divide="ignore"):
                out[:, ps] = np.where(den > 0, num / den, np.nan)
    return out


class PatientAccumulator:
    """Streams record blocks in cube order and closes each patient after its last record.

    Parameters
    ----------
    codes : (pool records,) int patient code of every pool record, in the order the
        blocks will arrive (``positions`` passed to :meth:`update` index into it).
    n_patients : number of distinct codes (codes are 0..n_patients − 1).
    n_models : models of the cube.
    n_boot : bootstrap replicates (0 = no bias correction, and the interval is only
        its upper end "every record's own upper bound").
    rng : generator of the Poisson weights (one matrix for the whole audit).
    estimator : the record-AUC estimator (:data:`mia_audit.audit.stats.ESTIMATORS`).
    patient_ids : (n_patients,) the patient id of each code, for error messages.
    thresholds : patient-AUC levels of the joint bootstrap of the headline shares
        (:meth:`headline_bootstrap`); None = none.
    attack_folds : folds K of the cross-fitted direct attack (:func:`crossfit_llr`).
    attack_permutations : membership shuffles of its null (:func:`attack_null`): the SE and
        p-value of the attack; 0 = the SE bound of :func:`crossfit_auc` and no p-value.
    """

    def __init__(
        self,
        codes,
        n_patients: int,
        n_models: int,
        n_boot: int,
        rng: np.random.Generator,
        estimator: str = stats.ESTIMATOR_DEFAULT,
        patient_ids=None,
        boot_chunk: int | None = None,
        thresholds=None,
        attack_folds: int = 2,
        attack_permutations: int = 100,
    ):
        self.codes = np.asarray(codes, dtype=np.int64)
        self.n_patients, self.n_models, self.n_boot = int(n_patients), int(n_models), int(n_boot)
        self.estimator = estimator
        self.patient_ids = patient_ids
        self.kappa_low, self.kappa_high = selection_margins(self.n_models)
        self.last = np.full(self.n_patients, -1, dtype=np.int64)
        np.maximum.at(self.last, self.codes, np.arange(self.codes.size))
        self.weights = poisson_weights(self.n_models, self.n_boot, rng)
        self.rng = rng  # the patients' Poisson weights of the joint bootstrap, drawn as patients close
        self.folds = fold_of_models(self.n_models, attack_folds)
        # the attack's null: one set of model permutations for every patient; the open patients'
        # record signals (float32, as in the cube) are kept until they close
        self.perms = np.array([rng.permutation(self.n_models) for _ in range(int(attack_permutations))])
        self.signals: dict[int, list[np.ndarray]] = {}
        self.thresholds = None if thresholds is None else np.asarray(thresholds, dtype=np.float64)
        if self.thresholds is not None:
            t = self.thresholds.size
            # per replicate: Σ patient weight × 1[d̂ ≥ t], Σ patient weight, Σ 1[d* ≥ t]; per threshold
            # the sum over patients of the bootstrap variance of 1[d* ≥ t]; the defined patients
            self.hb = {
                "patients": np.zeros((self.n_boot, t)),
                "weight": np.zeros(self.n_boot),
                "models": np.zeros((self.n_boot, t)),
                "within": np.zeros(t),
                "n": 0,
            }
        self.unit = np.ones((1, self.n_models))
        self.boot_chunk = boot_chunk or max(256, 2**22 // max(self.n_boot, 1))
        self.slot_of = np.full(self.n_patients, -1, dtype=np.int64)
        self.free: list[int] = []
        self.capacity = 0
        self._alloc(1024)
        # candidate records (possibly the maximum): owner slot (-1 = free), d̂, s, bootstrap t (float32)
        self.cand_cap = 0
        self.cand_owner = np.empty(0, dtype=np.int64)
        self.cand_d = np.empty(0)
        self.cand_s = np.empty(0)
        self.cand_t = np.empty((self.n_boot, 0), dtype=np.float32)
        self._alloc_candidates(1024 if self.n_boot else 0)
        self.result = {c: np.full(self.n_patients, np.nan) for c in COLUMNS}
        self.closed = np.zeros(self.n_patients, dtype=bool)
        self.max_open = 0
        self.max_held = 0  # peak candidate records held at once

    # ----------------------------------------------------------------- slots
    def _alloc(self, capacity: int) -> None:
        old = self.capacity
        grow = {
            "llr": ((self.n_models, capacity), 0.0, np.float64),
            "member": ((self.n_models, capacity), False, bool),
            "dmax": ((self.n_boot, capacity), -np.inf, np.float64),
            "dhat": ((capacity,), -np.inf, np.float64),
            "hi_own": ((capacity,), -np.inf, np.float64),  # max own upper bound, all records
            "hi_drop": ((capacity,), -np.inf, np.float64),  # the same over non-candidate records
            "n_used": ((capacity,), 0, np.int64),
        }
        for name, (shape, fill, dtype) in grow.items():
            arr = np.full(shape, fill, dtype=dtype)
            if old:
                arr[..., :old] = getattr(self, name)
            setattr(self, name, arr)
        self.free.extend(range(capacity - 1, old - 1, -1))
        self.capacity = capacity

    def _alloc_candidates(self, capacity: int) -> None:
        old = self.cand_cap
        owner = np.full(capacity, -1, dtype=np.int64)
        owner[:old] = self.cand_owner
        d, s = np.full(capacity, np.nan), np.full(capacity, np.nan)
        d[:old], s[:old] = self.cand_d, self.cand_s
        t = np.full((self.n_boot, capacity), np.nan, dtype=np.float32)
        t[:, :old] = self.cand_t
        self.cand_owner, self.cand_d, self.cand_s, self.cand_t = owner, d, s, t
        self.cand_cap = capacity

    def _take_candidates(self, n: int) -> np.ndarray:
        """n free candidate columns (growing the pool when needed)."""
        free = np.flatnonzero(self.cand_owner < 0)
        if free.size < n:
            self._alloc_candidates(max(2 * self.cand_cap, self.cand_cap + n - free.size))
            free = np.flatnonzero(self.cand_owner < 0)
        return free[:n]

    def _open(self, codes: np.ndarray, member_cols: np.ndarray) -> None:
        """Give each not-yet-open patient in ``codes`` a slot, with its membership column."""
        if self.closed[codes].any():
            pid = codes[self.closed[codes]][0]
            raise ValueError(f"patient code {pid} seen again after its last record (positions out of order)")
        need = len(codes)
        if need > len(self.free):
            self._alloc(max(2 * self.capacity, self.capacity + need - len(self.free)))
        slots = np.array([self.free.pop() for _ in range(need)], dtype=np.int64)
        self.slot_of[codes] = slots
        self.llr[:, slots] = 0.0
        self.member[:, slots] = member_cols
        self.dmax[:, slots] = -np.inf
        self.dhat[slots] = -np.inf
        self.hi_own[slots] = -np.inf
        self.hi_drop[slots] = -np.inf
        self.n_used[slots] = 0

    # ----------------------------------------------------------------- update
    def update(self, conf, member, positions) -> None:
        """Add one block: conf, member (models, records); positions (records,) into ``codes``."""
        x = np.asarray(conf, dtype=np.float64)
        mem = np.asarray(member, dtype=bool)
        pos = np.asarray(positions, dtype=np.int64)
        codes = self.codes[pos]
        uniq, first, inv = np.unique(codes, return_index=True, return_inverse=True)
        new = self.slot_of[uniq] < 0
        if new.any():
            self._open(uniq[new], mem[:, first[new]])
        slots = self.slot_of[uniq]
        self.max_open = max(self.max_open, self.capacity - len(self.free))
        # all records of a patient share the patient's membership
        bad = (mem != self.member[:, slots[inv]]).any(axis=0)
        if bad.any():
            code = codes[np.flatnonzero(bad)[0]]
            who = str(self.patient_ids[code]) if self.patient_ids is not None else str(code)
            raise DataError(
                f"cube member: the records of patient {who!r} differ in membership; "
                "every record of a patient must be in the same models' training sets"
            )
        group = sparse.csr_matrix((np.ones(inv.size), (np.arange(inv.size), inv)), shape=(inv.size, uniq.size))
        llr, usable = crossfit_llr(x, mem, self.folds)
        llr = np.where(usable, llr, 0.0)  # unusable records carry no information: left out of the sum
        self.llr[:, slots] += np.asarray(group.T @ llr.T).T  # NaN (a non-finite signal) propagates
        np.add.at(self.n_used, slots[inv], usable.astype(np.int64))
        if len(self.perms):
            by_patient = np.argsort(inv, kind="stable")
            bounds = np.r_[0, np.cumsum(np.bincount(inv, minlength=uniq.size))]
            for j, slot in enumerate(slots):
                cols = by_patient[bounds[j] : bounds[j + 1]]
                self.signals.setdefault(int(slot), []).append(x[:, cols].astype(np.float32))
        # each record's probit AUC and SE (unit weights: the record table's values)
        d0, s0 = (a[0] for a in weighted_probit_auc(x, mem, self.unit, self.estimator))
        rec_slot = slots[inv]
        np.maximum.at(self.dhat, rec_slot, np.nan_to_num(d0, nan=-np.inf))
        ok = np.isfinite(d0) & np.isfinite(s0)
        with np.errstate(invalid="ignore"):
            np.fmax.at(self.hi_own, rec_slot[ok], d0[ok] + Z * s0[ok])
        if not self.n_boot:
            self._close_done(uniq, pos)
            return
        # candidates: records within κ_n SEs of their patient's top; the top only rises, so a
        # candidate that falls behind is dropped for good
        held = np.flatnonzero(np.isin(self.cand_owner, slots))
        if held.size:
            own = self.cand_owner[held]
            drop = held[self.cand_d[held] + self.kappa_low * self.cand_s[held] < self.dhat[own]]
            np.fmax.at(self.hi_drop, self.cand_owner[drop], self.cand_d[drop] + Z * self.cand_s[drop])
            self.cand_owner[drop] = -1
        keep = ok & (d0 + self.kappa_low * s0 >= self.dhat[rec_slot])
        np.fmax.at(self.hi_drop, rec_slot[ok & ~keep], d0[ok & ~keep] + Z * s0[ok & ~keep])
        cslot = np.full(inv.size, -1, dtype=np.int64)
        cslot[keep] = self._take_candidates(int(keep.sum()))
        self.cand_owner[cslot[keep]] = rec_slot[keep]
        self.cand_d[cslot[keep]], self.cand_s[cslot[keep]] = d0[keep], s0[keep]
        self.max_held = max(self.max_held, int((self.cand_owner >= 0).sum()))
        order = np.argsort(inv, kind="stable")  # records grouped by patient: maxima by reduceat
        dmax = np.full((self.n_boot, uniq.size), -np.inf)
        for b0 in range(0, inv.size, self.boot_chunk):
            sel = order[b0 : b0 + self.boot_chunk]
            d, s = weighted_probit_auc(x[:, sel], mem[:, sel], self.weights, self.estimator)
            k = keep[sel]
            if k.any():
                with np.errstate(invalid="ignore", divide="ignore"):
                    t = (d[:, k] - d0[sel][k]) / s[:, k]
                self.cand_t[:, cslot[sel][k]] = np.where(np.isfinite(t), t, np.nan)
            d = np.nan_to_num(d, nan=-np.inf, posinf=np.inf)
            g = inv[sel]
            st = np.flatnonzero(np.r_[True, np.diff(g) != 0])
            dmax[:, g[st]] = np.maximum(dmax[:, g[st]], np.maximum.reduceat(d, st, axis=1))
        self.dmax[:, slots] = np.maximum(self.dmax[:, slots], dmax)
        self._close_done(uniq, pos)

    def _close_done(self, uniq: np.ndarray, pos: np.ndarray) -> None:
        done = uniq[np.isin(self.last[uniq], pos)]  # patients whose last record was in this block
        if done.size:
            self._close(done)

    # ----------------------------------------------------------------- close
    def _interval(self, slots: np.ndarray) -> dict:
        """The interval of the maximum (probit scale) of the patients in ``slots``; frees their candidates."""
        n, B = slots.size, self.n_boot
        top = self.dhat[slots]
        nan = np.full(n, np.nan)
        # without a bootstrap: the upper end alone, every record's own upper bound
        out = {"low": nan.copy(), "high": np.where(np.isfinite(self.hi_own[slots]), self.hi_own[slots], np.nan)}
        out.update(crit=nan.copy(), crit_high=nan.copy(), n_ok=np.zeros(n), candidates=np.zeros(n))
        if not B:
            return out
        where = np.full(self.capacity, -1, dtype=np.int64)
        where[slots] = np.arange(n)
        held = np.flatnonzero(np.isin(self.cand_owner, slots))
        p = where[self.cand_owner[held]]
        o = np.lexsort((held, p))
        held, p = held[o], p[o]
        self.cand_owner[held] = -1
        if held.size:
            d, s, tp = self.cand_d[held], self.cand_s[held], top[p]
            t = np.nan_to_num(self.cand_t[:, held].astype(np.float64), nan=-np.inf)
            tied = d + self.kappa_high * s >= tp  # treated as tied with the top by the upper end
            st = np.flatnonzero(np.r_[True, np.diff(p) != 0])
            who = p[st]
            out["candidates"][who] = np.diff(np.r_[st, p.size])

            def group_max(v):
                m = np.full((B, n), -np.inf)
                m[:, who] = np.maximum.reduceat(v, st, axis=1)
                return m

            m_all = group_max(t)
            m_tied = group_max(np.where(tied, t, -np.inf))
            m_top = group_max(np.where(d >= tp, t, -np.inf))
            out["n_ok"] = np.isfinite(m_all).sum(axis=0).astype(np.float64)
            c_lo, q_tied, q_top = (nan.copy() for _ in range(3))
            good = out["n_ok"] > 0
            c_lo[good] = _finite_quantile(m_all[:, good], 1 - TAIL)
            q_tied[good] = _finite_quantile(m_tied[:, good], TAIL)
            q_top[good] = _finite_quantile(m_top[:, good], TAIL)
            c_hi = np.where(np.isfinite(q_top), np.maximum(Z - (q_tied - q_top), 0.0), Z)
            c_hi = np.where(good, c_hi, np.nan)
            out["crit"], out["crit_high"] = c_lo, c_hi
            low = np.full(n, -np.inf)
            low[who] = np.fmax.reduceat(d - c_lo[p] * s, st)
            high = np.full(n, -np.inf)
            high[who] = np.fmax.reduceat(np.where(tied, d + c_hi[p] * s, d + Z * s), st)
            # records that are no candidates keep their own upper bound
            high = np.fmax(high, self.hi_drop[slots])
            out["low"] = np.where(good, low, np.nan)
            out["high"] = np.where(good, high, out["high"])
        # a record with AUC exactly 1 (zero variance) is the maximum and its own interval
        inf = np.isposinf(top)
        out["low"][inf], out["high"][inf] = np.inf, np.inf
        return out

    def _close(self, codes: np.ndarray) -> None:
        slots = self.slot_of[codes]
        r = self.result
        iv = self._interval(slots)
        r["max_ci_low"][codes] = sps.norm.cdf(iv["low"])
        r["max_ci_high"][codes] = sps.norm.cdf(iv["high"])
        r["max_crit"][codes], r["max_crit_high"][codes] = iv["crit"], iv["crit_high"]
        r["max_candidates"][codes] = iv["candidates"]
        if self.n_boot:
            dmax = np.where(np.isfinite(self.dmax[:, slots]), self.dmax[:, slots], np.nan)
            n_ok = np.isfinite(dmax).sum(axis=0)
            dhat = self.dhat[slots]
            bc = np.full(slots.size, np.nan)
            fin = np.isfinite(dhat) & (n_ok > 0)
            bc[fin] = 2 * dhat[fin] - np.nanmean(dmax[:, fin], axis=0)
            bc[np.isposinf(dhat)] = np.inf
            r["auc_bc"][codes] = sps.norm.cdf(bc)
            with np.errstate(invalid="ignore", over="ignore"):
                sd = np.nanstd(dmax, axis=0, ddof=1)
            r["max_se"][codes] = np.where((n_ok > 1) & np.isfinite(sd), sd, np.nan)
            if self.thresholds is not None:
                self._headline_replicates(dhat, dmax)
        r["n_boot"][codes] = iv["n_ok"]
        n_used = self.n_used[slots]
        if (n_used > 0).any():
            ok = n_used > 0
            a = crossfit_auc(self.llr[:, slots[ok]], self.member[:, slots[ok]], self.folds)
            se = a["se_bound"]
            if len(self.perms):
                sig = [np.hstack(self.signals[int(slot)]) for slot in slots[ok]]
                null = attack_null(
                    np.hstack(sig),
                    np.repeat(self.member[:, slots[ok]], [x.shape[1] for x in sig], axis=1),
                    np.repeat(np.arange(len(sig)), [x.shape[1] for x in sig]),
                    self.folds,
                    self.perms,
                )
                with np.errstate(invalid="ignore"):
                    se = np.nanstd(null, axis=0, ddof=1)
                    hits = (null >= a["auc"][None, :] - 1e-12).sum(axis=0)
                r["attack_p"][codes[ok]] = (1.0 + hits) / (1.0 + np.isfinite(null).sum(axis=0))
            r["attack_auc"][codes[ok]] = a["auc"]
            r["attack_se"][codes[ok]] = se
            r["attack_ci_low"][codes[ok]] = np.clip(a["auc"] - Z * se, 0.0, 1.0)
            r["attack_ci_high"][codes[ok]] = np.clip(a["auc"] + Z * se, 0.0, 1.0)
        for slot in slots:
            self.signals.pop(int(slot), None)
        r["attack_n_records"][codes] = n_used
        self.closed[codes] = True
        self.slot_of[codes] = -1
        self.free.extend(slots.tolist())

    def _headline_replicates(self, dhat: np.ndarray, dmax: np.ndarray) -> None:
        """Add closing patients (their d̂ and bootstrap maxima d*, (B, patients)) to the joint bootstrap."""
        defined = np.isfinite(dhat) | np.isposinf(dhat)
        dhat, dmax = dhat[defined], dmax[:, defined]
        dt = sps.norm.ppf(self.thresholds)
        weight = self.rng.poisson(1.0, size=(self.n_boot, dhat.size)).astype(np.float64)
        hb = self.hb
        hb["patients"] += weight @ (dhat[:, None] >= dt).astype(np.float64)
        hb["weight"] += weight.sum(axis=1)
        # a replicate in which a patient has no defined maximum keeps the patient's own d̂
        star = np.where(np.isnan(dmax), dhat[None, :], dmax)
        above = (star[:, :, None] >= dt).astype(np.float64)  # (B, patients, thresholds)
        hb["models"] += above.sum(axis=1)
        hb["within"] += above.var(axis=0).sum(axis=0)
        hb["n"] += int(dhat.size)

    def headline_bootstrap(self) -> np.ndarray:
        r"""(B, thresholds) joint bootstrap replicates of the share of patients at or above each threshold.

        Each replicate b resamples the patients (independent Poisson(1) weights :math:`c_{bp}`,
        the Poisson bootstrap) and the models (the audit's Poisson model weights, which
        resample every patient's in- and out-models and are shared by all patients, as the
        models are). The plain two-stage resample :math:`\sum_p c_{bp}\,1[d^*_{bp} \ge t]/\sum_p c_{bp}`
        counts each patient's measurement error twice: a patient's estimated AUC already
        carries it, so resampling the patients alone reproduces it (Davison & Hinkley 1997,
        §3.8, two-stage sampling). What resampling the patients misses is the covariance the
        *shared* models induce between patients. The replicate is therefore

        .. math::
            T_b = \frac{\sum_p c_{bp} 1[\hat d_p \ge t]}{\sum_p c_{bp}}
                + \lambda\,(M_b - \bar M), \qquad
            M_b = \frac1P \sum_p 1[d^*_{bp} \ge t],\quad
            \lambda^2 = \max\Bigl(0,\ 1 - \frac{\sum_p \widehat{\mathrm{Var}}_b(1[d^*_{bp} \ge t])/P^2}
                {\widehat{\mathrm{Var}}_b(M_b)}\Bigr):

        the model resample scaled to add only its between-patient covariance (the variance of
        :math:`M_b` less its per-patient part), clipped to [0, 1]. The interval
        (:func:`joint_interval`) turns their variance into a design effect. Its estimand is
        the share this audit design (these many models) reports on a new cohort from the same
        population; the deconvolved share
        (:mod:`mia_audit.audit.deconvolution`) estimates the share of patients whose *true*
        AUC is at or above t.
        """
        if self.thresholds is None or not self.n_boot:
            raise RuntimeError("headline_bootstrap needs thresholds and bootstrap replicates")
        hb = self.hb
        n = max(hb["n"], 1)
        with np.errstate(invalid="ignore", divide="ignore"):
            pat = hb["patients"] / hb["weight"][:, None]
        mod = hb["models"] / n
        var_mod = mod.var(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            lam = np.sqrt(np.clip(1.0 - hb["within"] / n**2 / var_mod, 0.0, 1.0))
        lam = np.where(var_mod > 0, lam, 0.0)
        return np.clip(pat + lam * (mod - mod.mean(axis=0)), 0.0, 1.0)

    def table(self) -> pd.DataFrame:
        """Per patient code: the columns of :data:`COLUMNS`."""
        if not self.closed.all():
            raise RuntimeError(f"{int((~self.closed).sum())} patients were never closed (blocks missing)")
        out = pd.DataFrame({c: self.result[c] for c in COLUMNS})
        for c in ("n_boot", "attack_n_records", "max_candidates"):
            out[c] = out[c].astype(np.int64)
        return out


def _finite_quantile(m: np.ndarray, q: float) -> np.ndarray:
    """Column-wise q-quantile over the finite entries (NaN for a column without any).

    numpy's default (linear interpolation between order statistics), vectorised over the
    columns by one sort (``np.nanquantile`` loops over columns with NaNs).
    """
    a = np.sort(np.where(np.isfinite(m), m, np.inf), axis=0)  # non-finite entries sort last
    n = np.isfinite(m).sum(axis=0)
    h = np.maximum(n - 1, 0) * q
    lo = np.floor(h).astype(np.int64)
    hi = np.minimum(lo + 1, np.maximum(n - 1, 0))
    cols = np.arange(a.shape[1])
    with np.errstate(invalid="ignore"):
        out = a[lo, cols] + (h - lo) * (a[hi, cols] - a[lo, cols])
    return np.where(n > 0, out, np.nan)


def join_patient_columns(table: pd.DataFrame, extra: pd.DataFrame) -> pd.DataFrame:
    """The patient table of :func:`mia_audit.audit.stats.patient_risk` with this module's columns appended.

    ``extra``: ``patient_id`` and :data:`COLUMNS` (:meth:`PatientAccumulator.table`). The
    interval of the maximum is made to contain ``auc`` exactly: the accumulator computes
    the same record AUCs as the record table, up to rounding.
    """
    out = table.merge(extra, on="patient_id", how="left", validate="one_to_one")
    auc = out["auc"]
    out["max_ci_low"] = out["max_ci_low"].where(~(out["max_ci_low"] > auc), auc)
    out["max_ci_high"] = out["max_ci_high"].where(~(out["max_ci_high"] < auc), auc)
    return out[[*[c for c in out.columns if c not in COLUMNS], *COLUMNS]]


#: the patient-AUC definitions of ``patient_thresholds.tsv`` beside the paper's (suffix, column)
THRESHOLD_DEFINITIONS = (("bc", "auc_bc"), ("attack", "attack_auc"))


def joint_interval(count, n, boot: np.ndarray, alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""The interval of a share from the joint bootstrap: Clopper–Pearson with an effective sample size.

    The bootstrap variance :math:`V` of the share (``boot``: (replicates, thresholds)) against
    the binomial :math:`\hat p(1-\hat p)/n` gives the design effect
    :math:`\mathrm{deff} = \max(1, V n / (\hat p (1 - \hat p)))` (1 where :math:`\hat p` is 0 or 1),
    and the exact binomial interval is taken at the effective sample size :math:`n^* = n/\mathrm{deff}`
    with :math:`x^* = \hat p n^*` positives (Korn & Graubard 1998, Survey Methodology 24:193–201:
    beta quantiles :math:`B_{\alpha/2}(x^*, n^* - x^* + 1)` and :math:`B_{1-\alpha/2}(x^* + 1, n^* - x^*)`).
    Unlike percentile intervals of the replicates it stays informative at a count of 0 or 1, where
    every replicate may be 0, and it is never narrower than the binomial interval over patients.
    Returns (low, high, deff) per threshold.
    """
    count = np.asarray(count, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    p = count / n
    var = np.var(np.asarray(boot, dtype=np.float64), axis=0, ddof=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        deff = np.where((p > 0) & (p < 1), np.maximum(1.0, var * n / (p * (1 - p))), 1.0)
    n_star = n / deff
    x_star = p * n_star
    with np.errstate(invalid="ignore", divide="ignore"):
        low = np.where(x_star > 0, sps.beta.ppf(alpha / 2, x_star, n_star - x_star + 1), 0.0)
        high = np.where(x_star < n_star, sps.beta.ppf(1 - alpha / 2, x_star + 1, n_star - x_star), 1.0)
    return low, high, deff


def threshold_table(
    patients: pd.DataFrame,
    thresholds,
    alpha: float = 0.05,
    boot: np.ndarray | None = None,
    deconvolved: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Patients at or above each AUC threshold, for each definition of the patient AUC.

    ``threshold, count, n, share, ci_low, ci_high`` for the paper's patient AUC (``auc``,
    the worst record; :func:`mia_audit.audit.stats.exposure_table`: the interval is binomial
    over patients), then ``ci_low_boot, ci_high_boot, deff_boot``: the interval of the joint
    bootstrap over models and patients and its design effect (``boot``, (replicates,
    thresholds) from :meth:`PatientAccumulator.headline_bootstrap`, :func:`joint_interval`; NaN
    without it), then ``count_eb, n_eb,
    share_eb, ci_low_eb, ci_high_eb``: the share of patients whose *true* AUC clears the
    threshold, by deconvolution (``deconvolved``, :func:`mia_audit.audit.deconvolution.deconvolved_shares`;
    NaN without it), then the columns of the first group suffixed ``_bc`` (bias-corrected
    maximum, ``auc_bc``) and ``_attack`` (the cross-fitted direct patient attack,
    ``attack_auc``); a definition without any defined value gets NaN counts.
    """
    out = stats.exposure_table(patients["auc"], thresholds=thresholds, alpha=alpha)
    if boot is not None and len(boot) > 1:
        out["ci_low_boot"], out["ci_high_boot"], out["deff_boot"] = joint_interval(out["count"], out["n"], boot, alpha)
    else:
        out["ci_low_boot"], out["ci_high_boot"], out["deff_boot"] = np.nan, np.nan, np.nan
    eb_cols = ["count_eb", "n_eb", "share_eb", "ci_low_eb", "ci_high_eb"]
    if deconvolved is not None:
        out = out.merge(deconvolved[["threshold", *eb_cols]], on="threshold", how="left")
    else:
        for c in eb_cols:
            out[c] = np.nan
    for suffix, col in THRESHOLD_DEFINITIONS:
        values = patients[col] if col in patients else pd.Series(dtype=float)
        if values.notna().any():
            t = stats.exposure_table(values, thresholds=thresholds, alpha=alpha)
        else:
            t = pd.DataFrame({c: np.nan for c in ("count", "n", "share", "ci_low", "ci_high")}, index=out.index)
        for c in ("count", "n", "share", "ci_low", "ci_high"):
            out[f"{c}_{suffix}"] = t[c].to_numpy()
    return out


def patient_statistics(
    conf,
    member,
    patient_ids,
    *,
    n_boot: int = 500,
    seed: int = 0,
    estimator: str = stats.ESTIMATOR_DEFAULT,
    block: int = 16384,
    record_ids=None,
    thresholds=None,
    attack_folds: int = 2,
    attack_permutations: int = 100,
):
    """The patient table of the audit for an in-memory (models, records) block of pool records.

    The same computation as the audit stage (:func:`mia_audit.audit.cube_audit.write_audit` and
    :func:`mia_audit.audit.cube_audit.patient_risk_from_parquet`) without a cube on disk: records in
    blocks of ``block``, :class:`PatientAccumulator`, :func:`mia_audit.audit.stats.patient_risk`
    and :func:`join_patient_columns`. Returns one row per patient (sorted by id); with
    ``thresholds`` (and ``n_boot`` > 0) also the joint bootstrap replicates of the headline
    shares (:meth:`PatientAccumulator.headline_bootstrap`) as a second value.
    """
    x = np.asarray(conf, dtype=np.float64)
    mem = np.asarray(member, dtype=bool)
    ids = np.asarray(patient_ids).astype(str)
    codes, uniq = pd.factorize(pd.Series(ids), sort=False)
    acc = PatientAccumulator(
        codes,
        len(uniq),
        x.shape[0],
        n_boot,
        np.random.default_rng([seed, 13]),
        estimator,
        np.asarray(uniq),
        thresholds=thresholds if n_boot else None,
        attack_folds=attack_folds,
        attack_permutations=attack_permutations,
    )
    parts = []
    for b in range(0, x.shape[1], block):
        sl = slice(b, min(b + block, x.shape[1]))
        parts.append(stats.record_risk(x[:, sl], mem[:, sl], estimator=estimator))
        acc.update(x[:, sl], mem[:, sl], np.arange(sl.start, sl.stop))
    records = pd.concat(parts, ignore_index=True)
    records.insert(0, "patient_id", ids)
    records.insert(0, "record_id", [f"r{i}" for i in range(len(ids))] if record_ids is None else list(record_ids))
    extra = acc.table()
    extra.insert(0, "patient_id", np.asarray(uniq).astype(str))
    table = join_patient_columns(stats.patient_risk(records), extra)
    if thresholds is not None:
        return table, (acc.headline_bootstrap() if n_boot else None)
    return table
