"""Record- and patient-level membership-inference statistics.

Every function is pure and vectorised over records. Notation: for one record, the
confidence signal φ (see :mod:`mia_audit.query.membership_signal`) of the models that trained on it
("in") and of those that did not ("out") are treated as two normal samples.

References
----------
Knolle et al., "Disparate privacy risks from medical AI" (the bi-normal record AUC).
Hanley & McNeil (1982), Radiology 143:29-36 (the conservative AUC standard error).
DeLong, DeLong & Clarke-Pearson (1988), Biometrics 44:837-845 (the SE of the empirical AUC);
Sun & Xu (2014), IEEE Signal Process. Lett. 21:1389-1393 (its computation from midranks).
Carlini et al. (2022), "Membership inference attacks from first principles" (LiRA).
Where these estimators differ from the paper's code and why: ``docs/methods.md``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats as sps

from mia_audit.errors import ConfigError

#: record status values written to ``record_risk.parquet``
STATUS_OK = "ok"
STATUS_TOO_FEW_IN = "too_few_in"  # fewer than 2 finite in-samples: AUC undefined
STATUS_TOO_FEW_OUT = "too_few_out"  # fewer than 2 finite out-samples: AUC undefined
STATUS_ZERO_VARIANCE = "zero_variance"  # both SDs 0: AUC is 0, 0.5 or 1 exactly, SE 0

#: record-AUC estimators (config key ``audit.compat``): this workflow's, or the paper code's
ESTIMATOR_DEFAULT = "default"
ESTIMATOR_PAPER = "paper"
ESTIMATORS = (ESTIMATOR_DEFAULT, ESTIMATOR_PAPER)
#: the paper code (moritzknolle/med_leak) adds this to the population SD of the in-signal
PAPER_SD_IN_OFFSET = 1e-10
#: … and clips its AUC to this range before the Hanley–McNeil SE
PAPER_AUC_CLIP = (0.5, 1.0 - 1e-10)
#: default two-sided level of the per-record check of the bi-normal AUC against the empirical one
BINORMAL_CHECK_ALPHA = 0.01


def binormal_moments(conf: np.ndarray, member: np.ndarray) -> dict[str, np.ndarray]:
    """Means, SDs (ddof=1) and counts of the in- and out-signal of each record.

    Parameters
    ----------
    conf : (models, records) float array of confidence signals. Non-finite values
        (a diverged model) are excluded and counted in ``n_nonfinite``.
    member : (models, records) bool array, True where the model trained on the record.

    Returns
    -------
    dict with ``mu_in, mu_out, sd_in, sd_out`` (float64, NaN where a side has < 2 finite
    samples), ``n_in, n_out`` (finite samples per side) and ``n_nonfinite``.
    """
    conf = np.asarray(conf, dtype=np.float64)
    member = np.asarray(member, dtype=bool)
    if conf.shape != member.shape or conf.ndim != 2:
        raise ValueError(f"confidence and member must both be (models, records); got {conf.shape} and {member.shape}")
    finite = np.isfinite(conf)
    x = np.where(finite, conf, 0.0)
    out: dict[str, np.ndarray] = {"n_nonfinite": (~finite).sum(axis=0)}
    for side, mask in (("in", member & finite), ("out", ~member & finite)):
        n = mask.sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            mu = (x * mask).sum(axis=0) / n
            # two-pass variance: numerically stable for large offsets
            dev = np.where(mask, x - mu, 0.0)
            var = (dev * dev).sum(axis=0) / (n - 1)
        ok = n >= 2
        out[f"mu_{side}"] = np.where(ok, mu, np.nan)
        out[f"sd_{side}"] = np.where(ok, np.sqrt(var), np.nan)
        out[f"n_{side}"] = n
    return out


def binormal_auc(mu_in, mu_out, sd_in, sd_out):
    r"""Bi-normal AUC of a record: :math:`\Phi\big((\mu_{in}-\mu_{out})/\sqrt{\sigma_{in}^2+\sigma_{out}^2}\big)`.

    The area under the ROC curve of the likelihood-free threshold attack on one record when
    the in- and out-signals are normal (Knolle et al.). Where both SDs are 0 the AUC is 1,
    0 or 0.5 by the sign of the mean difference.
    """
    mu_in, mu_out, sd_in, sd_out = np.broadcast_arrays(
        *(np.asarray(a, dtype=np.float64) for a in (mu_in, mu_out, sd_in, sd_out))
    )
    delta = mu_in - mu_out
    scale = np.sqrt(sd_in**2 + sd_out**2)
    with np.errstate(invalid="ignore", divide="ignore"):
        d = delta / scale
    # both SDs 0: ±inf by the sign of the mean difference, 0 (AUC 0.5) when the means tie;
    # np.sign(0) * inf would be NaN
    d = np.where(scale == 0, np.where(delta == 0, 0.0, np.copysign(np.inf, delta)), d)
    return sps.norm.cdf(d)


def binormal_auc_se_delta(mu_in, mu_out, sd_in, sd_out, n_in, n_out):
    r"""Delta-method standard error of the bi-normal AUC.

    With :math:`d = \Delta/S`, :math:`\Delta = \hat\mu_{in}-\hat\mu_{out}`,
    :math:`S^2 = s_{in}^2 + s_{out}^2`, independent normal means and variances
    (:math:`\operatorname{Var}\hat\mu = \sigma^2/n`, :math:`\operatorname{Var}s^2 = 2\sigma^4/(n-1)`):

    .. math::
        \operatorname{Var} d \approx \frac{s_{in}^2/n_{in} + s_{out}^2/n_{out}}{S^2}
          + \frac{\Delta^2}{4S^6}\Big(\frac{2s_{in}^4}{n_{in}-1} + \frac{2s_{out}^4}{n_{out}-1}\Big),
        \qquad \operatorname{SE}(\mathrm{AUC}) = \varphi(d)\sqrt{\operatorname{Var} d}.

    Zero where both SDs are 0 (the estimate is then exact on the sample); NaN where a side
    has fewer than 2 samples.
    """
    mu_in, mu_out, sd_in, sd_out, n_in, n_out = np.broadcast_arrays(
        *(np.asarray(a, dtype=np.float64) for a in (mu_in, mu_out, sd_in, sd_out, n_in, n_out))
    )
    delta = mu_in - mu_out
    v_in, v_out = sd_in**2, sd_out**2
    s2 = v_in + v_out
    with np.errstate(invalid="ignore", divide="ignore"):
        var_d = (v_in / n_in + v_out / n_out) / s2 + delta**2 / (4 * s2**3) * (
            2 * v_in**2 / (n_in - 1) + 2 * v_out**2 / (n_out - 1)
        )
        d = delta / np.sqrt(s2)
        se = sps.norm.pdf(d) * np.sqrt(var_d)
    se = np.where(s2 == 0, 0.0, se)
    return np.where((n_in < 2) | (n_out < 2), np.nan, se)


def binormal_auc_ci(auc, se, level: float = 0.95):
    r"""Confidence interval of a bi-normal AUC built on the probit scale.

    With :math:`d = \Phi^{-1}(\mathrm{AUC})` and
    :math:`\operatorname{SE}(d) = \operatorname{SE}(\mathrm{AUC})/\varphi(d)`
    (the delta method backwards), the interval is :math:`\Phi(d \mp z\,\operatorname{SE}(d))`. It stays inside
    [0, 1] and, unlike the Wald interval AUC ± z·SE, keeps its nominal coverage near AUC 1,
    where the estimate is skewed (checked by simulation in the tests).
    """
    auc, se = np.broadcast_arrays(np.asarray(auc, dtype=np.float64), np.asarray(se, dtype=np.float64))
    z = sps.norm.ppf(0.5 + level / 2)
    d = sps.norm.ppf(auc)
    with np.errstate(invalid="ignore", divide="ignore"):
        se_d = se / sps.norm.pdf(d)
        lo, hi = sps.norm.cdf(d - z * se_d), sps.norm.cdf(d + z * se_d)
    exact = se == 0  # zero-variance records: the point estimate is the interval
    return np.where(exact, auc, lo), np.where(exact, auc, hi)


def hanley_mcneil_se(auc, n_in, n_out):
    r"""Hanley & McNeil (1982) standard error of an AUC.

    .. math::
        \operatorname{SE}^2 = \frac{A(1-A) + (n_1-1)(Q_1-A^2) + (n_2-1)(Q_2-A^2)}{n_1 n_2},
        \quad Q_1 = \frac{A}{2-A},\; Q_2 = \frac{2A^2}{1+A}

    with :math:`n_1` = in-samples, :math:`n_2` = out-samples. This is what the paper reported;
    it assumes exponential scores and is conservative near AUC 1.
    """
    a, n1, n2 = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in (auc, n_in, n_out)))
    q1 = a / (2 - a)
    q2 = 2 * a**2 / (1 + a)
    with np.errstate(invalid="ignore", divide="ignore"):
        var = (a * (1 - a) + (n1 - 1) * (q1 - a**2) + (n2 - 1) * (q2 - a**2)) / (n1 * n2)
    return np.sqrt(np.clip(var, 0.0, None))


def _row_mean(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean over the entries of each row in ``mask`` (NaN for an empty row)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(mask, values, 0.0).sum(axis=1) / mask.sum(axis=1)


def _row_var(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Sample variance (ddof 1) over the entries of each row in ``mask`` (NaN below 2 entries).

    For bounded, O(1) quantities (placements, influence values) only: one pass of sums and
    sums of squares in float64.
    """
    v = np.where(mask, values, 0.0)
    n = mask.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        s1 = v.sum(axis=1)
        return np.clip((np.einsum("ij,ij->i", v, v) - s1 * s1 / n) / (n - 1), 0.0, None)


