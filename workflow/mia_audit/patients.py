r"""Patient risk that accounts for taking a maximum, and a direct patient-level attack.

A patient's AUC in the audit is the largest record AUC over the patient's records
(:func:`mia_audit.stats.patient_risk`): the patient is exposed if any one record is. The
maximum of noisy estimates is biased upwards (more so the more records a patient has and
the closer their AUCs are), and the worst record's own interval ignores that the record
was *selected* as the largest. This module adds, per patient:

**An interval for the maximum.** With :math:`d_j = \Phi^{-1}(\mathrm{AUC}_j)` and its
probit-scale SE :math:`s_j = \mathrm{SE}_j/\varphi(d_j)` for the patient's records j:

* upper end :math:`\Phi(\max_j (\hat d_j + z_{0.975} s_j))` = the largest of the records'
  upper 97.5 % bounds. If every record's AUC is at most its own bound, so is their
  maximum; the worst case (one record dominates) is exact, so the miss rate is ≤ 2.5 %.
* lower end :math:`\Phi(\max_j (\hat d_j - c\, s_j))`, where c is the 97.5 % quantile of
  :math:`\max_j (d^*_j - \hat d_j)/s^*_j` over a bootstrap over models: a bootstrap-t
  critical value *simultaneous* over the patient's records, so that every record's
  AUC is at least its lower bound with probability ≈ 97.5 % and hence so is the maximum.

The naive bootstrap of the maximum itself (percentile or basic interval) is not used:
it is inconsistent where several records tie for the maximum (Andrews 2000), and in
simulation it covered only 84–92 % for patients with 3–16 equally exposed records, while
this interval covers ≥ 95 % in every configuration and 96–98 % where records tie (see
``benchmarks/bench_patient_interval.py``). The construction is that of simultaneous
bootstrap bands (the bootstrap is consistent for the maximum of the studentised vector;
Chernozhukov, Chetverikov & Kato 2013, Ann. Stat. 41:2786–2819) applied as an
intersection–union bound on the maximum.

**A bias-corrected maximum.** :math:`\Phi(2\hat d_{max} - \overline{d^*_{max}})`, the
usual bootstrap bias correction on the probit scale (Efron & Tibshirani 1993, §10.3). It
removes most, not all, of the selection bias where records tie.

**The bootstrap over models.** A patient's records share the models that trained on the
patient (in) and those that did not (out); resampling them is a Poisson bootstrap
(Hanley & MacGibbon 2006, Comput. Methods Programs Biomed. 83:57–62): every model gets
an independent Poisson(1) weight, the in- and out-moments of every record are the
weighted ones and every record's AUC is recomputed. One weight matrix serves all
patients (each patient's bootstrap is then exactly a resampling of its own in- and
out-models), so the whole audit is a few matrix products.

**A direct patient-level attack.** Per model m, the patient score
:math:`s_m = \sum_j \log \mathcal N(\varphi_{mj}; \mu^{(-m)}_{in,j}, \sigma^{(-m)}_{in,j})
- \log \mathcal N(\varphi_{mj}; \mu^{(-m)}_{out,j}, \sigma^{(-m)}_{out,j})`: the LiRA-online
log-likelihood ratios of the patient's records summed (records treated as independent,
as LiRA combines augmentations), each with the record's Gaussians fitted on all *other*
models (leave-one-out: model m's own signal never enters its reference). The patient's
attack AUC is the AUC of :math:`s_m` between the models that trained on the patient and
those that did not, bi-normal (:func:`mia_audit.stats.binormal_auc`, delta-method SE) and
empirical (Mann–Whitney, DeLong SE). This is what an attacker holding all of the
patient's records and shadow models achieves; it takes no maximum and so has no
selection bias. Records whose in- or out-side has fewer than 3 models carry no
leave-one-out variance and are left out of the sum. The *empirical* AUC is the primary
one here: a sum of log-likelihood ratios is far from normal (heavy-tailed where a
record's in- and out-SDs differ), and the bi-normal AUC of the score, reported beside it,
fails the check of :func:`mia_audit.stats.mann_whitney_auc` for many patients
(``attack_binormal_flag``).

Memory: the audit streams the cube in record blocks. Per-patient state (the running
bootstrap maxima and score sums: ``(n_boot + 2) + n_models`` numbers) is held only
while a patient is *open* — from its first record until its last record in cube order
— and written out when it closes, so a cube whose records are grouped by patient needs
state for about one block's patients, and a cube in arbitrary order at most for all
patients, ``8·(n_models + 2·n_boot + n_models/8)`` bytes each.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import sparse
from scipy import stats as sps

from . import stats
from .errors import DataError

#: floor on leave-one-out SDs in the patient score (as :data:`mia_audit.attacks.MIN_SD`)
MIN_SD = 1e-6
#: one-sided level of each end of the patient interval (two-sided 95 %)
TAIL = 0.025

#: per-patient columns this module adds to ``patient_risk.parquet``
COLUMNS = [
    "auc_bc",
    "max_ci_low",
    "max_ci_high",
    "max_crit",
    "n_boot",
    "attack_auc",
    "attack_se",
    "attack_auc_bn",
    "attack_se_bn",
    "attack_binormal_flag",
    "attack_n_records",
]


def poisson_weights(n_models: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(n_boot, n_models) independent Poisson(1) model weights (the Poisson bootstrap)."""
    return rng.poisson(1.0, size=(n_boot, n_models)).astype(np.float64)


