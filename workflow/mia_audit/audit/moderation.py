"""Empirical-Bayes moderated variances for record AUCs from few models.

Each record's in- and out-variance is shrunk toward a trend of log σ² in the side's mean
signal, as limma does for gene-wise variances: a scaled inverse-χ² prior whose d₀ and trend
(a cubic B-spline) are fitted by the method of moments (:func:`fit_variance_prior`), the
posterior variances (:meth:`VariancePrior.moderate`), and the bi-normal AUC with them and its
delta-method SE with the moderated degrees of freedom (:func:`moderated_auc`). The method, its
simulation check and its references (Smyth 2004; Law et al. 2014): docs/methods.md, "How many
target models are enough".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import special
from scipy import stats as sps
from scipy.interpolate import BSpline

from mia_audit.audit import stats
from mia_audit.errors import DataError

#: columns the moderated estimator adds to ``record_risk.parquet``
RECORD_COLUMNS = [
    "auc_mod",
    "se_mod",
    "ci_low_mod",
    "ci_high_mod",
    "sd_in_mod",
    "sd_out_mod",
    "df_in_mod",
    "df_out_mod",
]
#: columns the moderated estimator adds to ``patient_risk.parquet``
PATIENT_COLUMNS = ["auc_mod", "se_mod", "ci_low_mod", "ci_high_mod", "worst_record_id_mod"]
#: inner knots of the trend spline; fewer records than MIN_PER_BASIS per basis function → no trend
TREND_INNER_KNOTS = 2
MIN_PER_BASIS = 20


def trigamma_inverse(x) -> np.ndarray:
    r"""The y > 0 with :math:`\psi'(y) = x` (x > 0), by Newton's method as in limma (Smyth 2004, §6)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.where(
        x > 1e7, 1.0 / np.sqrt(np.maximum(x, 1e-300)), np.where(x < 1e-6, 1.0 / np.maximum(x, 1e-300), 0.5 + 1.0 / x)
    )
    for _ in range(100):
        tri = special.polygamma(1, y)
        step = tri * (1.0 - tri / x) / special.polygamma(2, y)
        y = y + step
        if np.all(np.abs(step) <= 1e-10 * y):
            break
    return y


@dataclass(frozen=True)
class VariancePrior:
    """Scaled inverse-χ² prior of one side's record variances: ``d0`` degrees of freedom and a
    scale :math:`s_0^2(\\mu)` = exp(trend(μ) + ψ(d0/2) − log(d0/2)) (``coef`` on a cubic B-spline
    basis with ``knots`` over [lo, hi]; one coefficient and no knots = a constant)."""

    d0: float
    coef: np.ndarray
    knots: np.ndarray | None
    lo: float
    hi: float

    def _trend(self, covariate) -> np.ndarray:
        c = np.asarray(covariate, dtype=np.float64)
        if self.knots is None:
            return np.full(c.shape, float(self.coef[0]))
        x = np.clip(np.nan_to_num(c, nan=(self.lo + self.hi) / 2), self.lo, self.hi)
        return _basis(x.ravel(), self.knots).toarray().dot(self.coef).reshape(c.shape)

    def scale(self, covariate) -> np.ndarray:
        """Prior scale :math:`s_0^2` at each covariate value."""
        t = self._trend(covariate)
        if np.isinf(self.d0):
            return np.exp(t)
        return np.exp(t + special.digamma(self.d0 / 2) - np.log(self.d0 / 2))

    def moderate(self, s2, df, covariate) -> tuple[np.ndarray, np.ndarray]:
        """Posterior variances :math:`(d_0 s_0^2 + d s^2)/(d_0 + d)` and their degrees of freedom
        :math:`d_0 + d` (inf with d0 = inf; NaN where the record's own variance is undefined)."""
        s2 = np.asarray(s2, dtype=np.float64)
        df = np.asarray(df, dtype=np.float64)
        s02 = self.scale(covariate)
        undefined = ~np.isfinite(s2) | (df < 1)
        if np.isinf(self.d0):
            post, post_df = s02, np.full(s2.shape, np.inf)
        else:
            with np.errstate(invalid="ignore"):
                post = (self.d0 * s02 + df * np.where(undefined, 0.0, s2)) / (self.d0 + df)
            post_df = self.d0 + df
        return np.where(undefined, np.nan, post), np.where(undefined, np.nan, post_df)