def _sorted_rows(conf, member):
    """Per record (row): the finite signals sorted ascending (NaN, i.e. excluded, last) and the
    in/out flags in the same order. (records, models) arrays."""
    x = np.asarray(conf, dtype=np.float64)
    xt = np.where(np.isfinite(x), x, np.nan).T
    order = np.argsort(xt, axis=1)  # ties need no stable order: they are handled as runs
    srt = np.take_along_axis(xt, order, axis=1)
    mem = np.take_along_axis(np.asarray(member, dtype=bool).T, order, axis=1)
    finite = np.isfinite(srt)
    return srt, mem & finite, ~mem & finite


def _placements(srt: np.ndarray, s_in: np.ndarray, s_out: np.ndarray) -> np.ndarray:
    r"""DeLong placements of every signal of each sorted row.

    Along a row sorted by value, the counts of in- and out-signals strictly below a value
    and tied with it give :math:`V_{10}(x) = (\#out < x + \tfrac12 \#out = x)/n_0` at
    in-signals and :math:`V_{01}(y) = 1 - (\#in < y + \tfrac12 \#in = y)/n_1` at out-signals
    (the midrank identities of Sun & Xu 2014); NaN elsewhere. Counts at the start and end of
    each run of tied values come from running maxima and minima of the cumulative counts,
    which never decrease along the row.
    """
    new = np.ones(srt.shape, dtype=bool)
    new[:, 1:] = srt[:, 1:] != srt[:, :-1]  # a run of tied values starts here (NaN never ties)
    tied_rows = np.flatnonzero(~new.all(axis=1))

    def below_and_half_tied(flags):
        upto = np.cumsum(flags, axis=1, dtype=np.int64)  # count at positions ≤ i
        below = (upto - flags).astype(np.float64)  # strictly before: exact where no value ties
        if tied_rows.size:
            u, nw = upto[tied_rows], new[tied_rows]
            last = np.ones(nw.shape, dtype=bool)
            last[:, :-1] = nw[:, 1:]
            lo = np.maximum.accumulate(np.where(nw, u - flags[tied_rows], 0), axis=1)  # strictly below the run
            hi = np.flip(np.minimum.accumulate(np.flip(np.where(last, u, u[:, -1:]), axis=1), axis=1), axis=1)
            below[tied_rows] = lo + 0.5 * (hi - lo)
        return below, upto[:, -1:]

    out_below, n_out = below_and_half_tied(s_out)
    in_below, n_in = below_and_half_tied(s_in)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(s_in, out_below / n_out, np.where(s_out, 1.0 - in_below / n_in, np.nan))


