"""Utility beside risk: a summary of the target models' metrics and an overfitting check.

:func:`summarise` turns models/metrics.tsv into one row (means, SDs and the central 95 % of
single models, beside the best baseline); :func:`overfit_warnings` names the numbers when the
models are badly overfit. The rule and why it matters: docs/methods.md, "Model selection and
baselines".
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
