"""The audit stage over a confidence cube, in record blocks (bounded memory).

Only ``pool`` records are audited: held-out ``test`` records were never trained on, so
they have no in-distribution. When the cube has a ``view`` dimension, a record's signal
per model is the mean φ over views (the record-level statistic needs one number per model).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import zarr

from . import stats

RECORD_RISK_COLUMNS = [
    "record_id", "patient_id", "auc", "se", "se_hm", "mu_in", "mu_out", "sd_in", "sd_out",
    "n_in", "n_out", "n_nonfinite", "status",
]


def _read_coord(root, name: str) -> np.ndarray:
    return np.asarray(root[name][...])


def record_risk_from_cube(
    cube_path: str | Path,
    block_records: int = 65536,
    log: Callable[[str], None] | None = None,
) -> pd.DataFrame:
    """Per-record risk (see :func:`mia_audit.stats.record_risk`) for every pool record.

    Reads ``confidence`` and ``member`` ``block_records`` records at a time, so peak memory
    is O(models × block_records) whatever the cube's size.
    """
    root = zarr.open_group(str(cube_path), mode="r")
    conf_arr, mem_arr = root["confidence"], root["member"]
    n_records = conf_arr.shape[1]
    split = _read_coord(root, "split") if "split" in root else np.full(n_records, "pool")
    pool_idx = np.flatnonzero(split == "pool")
    record_id = _read_coord(root, "record_id")
    patient_id = _read_coord(root, "patient_id")
    # align blocks to the cube's record chunks so each chunk is decompressed once
    chunk = conf_arr.chunks[1]
    block = max(chunk, (block_records // chunk) * chunk)
    parts = []
    t0 = time.perf_counter()
    for start in range(0, n_records, block):
        stop = min(n_records, start + block)
        sel = pool_idx[(pool_idx >= start) & (pool_idx < stop)]
        if sel.size == 0:
            continue
        conf = np.asarray(conf_arr[:, start:stop])
        if conf.ndim == 3:
            with np.errstate(invalid="ignore"):
                conf = conf.mean(axis=2)
        mem = np.asarray(mem_arr[:, start:stop])
        local = sel - start
        df = stats.record_risk(conf[:, local], mem[:, local])
        df.insert(0, "patient_id", patient_id[sel])
        df.insert(0, "record_id", record_id[sel])
        parts.append(df)
        if log:
            log(f"record risk: {stop}/{n_records} records ({time.perf_counter() - t0:.1f} s)")
    out = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=RECORD_RISK_COLUMNS)
    return out[RECORD_RISK_COLUMNS]


FPR_LEVELS = (0.001, 0.01, 0.1)


def roc_summary(scores: np.ndarray, labels: np.ndarray, fprs=FPR_LEVELS) -> tuple[dict, np.ndarray, np.ndarray]:
    """AUC and TPR at fixed FPRs (the largest TPR whose FPR does not exceed the level)."""
    from sklearn.metrics import roc_auc_score, roc_curve

    fpr, tpr, _ = roc_curve(labels, scores)
    row = {"auc": float(roc_auc_score(labels, scores))}
    for level in fprs:
        row[f"tpr_at_fpr_{level:g}"] = float(tpr[fpr <= level].max())
    return row, fpr, tpr


def aggregate_attacks_from_cube(cube_path, n_targets: int = 10, log: Callable[[str], None] | None = None):
    """The global loss-threshold attack (Yeom et al. 2018) on the last ``n_targets`` models.

    Score = the target's own φ on each pool record; members vs non-members of that target.
    Returns the per-target table and the ROC curves (long format).
    """
    root = zarr.open_group(str(cube_path), mode="r")
    conf_arr, mem_arr = root["confidence"], root["member"]
    n_models = conf_arr.shape[0]
    if n_targets > n_models - 2:
        raise ValueError(f"audit.n_targets = {n_targets} leaves fewer than 2 reference models of {n_models}")
    split = _read_coord(root, "split")
    pool = np.flatnonzero(split == "pool")
    rows, curves = [], []
    for t in range(n_models - n_targets, n_models):
        conf = np.asarray(conf_arr[t])
        if conf.ndim == 2:
            conf = conf.mean(axis=1)
        conf, lab = conf[pool], np.asarray(mem_arr[t])[pool]
        if not np.isfinite(conf).all():
            rows.append({"attack": "loss_threshold", "target": t, "auc": np.nan, "status": "nonfinite_target"})
            continue
        row, fpr, tpr = roc_summary(conf, lab)
        rows.append({"attack": "loss_threshold", "target": t, **row, "status": "ok"})
        curves.append(pd.DataFrame({"attack": "loss_threshold", "target": t, "fpr": fpr, "tpr": tpr}))
    table = pd.DataFrame(rows)
    if log:
        log(f"loss-threshold attack on {n_targets} targets: mean AUC {table['auc'].mean():.4f}")
    return table, pd.concat(curves, ignore_index=True)