def mann_whitney_auc(conf: np.ndarray, member: np.ndarray, moments: dict | None = None, auc=None) -> dict:
    r"""Empirical (Mann–Whitney) AUC of each record with its DeLong SE, and the bi-normal check.

    With in-signals :math:`x_1..x_{n_1}`, out-signals :math:`y_1..y_{n_0}` and
    :math:`\psi(x, y) = [x > y] + \tfrac12[x = y]`:

    .. math::
        \hat A = \frac{1}{n_1 n_0}\sum_{i,j}\psi(x_i, y_j),\qquad
        V_{10}(x_i) = \frac{1}{n_0}\sum_j \psi(x_i, y_j),\quad
        V_{01}(y_j) = \frac{1}{n_1}\sum_i \psi(x_i, y_j),

    .. math::
        \operatorname{SE}^2 = \frac{s^2(V_{10})}{n_1} + \frac{s^2(V_{01})}{n_0}

    (DeLong et al. 1988; sample variances, ddof 1), with the placements V from one sort per
    record (:func:`_placements`). No distributional assumption; the SE is 0 at perfect
    separation (AUC 0 or 1).

    **The check of the bi-normal AUC** (when ``moments`` of :func:`binormal_moments` and the
    bi-normal ``auc`` are given). Both AUCs estimate the same number when the in- and
    out-signals are normal, and both come from the same signals, so they are strongly
    correlated: the SE of their difference comes from the per-signal influence functions,
    :math:`\psi_{in}, \psi_{out}` of the bi-normal AUC (:func:`binormal_influence`) and the
    placements of the empirical one:

    .. math::
        \operatorname{SE}^2(\hat A_{bn}-\hat A_{emp}) = \frac{s^2(\psi_{in} - V_{10})}{n_1}
            + \frac{s^2(\psi_{out} - V_{01})}{n_0},\qquad
        z = \frac{\hat A_{bn}-\hat A_{emp}}{\operatorname{SE}}.

    Under the bi-normal model z is approximately standard normal (checked by simulation in
    ``tests/audit/test_stats_simulation.py``); a large |z| says the bi-normal AUC does not
    describe the record's signals.

    Returns ``auc_emp, se_emp`` (NaN where a side has < 2 finite samples) and, with
    ``moments``, ``binormal_z`` (NaN where an AUC is undefined or the SE is 0).
    """
    srt, s_in, s_out = _sorted_rows(conf, member)
    place = _placements(srt, s_in, s_out)
    n_in, n_out = s_in.sum(axis=1), s_out.sum(axis=1)
    auc_emp = _row_mean(place, s_in)
    with np.errstate(invalid="ignore", divide="ignore"):
        var = _row_var(place, s_in) / n_in + _row_var(place, s_out) / n_out
    ok = (n_in >= 2) & (n_out >= 2)
    out = {"auc_emp": np.where(ok, auc_emp, np.nan), "se_emp": np.where(ok, np.sqrt(np.clip(var, 0.0, None)), np.nan)}
    if moments is not None:
        psi = binormal_influence(srt.T, s_in.T, moments).T  # signals in sorted order, per record
        e = psi - place
        with np.errstate(invalid="ignore", divide="ignore"):
            var_d = _row_var(e, s_in) / n_in + _row_var(e, s_out) / n_out
            z = (np.asarray(auc, dtype=np.float64) - out["auc_emp"]) / np.sqrt(var_d)
        out["binormal_z"] = np.where(np.isfinite(z), z, np.nan)
    return out


