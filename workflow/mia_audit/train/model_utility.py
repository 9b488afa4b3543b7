"""Utility beside risk: a summary of the target models' metrics and an overfitting check.

:func:`summarise` turns models/metrics.tsv into one row (means, SDs and the central 95 % of
single models, beside the best baseline); :func:`overfit_warnings` names the numbers when the
models are badly overfit; :func:`clustered_intervals` gives the mean test AUC and its gap to
the best baseline patient-clustered bootstrap intervals (binary labels). The rule, the
intervals' coverage and why it matters: docs/methods.md, "Model selection and baselines".
"""

from __future__ import annotations

import numpy as np
import pandas as pd

COLUMNS = ("loss", "acc", "auc")
#: utility columns copied (as ``models_<column>``) into audit/patient_thresholds.tsv
THRESHOLD_COLUMNS = ("train_loss", "test_loss", "train_auc", "test_auc", "train_acc", "test_acc")


def summarise(metrics: pd.DataFrame, baselines: pd.DataFrame | None = None) -> dict:
    """One row (dict) of utility: ``models``, ``{train,test}_{loss,acc,auc}`` (means),
    ``..._sd`` (SD over models), ``test_auc_p2.5``/``test_auc_p97.5``, and with
    ``baselines`` (the summary of :func:`mia_audit.train.baselines.summarise`) ``best_baseline``,
    ``best_baseline_auc``, ``auc_gap``."""
    out: dict = {"models": int(len(metrics))}
    for split in ("train", "test"):
        for col in COLUMNS:
            name = f"{split}_{col}"
            values = metrics[name].to_numpy(dtype=float) if name in metrics else np.full(len(metrics), np.nan)
            out[name] = float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
            out[f"{name}_sd"] = float(np.nanstd(values, ddof=1)) if np.isfinite(values).sum() > 1 else float("nan")
    auc = metrics["test_auc"].dropna().to_numpy(dtype=float) if "test_auc" in metrics else np.array([])
    out["test_auc_p2.5"], out["test_auc_p97.5"] = (
        (float(np.percentile(auc, 2.5)), float(np.percentile(auc, 97.5))) if len(auc) else (np.nan, np.nan)
    )
    if baselines is not None and len(baselines):
        best = baselines.sort_values("test_auc_mean", ascending=False).iloc[0]
        out["best_baseline"] = str(best["baseline"])
        out["best_baseline_auc"] = float(best["test_auc_mean"])
        out["auc_gap"] = out["test_auc"] - out["best_baseline_auc"]
    return out


def weighted_auc(scores, positive, weights) -> np.ndarray:
    r"""ROC AUC of every row of ``scores`` (models, records) under every row of ``weights``
    (replicates, records): :math:`\sum_{i\in +,\,j\in -} w_i w_j ([s_i > s_j] + \tfrac12[s_i = s_j]) /
    (\sum_{+} w_i \sum_{-} w_j)`. Returns (replicates, models); NaN where a class has no weight.
    One sort per model; ties handled as runs of equal scores."""
    s = np.asarray(scores, dtype=np.float64)
    pos = np.asarray(positive, dtype=bool)
    w = np.asarray(weights, dtype=np.float64)
    out = np.full((w.shape[0], s.shape[0]), np.nan)
    w_pos = w[:, pos].sum(axis=1)
    w_neg = w[:, ~pos].sum(axis=1)
    for m in range(s.shape[0]):
        order = np.argsort(s[m], kind="stable")
        srt, p = s[m, order], pos[order]
        wn = np.where(p, 0.0, w[:, order])  # negative weight at each sorted position
        wp = np.where(p, w[:, order], 0.0)
        start = np.flatnonzero(np.r_[True, srt[1:] != srt[:-1]])  # runs of tied scores
        neg_run = np.add.reduceat(wn, start, axis=1)
        pos_run = np.add.reduceat(wp, start, axis=1)
        below = np.cumsum(neg_run, axis=1) - neg_run  # negative weight strictly below each run
        with np.errstate(invalid="ignore", divide="ignore"):
            out[:, m] = (pos_run * (below + 0.5 * neg_run)).sum(axis=1) / (w_pos * w_neg)
    bad = (w_pos <= 0) | (w_neg <= 0)
    out[bad] = np.nan
    return out


