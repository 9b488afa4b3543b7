"""Simple strong baselines for a table data set: scikit-learn models on the targets' own splits.

Protocol ("the same split" as a target model): baseline ``b`` is fitted on the member
records of target model m (its random half of the pool patients, from membership.zarr),
for each of the first ``member_sets`` target models, and evaluated on the records of the
held-out test patients, exactly as that target model is (models/metrics.tsv ``test_*``).
The spread over member sets is the baseline's counterpart of the spread over target
models. One more fit on all pool records (``member_set`` = ``pool``) shows what the
baseline reaches with twice the data; it is reported, not compared with.

Baselines (fixed settings, no tuning on the test patients):

* ``logistic_regression``: standardised features, L2-penalised logistic regression
  (C = 1, lbfgs; scikit-learn ``LogisticRegression``);
* ``hist_gradient_boosting``: scikit-learn ``HistGradientBoostingClassifier`` with its
  defaults (early stopping off below 10,000 records) and ``random_state`` = the seed.

For a binary label the baselines' predicted probabilities of the positive class on the test
records are kept as well (``baselines_predictions.parquet``): the patient-clustered bootstrap
of the gap between the target models and the best baseline
(:func:`mia_audit.train.model_utility.clustered_intervals`) recomputes both AUCs on the same
resampled test patients.

Test loss is the mean cross-entropy of the predicted probabilities (clipped to
[1e-7, 1 − 1e-7]), test AUC the ROC AUC (one-vs-rest macro average for more than two
classes), as for the target models.
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