def binormal_influence(conf: np.ndarray, member: np.ndarray, moments: dict) -> np.ndarray:
    r"""Influence of each signal on the bi-normal AUC (its first-order linearisation).

    With :math:`\Delta = \mu_{in}-\mu_{out}`, :math:`S^2 = \sigma_{in}^2+\sigma_{out}^2`,
    :math:`d = \Delta/S`:

    .. math::
        \psi_{in}(x) = \varphi(d)\Big[\frac{x-\mu_{in}}{S}
            - \frac{\Delta}{2S^3}\big((x-\mu_{in})^2-\sigma_{in}^2\big)\Big],\quad
        \psi_{out}(y) = \varphi(d)\Big[-\frac{y-\mu_{out}}{S}
            - \frac{\Delta}{2S^3}\big((y-\mu_{out})^2-\sigma_{out}^2\big)\Big],

    so that :math:`\hat A - A \approx \overline{\psi_{in}} + \overline{\psi_{out}}`; their
    variances over normal samples give :func:`binormal_auc_se_delta`. conf, member
    (models, records); returns (models, records), NaN at non-finite signals.
    """
    x = np.asarray(conf, dtype=np.float64)
    member = np.asarray(member, dtype=bool)
    mu_in, mu_out, sd_in, sd_out = (moments[k] for k in ("mu_in", "mu_out", "sd_in", "sd_out"))
    delta = mu_in - mu_out
    with np.errstate(invalid="ignore", divide="ignore"):
        s = np.sqrt(sd_in**2 + sd_out**2)
        dens = sps.norm.pdf(delta / s)
        dev = np.where(member, x - mu_in, x - mu_out)
        var = np.where(member, sd_in**2, sd_out**2)
        psi = dens * (np.where(member, dev, -dev) / s - delta / (2 * s**3) * (dev**2 - var))
    return np.where(np.isfinite(x), psi, np.nan)