def weighted_probit_auc(conf, member, weights, estimator: str = stats.ESTIMATOR_DEFAULT):
    r"""Probit-scale bi-normal AUC and its SE of every record under every weight vector.

    For weights :math:`w` (one row of ``weights``) and side s (in / out) of record j, the
    weighted count :math:`n = \sum_m w_m`, mean and variance
    :math:`\sum_m w_m (\varphi_m - \mu)^2/(n - 1)` (ddof 0 and σ_in + 1e-10 for
    ``estimator="paper"``, as :func:`mia_audit.stats.paper_moments`) give
    :math:`d = \Delta/S` and :math:`\operatorname{SE}(d)` by the delta method
    (:func:`mia_audit.stats.binormal_auc_se_delta` divided by φ(d)). With the paper
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


def loo_llr(conf, member, min_sd: float = MIN_SD) -> tuple[np.ndarray, np.ndarray]:
    r"""Leave-one-out Gaussian log-likelihood ratio of every model's signal on every record.

    For model m on side s of record j (n samples, mean μ, sum of squared deviations SS),
    removing m's own signal x gives :math:`\mu' = (n\mu - x)/(n-1)` and
    :math:`SS' = SS - (x-\mu)(x-\mu')`, :math:`\sigma' = \sqrt{SS'/(n-2)}`; the other side's
    Gaussian is unchanged. The ratio is
    :math:`\log\mathcal N(x;\mu_{in},\sigma_{in}) - \log\mathcal N(x;\mu_{out},\sigma_{out})`
    with SDs floored at ``min_sd``.

    Returns (llr (models, records), NaN at non-finite signals; usable (records,) bool:
    both sides have ≥ 3 finite samples, else the record's llr is all NaN).
    """
    x = np.asarray(conf, dtype=np.float64)
    member = np.asarray(member, dtype=bool)
    m = stats.binormal_moments(x, member)
    usable = (m["n_in"] >= 3) & (m["n_out"] >= 3)
    params = {}
    for side, own in (("in", member), ("out", ~member)):
        n, mu, sd = m[f"n_{side}"], m[f"mu_{side}"], m[f"sd_{side}"]
        ss = sd**2 * (n - 1)
        with np.errstate(invalid="ignore", divide="ignore"):
            mu_loo = (n * mu - x) / (n - 1)
            sd_loo = np.sqrt(np.clip(ss - (x - mu) * (x - mu_loo), 0.0, None) / (n - 2))
        params[side] = (np.where(own, mu_loo, mu), np.maximum(np.where(own, sd_loo, sd), min_sd))
    with np.errstate(invalid="ignore", divide="ignore"):
        llr = sps.norm.logpdf(x, *params["in"]) - sps.norm.logpdf(x, *params["out"])
    llr = np.where(np.isfinite(x) & usable, llr, np.nan)
    return llr, usable


class PatientAccumulator:
    """Streams record blocks in cube order and closes each patient after its last record.

    Parameters
    ----------
    codes : (pool records,) int patient code of every pool record, in the order the
        blocks will arrive (``positions`` passed to :meth:`update` index into it).
    n_patients : number of distinct codes (codes are 0..n_patients − 1).
    n_models : models of the cube.
    n_boot : bootstrap replicates (0 = no interval and no bias correction).
    rng : generator of the Poisson weights (one matrix for the whole audit).
    estimator : the record-AUC estimator (:data:`mia_audit.stats.ESTIMATORS`).
    patient_ids : (n_patients,) the patient id of each code, for error messages.
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
    ):
        self.codes = np.asarray(codes, dtype=np.int64)
        self.n_patients, self.n_models, self.n_boot = int(n_patients), int(n_models), int(n_boot)
        self.estimator = estimator
        self.patient_ids = patient_ids
        self.last = np.full(self.n_patients, -1, dtype=np.int64)
        np.maximum.at(self.last, self.codes, np.arange(self.codes.size))
        self.weights = poisson_weights(self.n_models, self.n_boot, rng)
        self.boot_chunk = boot_chunk or max(256, 2**22 // max(self.n_boot, 1))
        self.slot_of = np.full(self.n_patients, -1, dtype=np.int64)
        self.free: list[int] = []
        self.capacity = 0
        self._alloc(1024)
        self.result = {c: np.full(self.n_patients, np.nan) for c in COLUMNS}
        self.closed = np.zeros(self.n_patients, dtype=bool)
        self.max_open = 0

    # ----------------------------------------------------------------- slots
    def _alloc(self, capacity: int) -> None:
        old = self.capacity
        grow = {
            "llr": ((self.n_models, capacity), 0.0, np.float64),
            "member": ((self.n_models, capacity), False, bool),
            "dmax": ((self.n_boot, capacity), -np.inf, np.float64),
            "tmax": ((self.n_boot, capacity), -np.inf, np.float64),
            "dhat": ((capacity,), -np.inf, np.float64),
            "n_used": ((capacity,), 0, np.int64),
        }
        for name, (shape, fill, dtype) in grow.items():
            arr = np.full(shape, fill, dtype=dtype)
            if old:
                arr[..., :old] = getattr(self, name)
            setattr(self, name, arr)
        self.free.extend(range(capacity - 1, old - 1, -1))
        self.capacity = capacity

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
        self.tmax[:, slots] = -np.inf
        self.dhat[slots] = -np.inf
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
        llr, usable = loo_llr(x, mem)
        llr = np.where(usable, llr, 0.0)  # unusable records carry no information: left out of the sum
        self.llr[:, slots] += np.asarray(group.T @ llr.T).T  # NaN (a non-finite signal) propagates
        np.add.at(self.n_used, slots[inv], usable.astype(np.int64))
        order = np.argsort(inv, kind="stable")  # records grouped by patient: maxima by reduceat
        rr_d = self._record_probit(x, mem)
        np.maximum.at(self.dhat, slots[inv], np.nan_to_num(rr_d, nan=-np.inf))
        if self.n_boot:
            dmax = np.full((self.n_boot, uniq.size), -np.inf)
            tmax = np.full((self.n_boot, uniq.size), -np.inf)
            for b0 in range(0, inv.size, self.boot_chunk):
                sel = order[b0 : b0 + self.boot_chunk]
                d, s = weighted_probit_auc(x[:, sel], mem[:, sel], self.weights, self.estimator)
                with np.errstate(invalid="ignore"):
                    t = (d - rr_d[sel]) / s
                d = np.nan_to_num(d, nan=-np.inf, posinf=np.inf)
                t = np.where(np.isfinite(t), t, -np.inf)
                g = inv[sel]
                st = np.flatnonzero(np.r_[True, np.diff(g) != 0])
                dmax[:, g[st]] = np.maximum(dmax[:, g[st]], np.maximum.reduceat(d, st, axis=1))
                tmax[:, g[st]] = np.maximum(tmax[:, g[st]], np.maximum.reduceat(t, st, axis=1))
            self.dmax[:, slots] = np.maximum(self.dmax[:, slots], dmax)
            self.tmax[:, slots] = np.maximum(self.tmax[:, slots], tmax)
        done = uniq[np.isin(self.last[uniq], pos)]  # patients whose last record was in this block
        if done.size:
            self._close(done)

    def _record_probit(self, x, mem) -> np.ndarray:
        """Φ⁻¹ of each record's AUC by the configured estimator (NaN where undefined)."""
        m = stats.binormal_moments(x, mem)
        if self.estimator == stats.ESTIMATOR_PAPER:
            auc = stats.paper_auc(m)
        else:
            auc = stats.binormal_auc(m["mu_in"], m["mu_out"], m["sd_in"], m["sd_out"])
        auc = np.where((m["n_in"] < 2) | (m["n_out"] < 2), np.nan, auc)
        return sps.norm.ppf(auc)

    # ----------------------------------------------------------------- close
    def _close(self, codes: np.ndarray) -> None:
        slots = self.slot_of[codes]
        r = self.result
        if self.n_boot:
            dmax = np.where(np.isfinite(self.dmax[:, slots]), self.dmax[:, slots], np.nan)
            tmax = np.where(np.isfinite(self.tmax[:, slots]), self.tmax[:, slots], np.nan)
            n_ok = np.isfinite(tmax).sum(axis=0)
            with np.errstate(invalid="ignore"):
                crit = np.where(n_ok > 0, np.nanquantile(np.where(n_ok > 0, tmax, 0.0), 1 - TAIL, axis=0), np.nan)
                dhat = self.dhat[slots]
                bc = np.where(np.isfinite(dhat), 2 * dhat - np.nanmean(np.where(n_ok > 0, dmax, 0.0), axis=0), dhat)
            bc = np.where(np.isneginf(dhat) | (n_ok == 0), np.nan, bc)
            r["max_crit"][codes] = crit
            r["auc_bc"][codes] = sps.norm.cdf(bc)
            r["n_boot"][codes] = n_ok
        else:
            r["n_boot"][codes] = 0
        n_used = self.n_used[slots]
        if (n_used > 0).any():
            ok = n_used > 0
            a = stats.record_risk(self.llr[:, slots[ok]], self.member[:, slots[ok]])
            for col, src in (
                ("attack_auc", "auc_emp"),
                ("attack_se", "se_emp"),
                ("attack_auc_bn", "auc"),
                ("attack_se_bn", "se"),
                ("attack_binormal_flag", "binormal_flag"),
            ):
                r[col][codes[ok]] = a[src].to_numpy(dtype=np.float64)
        r["attack_n_records"][codes] = n_used
        self.closed[codes] = True
        self.slot_of[codes] = -1
        self.free.extend(slots.tolist())

    def table(self) -> pd.DataFrame:
        """Per patient code: the columns of :data:`COLUMNS` except the interval ends."""
        if not self.closed.all():
            raise RuntimeError(f"{int((~self.closed).sum())} patients were never closed (blocks missing)")
        out = pd.DataFrame({c: self.result[c] for c in COLUMNS if c not in ("max_ci_low", "max_ci_high")})
        for c in ("n_boot", "attack_n_records"):
            out[c] = out[c].astype(np.int64)
        out["attack_binormal_flag"] = out["attack_binormal_flag"] == 1
        return out


def max_interval(records: pd.DataFrame, crit: pd.Series) -> pd.DataFrame:
    r"""The patient interval of the maximum from the record table and each patient's critical value.

    ``records``: ``patient_id, auc, se, ci_high`` per record; ``crit``: the bootstrap-t
    critical value c per patient (index ``patient_id``). Returns per patient
    ``max_ci_low`` = :math:`\max_j \Phi(\hat d_j - c\,s_j)` and ``max_ci_high`` =
    :math:`\max_j` ``ci_high``\ :sub:`j` (see the module docstring).
    """
    auc = records["auc"].to_numpy(dtype=np.float64)
    se = records["se"].to_numpy(dtype=np.float64)
    d = sps.norm.ppf(auc)
    c = records["patient_id"].map(crit).to_numpy(dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        low = np.where(se == 0, auc, sps.norm.cdf(d - c * se / sps.norm.pdf(d)))
    df = pd.DataFrame({"patient_id": records["patient_id"].to_numpy(), "max_ci_low": low})
    df["max_ci_high"] = records["ci_high"].to_numpy(dtype=np.float64)
    return df.groupby("patient_id", sort=True).max(min_count=1)


#: the patient-AUC definitions of ``patient_thresholds.tsv`` beside the paper's (suffix, column)
THRESHOLD_DEFINITIONS = (("bc", "auc_bc"), ("attack", "attack_auc"))


def threshold_table(patients: pd.DataFrame, thresholds, alpha: float = 0.05) -> pd.DataFrame:
    """Patients at or above each AUC threshold, for each definition of the patient AUC.

    ``threshold, count, n, share, ci_low, ci_high`` for the paper's patient AUC (``auc``,
    the worst record; :func:`mia_audit.stats.exposure_table`), then the same columns
    suffixed ``_bc`` (bias-corrected maximum, ``auc_bc``) and ``_attack`` (direct patient
    attack, ``attack_auc``); a definition without any defined value gets NaN counts.
    """
    out = stats.exposure_table(patients["auc"], thresholds=thresholds, alpha=alpha)
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
) -> pd.DataFrame:
    """The patient table of the audit for an in-memory (models, records) block of pool records.

    The same computation as the audit stage (:func:`mia_audit.audit.write_audit` and
    :func:`mia_audit.audit.patient_risk_from_parquet`) without a cube on disk: records in
    blocks of ``block``, :class:`PatientAccumulator`, :func:`mia_audit.stats.patient_risk`
    and :func:`max_interval`. Returns one row per patient (sorted by id).
    """
    x = np.asarray(conf, dtype=np.float64)
    mem = np.asarray(member, dtype=bool)
    ids = np.asarray(patient_ids).astype(str)
    codes, uniq = pd.factorize(pd.Series(ids), sort=False)
    acc = PatientAccumulator(
        codes, len(uniq), x.shape[0], n_boot, np.random.default_rng([seed, 13]), estimator, np.asarray(uniq)
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
    table = stats.patient_risk(records)
    table = table.join(max_interval(records, extra.set_index("patient_id")["max_crit"]), on="patient_id")
    return table.merge(extra, on="patient_id", how="left", validate="one_to_one")