def patient_bootstrap_weights(patient_ids, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(n_boot, records) record weights of a bootstrap over patients: each replicate draws the
    P patients with replacement (multinomial counts) and every record of a patient carries its
    patient's count."""
    codes, uniq = pd.factorize(pd.Series(np.asarray(patient_ids).astype(str)))
    counts = rng.multinomial(len(uniq), np.full(len(uniq), 1.0 / len(uniq)), size=int(n_boot)).astype(np.float64)
    return counts[:, codes]


def clustered_intervals(
    target_scores,
    positive,
    patient_ids,
    baseline_scores: dict | None = None,
    best_baseline: str | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict:
    """Patient-clustered bootstrap intervals of the mean test AUC and of its gap to the best baseline.

    ``target_scores`` (models, test records): each target model's score of the positive class
    (any increasing function of its probability, e.g. the logit); ``positive`` bool per test
    record; ``patient_ids`` per test record; ``baseline_scores`` {baseline: (member sets, test
    records)} and ``best_baseline`` the one the gap is to. Returns ``test_auc_ci_low,
    test_auc_ci_high`` and, with baselines, ``auc_gap_ci_low, auc_gap_ci_high``, and
    ``ci_boot`` (replicates with both classes present), from :func:`weighted_auc` under
    :func:`patient_bootstrap_weights` (percentile intervals).
    """
    rng = np.random.default_rng([int(seed), 29])
    w = patient_bootstrap_weights(patient_ids, n_boot, rng)
    target = np.nanmean(weighted_auc(target_scores, positive, w), axis=1)
    q = [(1 - confidence) / 2, (1 + confidence) / 2]
    ok = np.isfinite(target)
    out = {"ci_boot": int(ok.sum())}
    out["test_auc_ci_low"], out["test_auc_ci_high"] = (
        (float(v) for v in np.quantile(target[ok], q)) if ok.any() else (np.nan, np.nan)
    )
    if baseline_scores and best_baseline in baseline_scores:
        base = np.nanmean(weighted_auc(baseline_scores[best_baseline], positive, w), axis=1)
        gap = target - base
        ok = np.isfinite(gap)
        out["auc_gap_ci_low"], out["auc_gap_ci_high"] = (
            (float(v) for v in np.quantile(gap[ok], q)) if ok.any() else (np.nan, np.nan)
        )
    return out


def cube_test_scores(skeleton_path, shard_rows, models) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """The target models' test predictions for a binary label, from the cube's skeleton (its
    coordinates) and the query shards' rows, ``(model_start, rows)`` per shard (as
    :func:`mia_audit.query.assemble.read_rows` reads them): what the assembled cube holds,
    read before it is assembled.

    Returns (scores (models, test records): the positive-class logit φ·(2y − 1), the mean φ over
    views; positive (test records,) bool; patient ids; record ids), or None when the label is
    not binary (``label_names`` of another length, or no ``label`` coordinate).
    """
    import json

    import zarr

    root = zarr.open_group(str(skeleton_path), mode="r")
    names = json.loads(root.attrs.get("label_names", "null") or "null")
    if "label" not in root or names is None or len(names) != 2:
        return None
    split = np.asarray(root["split"][...]).astype(str)
    test = np.flatnonzero(split == "test")
    y = np.asarray(root["label"][...])[test].astype(np.int64)
    models = np.asarray(models, dtype=np.int64)
    conf = None
    for start, rows in shard_rows:
        if conf is None:
            conf = np.full((models.size, test.size, *rows.shape[2:]), np.nan)
        inside = (models >= start) & (models < start + rows.shape[0])
        conf[inside] = rows[models[inside] - start][:, test]
    if conf is None:
        raise ValueError(f"no query rows for the cube {skeleton_path}")
    if conf.ndim == 3:
        with np.errstate(invalid="ignore"):
            conf = conf.mean(axis=2)
    scores = conf.astype(np.float64) * (2 * y - 1)[None, :]
    pids = np.asarray(root["patient_id"][...])[test].astype(str)
    rids = np.asarray(root["record_id"][...])[test].astype(str)
    return scores, y == 1, pids, rids


def baseline_test_scores(predictions: pd.DataFrame, record_ids) -> dict[str, np.ndarray]:
    """{baseline: (member sets, test records) scores} from ``baselines_predictions.parquet``, its
    columns in the order of ``record_ids``; the ``pool`` fit is left out (it is not compared)."""
    out = {}
    pred = predictions[predictions["member_set"].astype(str) != "pool"]
    for name, d in pred.groupby("baseline", sort=False):
        wide = d.pivot(index="member_set", columns="record_id", values="score")
        missing = set(map(str, record_ids)) - set(wide.columns.astype(str))
        if missing:
            raise ValueError(f"baselines_predictions: baseline {name!r} lacks test records {sorted(missing)[:3]}")
        out[str(name)] = wide.reindex(columns=list(record_ids)).to_numpy(dtype=np.float64)
    return out


def overfit_warnings(
    summary: dict, loss_ratio: float = 3.0, acc_limit: float = 0.98, auc_gap: float = 0.05
) -> list[str]:
    """Sentences naming the numbers of each overfitting sign (docs/methods.md); [] if none."""
    out = []
    tr, te = summary.get("train_loss", np.nan), summary.get("test_loss", np.nan)
    if (
        (summary.get("train_acc") or 0) >= acc_limit
        and np.isfinite(tr)
        and np.isfinite(te)
        and te >= loss_ratio * max(tr, 1e-12)
    ):
        out.append(
            f"target models are badly overfit: train accuracy {summary['train_acc']:.3f} and mean test loss "
            f"{te:.3g} = {te / max(tr, 1e-12):.0f} × the train loss {tr:.3g} (limit {loss_ratio:g} ×)"
        )
    gap = summary.get("auc_gap")
    if gap is not None and np.isfinite(gap) and gap < -auc_gap:
        out.append(
            f"target models' mean test AUC {summary['test_auc']:.3f} is {-gap:.3f} below the best baseline "
            f"({summary['best_baseline']}, {summary['best_baseline_auc']:.3f}; limit {auc_gap:g})"
        )
    return out


def legend(summary: dict) -> str:
    """Short utility label for figure legends: ``test AUC 0.79, loss train 0.36 / test 0.52``."""
    return (
        f"test AUC {summary['test_auc']:.2f}, loss train {summary['train_loss']:.2g} / test {summary['test_loss']:.2g}"
    )


def sentence(summary: dict) -> str:
    """Utility in words for log lines and captions."""
    out = (
        f"mean test AUC {summary['test_auc']:.3f} (95 % of models {summary['test_auc_p2.5']:.3f}–"
        f"{summary['test_auc_p97.5']:.3f}), train AUC {summary['train_auc']:.3f}, "
        f"loss train {summary['train_loss']:.3g} / test {summary['test_loss']:.3g}, "
        f"accuracy train {summary['train_acc']:.3f} / test {summary['test_acc']:.3f}"
    )
    best = summary.get("best_baseline")
    if isinstance(best, str) and best:
        out += f"; best baseline {best} {summary['best_baseline_auc']:.3f}"
    return out


def read(path) -> dict:
    """The one row of ``models/utility.tsv`` as a dict (``warning`` "" when none)."""
    row = pd.read_csv(path, sep="\t", keep_default_na=False, na_values=[""]).iloc[0].to_dict()
    row["warning"] = "" if pd.isna(row.get("warning")) else str(row.get("warning", ""))
    return row