def paper_moments(moments: dict) -> dict:
    r"""The paper code's SDs: population SDs (ddof 0), :math:`\sigma_{in}` + 1e-10.

    From the sample SDs (ddof 1) of :func:`binormal_moments`:
    :math:`\sigma^{(0)} = s\sqrt{(n-1)/n}`. Means and counts are unchanged.
    """
    out = dict(moments)
    with np.errstate(invalid="ignore", divide="ignore"):
        out["sd_in"] = moments["sd_in"] * np.sqrt((moments["n_in"] - 1) / moments["n_in"]) + PAPER_SD_IN_OFFSET
        out["sd_out"] = moments["sd_out"] * np.sqrt((moments["n_out"] - 1) / moments["n_out"])
    return out


def paper_auc(moments: dict) -> np.ndarray:
    """The paper code's record AUC: the bi-normal AUC at :func:`paper_moments`, clipped to [0.5, 1 − 1e-10]."""
    p = paper_moments(moments)
    return np.clip(binormal_auc(p["mu_in"], p["mu_out"], p["sd_in"], p["sd_out"]), *PAPER_AUC_CLIP)


def record_risk(
    conf: np.ndarray,
    member: np.ndarray,
    estimator: str = ESTIMATOR_DEFAULT,
    check_alpha: float = BINORMAL_CHECK_ALPHA,
) -> pd.DataFrame:
    """Per-record bi-normal AUC with its standard errors from a (models, records) block.

    Columns: ``auc, se`` (delta method), ``ci_low, ci_high`` (95 %, probit scale, see
    :func:`binormal_auc_ci`), ``se_hm`` (Hanley–McNeil), ``mu_in, mu_out, sd_in,
    sd_out, n_in, n_out, n_nonfinite``, ``status`` (``ok``, ``too_few_in``,
    ``too_few_out`` or ``zero_variance``), and the non-parametric check of the bi-normal
    model: ``auc_emp, se_emp`` and ``binormal_z`` (:func:`mann_whitney_auc`) and
    ``binormal_flag`` (|z| above the two-sided ``check_alpha`` critical value). A record
    whose AUC is undefined gets NaN *and* a status that says why; it is never a silent NaN.

    ``estimator="paper"`` reproduces the paper code's record AUC and Hanley–McNeil SE
    (:func:`paper_auc`: population SDs, σ_in + 1e-10, AUC clipped to [0.5, 1 − 1e-10],
    the SE from the clipped AUC); ``se`` and the interval then come from the same delta
    method at the paper's SDs. The moment columns and the check stay this workflow's
    (ddof 1), whatever the estimator.
    """
    if estimator not in ESTIMATORS:
        raise ConfigError(f"audit.compat must be one of {list(ESTIMATORS)}, got {estimator!r}")
    if not 0.0 < check_alpha < 1.0:
        raise ConfigError(f"audit.binormal_check_alpha must lie in (0, 1), got {check_alpha}")
    m = binormal_moments(conf, member)
    auc_bn = binormal_auc(m["mu_in"], m["mu_out"], m["sd_in"], m["sd_out"])
    if estimator == ESTIMATOR_PAPER:
        p = paper_moments(m)
        auc = paper_auc(m)
        se = binormal_auc_se_delta(p["mu_in"], p["mu_out"], p["sd_in"], p["sd_out"], m["n_in"], m["n_out"])
    else:
        auc = auc_bn
        se = binormal_auc_se_delta(m["mu_in"], m["mu_out"], m["sd_in"], m["sd_out"], m["n_in"], m["n_out"])
    status = np.full(auc.shape, STATUS_OK, dtype=object)
    status[(m["sd_in"] == 0) & (m["sd_out"] == 0)] = STATUS_ZERO_VARIANCE
    status[m["n_out"] < 2] = STATUS_TOO_FEW_OUT
    status[m["n_in"] < 2] = STATUS_TOO_FEW_IN
    undefined = (m["n_in"] < 2) | (m["n_out"] < 2)
    auc = np.where(undefined, np.nan, auc)
    se_hm = np.where(undefined, np.nan, hanley_mcneil_se(auc, m["n_in"], m["n_out"]))
    ci_low, ci_high = binormal_auc_ci(auc, se)
    mw = mann_whitney_auc(conf, member, m, np.where(undefined, np.nan, auc_bn))
    z = mw["binormal_z"]
    crit = sps.norm.ppf(1 - check_alpha / 2)
    return pd.DataFrame(
        {
            "auc": auc,
            "se": se,
            "ci_low": ci_low,
            "ci_high": ci_high,
            "se_hm": se_hm,
            "mu_in": m["mu_in"],
            "mu_out": m["mu_out"],
            "sd_in": m["sd_in"],
            "sd_out": m["sd_out"],
            "n_in": m["n_in"].astype(np.int64),
            "n_out": m["n_out"].astype(np.int64),
            "n_nonfinite": m["n_nonfinite"].astype(np.int64),
            "status": pd.Categorical(
                status, categories=[STATUS_OK, STATUS_ZERO_VARIANCE, STATUS_TOO_FEW_IN, STATUS_TOO_FEW_OUT]
            ),
            "auc_emp": mw["auc_emp"],
            "se_emp": mw["se_emp"],
            "binormal_z": z,
            "binormal_flag": np.abs(np.nan_to_num(z, nan=0.0)) > crit,
        }
    )


