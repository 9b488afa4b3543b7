r"""Who is exposed, all attributes at once: a regression of patient exposure on the subgroups.

The tail tests (:mod:`mia_audit.analysis.subgroups`) ask one attribute at a time whether its
groups are over-represented among the most exposed. Attributes are correlated with each
other, with the number of records a patient has and with the label, so a reader cannot tell
from them which one carries the risk. The exposure model answers that with one regression
per experiment (``{experiment}/subgroups/exposure_model.tsv``).

**Response.** A patient's exposure on the probit scale, :math:`y_p = \Phi^{-1}(\mathrm{AUC}_p)`,
of the bias-corrected maximum ``auc_bc`` where the audit has it (else the worst record's
``auc``), clipped to AUC ∈ [0.001, 0.999]; its measurement SE :math:`s_p` is the bootstrap SD
of the patient's maximum on the probit scale (``max_se``; else the worst record's probit SE,
``se``/φ(Φ⁻¹(auc))). Patients without a defined AUC are left out.

**Covariates.** Every subgroup attribute of the data set as a categorical variable (treatment
coding, the attribute's largest group as reference), each patient in the group of their
first record (as the patient-level tail tests: a rule the model cannot change); the label of
the first record (categorical); and the number of records per patient as log(n) and log(n)²
(a patient's AUC is a maximum over their records, so it rises with their number; a quadratic
in log n where at least three record counts occur, linear with two, none with one).

**Fit.** Weighted least squares with the random-effects meta-regression weights
:math:`1/(s_p^2 + \hat\tau^2)`, :math:`\hat\tau^2` the residual between-patient variance by the
method of moments (DerSimonian & Laird 1986, Control. Clin. Trials 7:177–188, in its
meta-regression form: Thompson & Sharp 1999, Stat. Med. 18:2693–2708), and
heteroscedasticity-consistent (HC3) standard errors (MacKinnon & White 1985, J. Econometrics
29:305–325), so the intervals and p-values stay valid when the weights are off
(``statsmodels`` ``WLS(...).fit(cov_type="HC3")``). Each coefficient is the difference in
probit exposure between a group and the attribute's reference at equal other attributes,
label and records per patient, with its 95 % interval and p-value (t test); each attribute
also gets a joint Wald test of all its groups (``group`` = ``(all)``). P-values are not
adjusted. By simulation (``benchmarks/bench_exposure_model.py``) the intervals cover a known
effect and a null attribute that goes with the number of records keeps its level
(docs/methods.md).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from scipy import stats as sps

from mia_audit.errors import DataError

#: columns of ``subgroups/exposure_model.tsv``
COLUMNS = [
    "dataset",
    "experiment",
    "term",
    "attribute",
    "group",
    "reference",
    "n_patients_group",
    "estimate",
    "se",
    "ci_low",
    "ci_high",
    "p",
    "test",
    "n_patients",
    "tau2",
    "response",
    "note",
]
#: the AUC range of the probit response
AUC_CLIP = (0.001, 0.999)
#: attribute names of the adjustment terms
RECORDS_TERM = "records per patient"
LABEL_TERM = "label"


def patient_frame(records: pd.DataFrame, patient_risk: pd.DataFrame, attributes: list[str]) -> pd.DataFrame:
    """One row per patient with a defined AUC: ``patient_id, y, s, n_records``, the label and
    every attribute of the patient's first record (``records`` order), and ``response`` (which
    AUC column ``y`` is of)."""
    need = ["patient_id", "auc", "n_records"]
    missing = [c for c in need if c not in patient_risk.columns]
    if missing:
        raise DataError(f"patient_risk table lacks column(s) {missing}; has {list(patient_risk.columns)}")
    missing = [c for c in ["patient_id", *attributes] if c not in records.columns]
    if missing:
        raise DataError(f"records table lacks column(s) {missing}; has {list(records.columns)}")
    use_bc = "auc_bc" in patient_risk and patient_risk["auc_bc"].notna().any()
    auc = patient_risk["auc_bc" if use_bc else "auc"].to_numpy(dtype=float)
    d = sps.norm.ppf(np.clip(auc, *AUC_CLIP))
    if "max_se" in patient_risk and patient_risk["max_se"].notna().any():
        s = patient_risk["max_se"].to_numpy(dtype=float)
    else:
        raw = patient_risk["auc"].to_numpy(dtype=float)
        s = patient_risk["se"].to_numpy(dtype=float) / sps.norm.pdf(sps.norm.ppf(np.clip(raw, *AUC_CLIP)))
    cols = [*attributes, *(["label"] if "label" in records.columns else [])]
    first = records.assign(patient_id=records["patient_id"].astype(str)).drop_duplicates("patient_id")
    out = pd.DataFrame(
        {
            "patient_id": patient_risk["patient_id"].astype(str).to_numpy(),
            "y": d,
            "s": s,
            "n_records": patient_risk["n_records"].to_numpy(dtype=float),
        }
    ).join(first.set_index("patient_id")[cols].astype(str), on="patient_id")
    out["response"] = "auc_bc" if use_bc else "auc"
    return out[np.isfinite(out["y"].to_numpy()) & np.isfinite(np.asarray(auc))].reset_index(drop=True)


def _design(frame: pd.DataFrame, factors: list[str], orders: Mapping[str, list[str]]):
    """Design matrix: intercept, treatment dummies of each factor (largest group the reference),
    log(n) and log(n)² of the records per patient. Returns (X, terms: column → (attribute, group,
    reference), factor columns: attribute → its columns)."""
    cols = {"(intercept)": np.ones(len(frame))}
    terms: dict[str, tuple[str, str, str]] = {}
    blocks: dict[str, list[str]] = {}
    for attr in factors:
        values = frame[attr].astype(str)
        counts = values.value_counts()
        groups = list(counts.index)
        order = [g for g in (orders.get(attr) or []) if g in groups]
        groups = order + sorted(g for g in groups if g not in order)
        if len(groups) < 2:
            continue
        ref = str(counts.idxmax())
        blocks[attr] = []
        for g in groups:
            if g == ref:
                continue
            name = f"{attr}[{g}]"
            cols[name] = (values == g).to_numpy(dtype=float)
            terms[name] = (attr, g, ref)
            blocks[attr].append(name)
    logn = np.log(frame["n_records"].to_numpy(dtype=float))
    distinct = np.unique(logn).size
    blocks[RECORDS_TERM] = []
    if distinct >= 2:
        centre = logn.mean()
        cols["log(records)"] = logn - centre
        terms["log(records)"] = (RECORDS_TERM, "log(records)", "")
        blocks[RECORDS_TERM].append("log(records)")
        if distinct >= 3:
            cols["log(records)^2"] = (logn - centre) ** 2
            terms["log(records)^2"] = (RECORDS_TERM, "log(records)^2", "")
            blocks[RECORDS_TERM].append("log(records)^2")
    if not blocks[RECORDS_TERM]:
        del blocks[RECORDS_TERM]
    return pd.DataFrame(cols), terms, blocks


def tau2_moments(y: np.ndarray, s: np.ndarray, X: np.ndarray) -> float:
    r"""Residual between-unit variance of a meta-regression by the method of moments.

    With fixed-effect weights :math:`w = 1/s^2`, :math:`W = \mathrm{diag}(w)`, the weighted
    residual sum of squares :math:`Q` of y on X and
    :math:`P = W - WX(X^\top WX)^{-1}X^\top W`:
    :math:`\hat\tau^2 = \max\bigl(0, (Q - (n - p)) / \mathrm{tr}(P)\bigr)` (DerSimonian & Laird
    1986; the meta-regression form of Thompson & Sharp 1999).
    """
    w = 1.0 / np.maximum(s, 1e-8) ** 2
    xw = X * w[:, None]
    xtwx = X.T @ xw
    beta = np.linalg.lstsq(xtwx, xw.T @ y, rcond=None)[0]
    q = float(np.sum(w * (y - X @ beta) ** 2))
    n, p = X.shape
    trace = float(w.sum() - np.trace(np.linalg.lstsq(xtwx, xw.T @ xw, rcond=None)[0]))
    return max(0.0, (q - (n - p)) / trace) if trace > 0 else 0.0


def fit_exposure_model(
    frame: pd.DataFrame,
    attributes: list[str],
    orders: Mapping[str, list[str]] | None = None,
    confidence: float = 0.95,
) -> pd.DataFrame:
    """The regression of the module docstring on a :func:`patient_frame`: one row per
    coefficient (``term``) and one joint test per attribute (``group`` = ``(all)``)."""
    import statsmodels.api as sm

    factors = [a for a in attributes if a in frame.columns]
    if "label" in frame.columns:
        factors.append(LABEL_TERM)
    frame = frame.rename(columns={"label": LABEL_TERM}) if "label" in frame.columns else frame
    X, terms, blocks = _design(frame, factors, {**(orders or {})})
    y, s = frame["y"].to_numpy(dtype=float), frame["s"].to_numpy(dtype=float)
    s = np.where(np.isfinite(s) & (s > 0), s, np.nanmedian(s[np.isfinite(s) & (s > 0)]) if (s > 0).any() else 1.0)
    n, p = X.shape
    base = {"n_patients": n, "response": str(frame["response"].iloc[0]) if n else "", "note": ""}
    if n <= p + 1:
        return pd.DataFrame(
            [{**base, "term": "", "attribute": "", "group": "", "note": f"{n} patients for {p} coefficients: no fit"}]
        ).reindex(columns=COLUMNS)
    tau2 = tau2_moments(y, s, X.to_numpy())
    res = sm.WLS(y, X, weights=1.0 / (s**2 + tau2)).fit(cov_type="HC3")
    dfree = n - p
    rows = []
    for name, (attr, group, ref) in terms.items():
        est, se = float(res.params[name]), float(res.bse[name])
        t = est / se if se > 0 else np.nan
        rows.append(
            {
                **base,
                "term": name,
                "attribute": attr,
                "group": group,
                "reference": ref,
                "n_patients_group": int((frame[attr].astype(str) == group).sum()) if attr in frame else np.nan,
                "estimate": est,
                "se": se,
                "ci_low": est - sps.t.ppf(0.5 + confidence / 2, dfree) * se,
                "ci_high": est + sps.t.ppf(0.5 + confidence / 2, dfree) * se,
                "p": float(2 * sps.t.sf(abs(t), dfree)) if np.isfinite(t) else np.nan,
                "test": "t",
                "tau2": tau2,
            }
        )
    for attr, names in blocks.items():
        if not names:
            continue
        r = np.zeros((len(names), p))
        for i, name in enumerate(names):
            r[i, list(X.columns).index(name)] = 1.0
        wald = res.wald_test(r, use_f=True, scalar=True)
        rows.append(
            {
                **base,
                "term": f"{attr} (all)",
                "attribute": attr,
                "group": "(all)",
                "reference": terms[names[0]][2],
                "n_patients_group": n,
                "estimate": np.nan,
                "se": np.nan,
                "ci_low": np.nan,
                "ci_high": np.nan,
                "p": float(wald.pvalue),
                "test": f"F({len(names)}, {dfree})",
                "tau2": tau2,
            }
        )
    return pd.DataFrame(rows).reindex(columns=COLUMNS)


def exposure_model(
    records: pd.DataFrame,
    patient_risk: pd.DataFrame,
    *,
    dataset: str,
    experiment: str,
    attributes: list[str],
    orders: Mapping[str, list[str]] | None = None,
) -> pd.DataFrame:
    """``subgroups/exposure_model.tsv`` of one experiment (:func:`patient_frame`, :func:`fit_exposure_model`)."""
    frame = patient_frame(records, patient_risk, attributes)
    out = fit_exposure_model(frame, attributes, orders)
    out["dataset"], out["experiment"] = dataset, experiment
    return out[COLUMNS]