def _basis(x: np.ndarray, knots: np.ndarray):
    return BSpline.design_matrix(x, knots, 3)


def fit_variance_prior(s2, df, covariate=None) -> VariancePrior:
    """Estimate the prior (d0 and the trend of the scale in ``covariate``) from record variances.

    ``s2`` sample variances with ``df`` degrees of freedom each (n − 1); records whose
    variance is undefined, zero or not finite do not enter. The trend is a cubic B-spline
    with knots at quantiles of the covariate (limma-trend) when every basis function has
    at least :data:`MIN_PER_BASIS` records, otherwise a constant.
    """
    s2 = np.asarray(s2, dtype=np.float64)
    df = np.asarray(df, dtype=np.float64)
    ok = np.isfinite(s2) & (s2 > 0) & np.isfinite(df) & (df >= 1)
    cov = None if covariate is None else np.asarray(covariate, dtype=np.float64)
    if cov is not None:
        ok &= np.isfinite(cov)
    if ok.sum() < 3:
        raise DataError(
            f"moderated variances need at least 3 records with a positive finite variance; got {int(ok.sum())}"
        )
    e = np.log(s2[ok]) - special.digamma(df[ok] / 2) + np.log(df[ok] / 2)
    knots, lo, hi = None, 0.0, 0.0
    X = np.ones((e.size, 1))
    if cov is not None and ok.sum() >= MIN_PER_BASIS * (TREND_INNER_KNOTS + 4):
        x = cov[ok]
        lo, hi = float(x.min()), float(x.max())
        if hi > lo:
            inner = np.quantile(x, np.linspace(0, 1, TREND_INNER_KNOTS + 2)[1:-1])
            knots = np.r_[[lo] * 4, inner, [hi] * 4]
            X = _basis(x, knots).toarray()
    coef, *_ = np.linalg.lstsq(X, e, rcond=None)
    resid = e - X @ coef
    excess = resid @ resid / max(1, e.size - X.shape[1]) - special.polygamma(1, df[ok] / 2).mean()
    d0 = float(2 * trigamma_inverse(excess)) if excess > 0 else np.inf
    return VariancePrior(d0=d0, coef=coef, knots=knots, lo=lo, hi=hi)


def moderated_auc(mu_in, mu_out, var_in, var_out, n_in, n_out, df_in, df_out):
    """Bi-normal AUC with moderated variances and its delta-method SE (docs/methods.md).

    ``df_*`` are the moderated degrees of freedom (d0 + n − 1; inf for complete pooling).
    Returns ``(auc, se)``; NaN where a side has fewer than 2 samples.
    """
    mu_in, mu_out, v_in, v_out, n_in, n_out, df_in, df_out = np.broadcast_arrays(
        *(np.asarray(a, dtype=np.float64) for a in (mu_in, mu_out, var_in, var_out, n_in, n_out, df_in, df_out))
    )
    auc = stats.binormal_auc(mu_in, mu_out, np.sqrt(v_in), np.sqrt(v_out))
    delta = mu_in - mu_out
    s2 = v_in + v_out
    with np.errstate(invalid="ignore", divide="ignore"):
        var_d = (v_in / n_in + v_out / n_out) / s2 + delta**2 / (4 * s2**3) * (
            2 * v_in**2 / df_in + 2 * v_out**2 / df_out
        )
        se = sps.norm.pdf(delta / np.sqrt(s2)) * np.sqrt(var_d)
    undefined = (n_in < 2) | (n_out < 2)
    return np.where(undefined, np.nan, auc), np.where(undefined, np.nan, se)