def patient_risk(records: pd.DataFrame) -> pd.DataFrame:
    """Patient AUC = the maximum record AUC over the patient's records.

    ``records`` needs ``record_id, patient_id, auc, se`` (``ci_low, ci_high, se_hm`` are
    carried over from the worst record when present). A
    patient is exposed if any one of their records is, so the patient's SE is the SE of
    that worst record. Records with undefined AUC are ignored; a patient none of whose
    records has a defined AUC is kept with NaN AUC and ``n_defined = 0``.
    """
    for col in ("record_id", "patient_id", "auc", "se"):
        if col not in records:
            raise KeyError(f"record risk table lacks column {col!r}")
    df = records.assign(_defined=records["auc"].notna())
    n_records = df.groupby("patient_id", sort=True).size().rename("n_records")
    n_defined = df.groupby("patient_id", sort=True)["_defined"].sum().rename("n_defined")
    ranked = df[df["_defined"]].sort_values(["patient_id", "auc", "record_id"], ascending=[True, False, True])
    worst = ranked.drop_duplicates("patient_id").set_index("patient_id")
    cols = ["auc", "se"] + [c for c in ("ci_low", "ci_high", "se_hm") if c in records]
    out = pd.concat([n_records, n_defined], axis=1).join(worst[cols + ["record_id"]])
    out = out.rename(columns={"record_id": "worst_record_id"}).reset_index()
    out["n_defined"] = out["n_defined"].astype(np.int64)
    return out[["patient_id", *cols, "n_records", "n_defined", "worst_record_id"]]


def survival_function(values, thresholds=None, alpha: float = 0.05) -> pd.DataFrame:
    """Empirical survival function S(t) = share of values ≥ t, with a pointwise CI.

    The interval is the exact (Clopper–Pearson) binomial interval of the share, from
    :func:`statsmodels.stats.proportion.proportion_confint`. NaN values are dropped.
    Without ``thresholds`` the function is evaluated at every distinct value.
    """
    from statsmodels.stats.proportion import proportion_confint

    v = np.asarray(values, dtype=np.float64)
    v = np.sort(v[np.isfinite(v)])
    n = v.size
    if n == 0:
        raise ValueError("survival_function: no finite values")
    t = np.unique(v) if thresholds is None else np.asarray(thresholds, dtype=np.float64)
    count = n - np.searchsorted(v, t, side="left")
    lo, hi = proportion_confint(count, n, alpha=alpha, method="beta")
    return pd.DataFrame(
        {
            "threshold": t,
            "count": count,
            "n": n,
            "share": count / n,
            "ci_low": np.nan_to_num(lo, nan=0.0),
            "ci_high": np.nan_to_num(hi, nan=1.0),
        }
    )


def exposure_table(patient_auc, thresholds=(0.8, 0.9, 0.95, 0.99), alpha: float = 0.05) -> pd.DataFrame:
    """Count and share of patients with AUC ≥ each threshold, with exact 95 % intervals.

    Columns ``threshold, count, n, share, ci_low, ci_high`` (see :func:`survival_function`).
    """
    return survival_function(patient_auc, thresholds=thresholds, alpha=alpha)
