"""Simple strong baselines for a table data set: scikit-learn models on the targets' own splits.

Logistic regression and histogram gradient boosting with fixed settings, each fitted on the
member records of the first ``member_sets`` target models and on all pool records, and
evaluated on the held-out test patients as the target models are; for a binary label their
test predictions are kept (``baselines_predictions.parquet``) for the patient-clustered
interval of the gap (:func:`mia_audit.train.model_utility.clustered_intervals`). Protocol and settings:
docs/methods.md, "Model selection and baselines".
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import pandas as pd

BASELINES = ("logistic_regression", "hist_gradient_boosting")


def make_baseline(name: str, seed: int = 0):
    """An unfitted scikit-learn estimator of the baseline ``name`` (:data:`BASELINES`)."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if name == "logistic_regression":
        return make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=5000))
    if name == "hist_gradient_boosting":
        return HistGradientBoostingClassifier(random_state=seed)
    raise ValueError(f"unknown baseline {name!r}; known: {list(BASELINES)}")


def _scores(y: np.ndarray, proba: np.ndarray, classes: np.ndarray, n_classes: int) -> tuple[float, float, float]:
    """(loss, accuracy, AUC) of class probabilities ``proba`` (records × fitted classes)."""
    from sklearn.metrics import roc_auc_score

    full = np.zeros((len(y), n_classes))
    full[:, classes] = proba
    p = np.clip(full[np.arange(len(y)), y], 1e-7, 1 - 1e-7)
    loss = float(-np.log(p).mean())
    acc = float((full.argmax(1) == y).mean())
    try:
        if n_classes == 2:
            auc = float(roc_auc_score(y, full[:, 1]))
        else:
            auc = float(roc_auc_score(y, full, multi_class="ovr", labels=np.arange(n_classes)))
    except ValueError:
        auc = float("nan")
    return loss, acc, auc


def fit_baselines(
    X: np.ndarray,
    y: np.ndarray,
    member: np.ndarray,
    pool: np.ndarray,
    member_sets: int,
    seed: int = 0,
    names=BASELINES,
    log: Callable[[str], None] | None = None,
    return_predictions: bool = False,
):
    """One row per baseline × member set: ``baseline, member_set, train_records, train_auc,
    test_loss, test_acc, test_auc, seconds``.

    ``X`` (records × features), ``y`` int class per record, ``member`` (models × records)
    bool, ``pool`` bool per record (the rest are the test patients' records). With
    ``return_predictions``, also (second value) the test predictions of a binary label:
    ``baseline, member_set, record`` (row index into X) and ``score`` (the predicted
    probability of class 1); empty for more than two classes.
    """
    y = np.asarray(y, dtype=np.int64)
    n_classes = int(y.max()) + 1
    test = ~np.asarray(pool, dtype=bool)
    sets = [(str(m), np.asarray(member[m], dtype=bool)) for m in range(min(int(member_sets), member.shape[0]))]
    sets.append(("pool", np.asarray(pool, dtype=bool)))
    rows, preds = [], []
    test_rows = np.flatnonzero(test)
    for name in names:
        for label, train in sets:
            t0 = time.perf_counter()
            est = make_baseline(name, seed).fit(X[train], y[train])
            classes = np.asarray(est.classes_, dtype=np.int64)
            _, _, train_auc = _scores(y[train], est.predict_proba(X[train]), classes, n_classes)
            proba = est.predict_proba(X[test])
            loss, acc, auc = _scores(y[test], proba, classes, n_classes)
            if return_predictions and n_classes == 2:
                p1 = proba[:, list(classes).index(1)] if 1 in classes else np.zeros(len(test_rows))
                preds.append(pd.DataFrame({"baseline": name, "member_set": label, "record": test_rows, "score": p1}))
            rows.append(
                {
                    "baseline": name,
                    "member_set": label,
                    "train_records": int(train.sum()),
                    "train_auc": train_auc,
                    "test_loss": loss,
                    "test_acc": acc,
                    "test_auc": auc,
                    "seconds": round(time.perf_counter() - t0, 3),
                }
            )
        if log:
            own = pd.DataFrame(rows[-len(sets) :])
            sub = own[own["member_set"] != "pool"]
            log(
                f"{name}: mean test AUC {sub['test_auc'].mean():.3f} (SD {sub['test_auc'].std(ddof=1):.3f}) "
                f"over {len(sub)} target member sets; {own['test_auc'].iloc[-1]:.3f} trained on all pool records"
            )
    if return_predictions:
        cols = ["baseline", "member_set", "record", "score"]
        return pd.DataFrame(rows), (pd.concat(preds, ignore_index=True) if preds else pd.DataFrame(columns=cols))
    return pd.DataFrame(rows)


def summarise(table: pd.DataFrame) -> pd.DataFrame:
    """Per baseline over the target member sets (``pool`` left out): ``baseline, member_sets,
    test_auc_mean, test_auc_sd, test_loss_mean, test_auc_pool``, best first."""
    sub = table[table["member_set"].astype(str) != "pool"]
    pool = table[table["member_set"].astype(str) == "pool"].set_index("baseline")["test_auc"]
    out = sub.groupby("baseline", sort=False).agg(
        member_sets=("test_auc", "size"),
        test_auc_mean=("test_auc", "mean"),
        test_auc_sd=("test_auc", "std"),
        test_loss_mean=("test_loss", "mean"),
    )
    out["test_auc_pool"] = pool.reindex(out.index)
    return out.reset_index().sort_values("test_auc_mean", ascending=False, ignore_index=True)
