"""The empirical ROC curve and its area, in NumPy, with scikit-learn's arithmetic.

``roc_curve`` and ``roc_auc`` compute, step for step, what ``sklearn.metrics.roc_curve``
and ``sklearn.metrics.roc_auc_score`` (scikit-learn 1.9) compute for a binary outcome
without sample weights, so their values are the same to the last bit:

* the records are sorted by score in descending order; the curve has one point per
  distinct score t, with TP(t) = #{members with score ≥ t} and FP(t) = #{non-members with
  score ≥ t} (ties make one diagonal step), plus the origin;
* ``drop_intermediate`` drops the points collinear with both neighbours (those where the
  second differences of FP and TP are both zero);
* FPR = FP / FP_max and TPR = TP / TP_max; the AUC is ``numpy.trapezoid`` of TPR over FPR
  of the curve with the collinear points dropped (the Mann–Whitney U / (n₁ n₀) up to
  rounding; Hanley & McNeil 1982).

They exist because the audit computes thousands of these curves on a few hundred to a few
thousand records each (per model metrics of an ensemble, attacks × targets × model counts),
where the input checks of scikit-learn's functions cost more than the computation, and
because importing scikit-learn costs the jobs that need nothing else from it about a
second. ``tests/audit/test_attacks.py`` checks both against scikit-learn.
"""

from __future__ import annotations

import numpy as np


def _counts(positive, score) -> tuple[np.ndarray, np.ndarray]:
    """(FP, TP) at each distinct score, descending (float64 counts, exact)."""
    s = np.asarray(score, dtype=np.float64).ravel()
    truth = np.asarray(positive).ravel().astype(bool)
    if s.shape != truth.shape:
        raise ValueError(f"scores {s.shape} and labels {truth.shape} differ in length")
    if not np.isfinite(s).all():
        raise ValueError("ROC curve: the scores contain NaN or infinity")
    order = np.argsort(s, kind="stable")[::-1]
    s = s[order]
    idx = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]  # last position of each distinct score
    tps = np.cumsum(truth[order].astype(np.float64))[idx]
    fps = 1 + idx.astype(np.float64) - tps
    return fps, tps


def roc_curve(positive, score, drop_intermediate: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(FPR, TPR) of the empirical ROC curve, from the origin (module docstring); NaN rates
    when a class is absent (as scikit-learn, which also warns)."""
    fps, tps = _counts(positive, score)
    if drop_intermediate and fps.size > 2:
        keep = np.flatnonzero(np.r_[True, np.logical_or(np.diff(fps, 2), np.diff(tps, 2)), True])
        fps, tps = fps[keep], tps[keep]
    fps, tps = np.r_[0.0, fps], np.r_[0.0, tps]
    fpr = fps / fps[-1] if fps[-1] > 0 else np.full(fps.shape, np.nan)
    tpr = tps / tps[-1] if tps[-1] > 0 else np.full(tps.shape, np.nan)
    return fpr, tpr


def roc_auc(positive, score) -> float:
    """Area under the empirical ROC curve (ties count one half); NaN when a class is absent."""
    truth = np.asarray(positive).ravel().astype(bool)
    if truth.all() or not truth.any():
        return float("nan")
    fpr, tpr = roc_curve(truth, score)
    return float(np.trapezoid(tpr, fpr))