def fit_priors(records: pd.DataFrame) -> dict[str, VariancePrior]:
    """The in- and out-side priors from a record-risk table (``mu_*, sd_*, n_*`` columns)."""
    return {
        side: fit_variance_prior(records[f"sd_{side}"] ** 2, records[f"n_{side}"] - 1.0, records[f"mu_{side}"])
        for side in ("in", "out")
    }


def moderated_columns(records: pd.DataFrame, priors: dict[str, VariancePrior] | None = None) -> pd.DataFrame:
    """The :data:`RECORD_COLUMNS` of each row of a record-risk table (same index).

    ``priors`` default to :func:`fit_priors` of ``records`` itself (the audit's use);
    the convergence analysis passes priors fitted on a larger set of records.
    """
    priors = priors or fit_priors(records)
    out = {}
    for side in ("in", "out"):
        var, df = priors[side].moderate(records[f"sd_{side}"] ** 2, records[f"n_{side}"] - 1.0, records[f"mu_{side}"])
        out[f"var_{side}"], out[f"df_{side}"] = var, df
    auc, se = moderated_auc(
        records["mu_in"],
        records["mu_out"],
        out["var_in"],
        out["var_out"],
        records["n_in"],
        records["n_out"],
        out["df_in"],
        out["df_out"],
    )
    lo, hi = stats.binormal_auc_ci(auc, se)
    return pd.DataFrame(
        {
            "auc_mod": auc,
            "se_mod": se,
            "ci_low_mod": lo,
            "ci_high_mod": hi,
            "sd_in_mod": np.sqrt(out["var_in"]),
            "sd_out_mod": np.sqrt(out["var_out"]),
            "df_in_mod": out["df_in"],
            "df_out_mod": out["df_out"],
        },
        index=records.index,
    )


def add_moderated(records: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, VariancePrior]]:
    """``records`` with the moderated columns appended (existing columns untouched), and the priors."""
    priors = fit_priors(records)
    return pd.concat([records, moderated_columns(records, priors)], axis=1), priors


def moderated_patient_risk(records: pd.DataFrame) -> pd.DataFrame:
    """Per patient: the worst record by moderated AUC (``patient_id`` + :data:`PATIENT_COLUMNS`)."""
    cols = {"auc_mod": "auc", "se_mod": "se", "ci_low_mod": "ci_low", "ci_high_mod": "ci_high"}
    view = records[["record_id", "patient_id", *cols]].rename(columns=cols)
    pr = stats.patient_risk(view)
    pr = pr.rename(columns={v: k for k, v in cols.items()} | {"worst_record_id": "worst_record_id_mod"})
    return pr[["patient_id", *PATIENT_COLUMNS]]


def describe(priors: dict[str, VariancePrior]) -> str:
    """One line for the logs: the prior degrees of freedom of each side."""
    return ", ".join(
        f"{side}: d0 = {p.d0:.3g}" + (" (trend)" if p.knots is not None else "") for side, p in priors.items()
    )


def extend_audit(record_risk_path, patients: pd.DataFrame, thresholds) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """The audit with ``audit.moderated_variance``: append :data:`RECORD_COLUMNS` to the record-risk
    file (rewritten in place), :data:`PATIENT_COLUMNS` to ``patients``, and return them with the
    moderated exposure columns (``count_mod, share_mod, ci_low_mod, ci_high_mod`` per threshold)
    and a log line."""
    records, priors = add_moderated(pd.read_parquet(record_risk_path))
    records.to_parquet(record_risk_path, index=False)
    patients = patients.merge(moderated_patient_risk(records), on="patient_id", how="left")
    table = stats.exposure_table(patients["auc_mod"], thresholds=thresholds)
    exposure = table[["threshold", "count", "share", "ci_low", "ci_high"]].rename(
        columns={c: f"{c}_mod" for c in ("count", "share", "ci_low", "ci_high")}
    )
    return patients, exposure, f"moderated variances: {describe(priors)}"
