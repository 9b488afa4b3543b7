"""The audit stage over a confidence cube, in record blocks (bounded memory).

Only ``pool`` records are audited: held-out ``test`` records were never trained on, so
they have no in-distribution. When the cube has a ``view`` dimension, a record's signal
per model is the mean φ over views (the record-level statistic needs one number per model).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import zarr

from . import attacks, stats

RECORD_RISK_COLUMNS = [
    "record_id",
    "patient_id",
    "auc",
    "se",
    "ci_low",
    "ci_high",
    "se_hm",
    "mu_in",
    "mu_out",
    "sd_in",
    "sd_out",
    "n_in",
    "n_out",
    "n_nonfinite",
    "status",
]


def _pool_index(root, n_records: int) -> np.ndarray:
    split = np.asarray(root["split"][...]) if "split" in root else np.full(n_records, "pool")
    return np.flatnonzero(split == "pool")


def iter_record_risk(
    cube_path: str | Path,
    block_records: int = 65536,
    log: Callable[[str], None] | None = None,
    n_models: int | None = None,
) -> Iterator[pd.DataFrame]:
    """Per-record risk (:func:`mia_audit.stats.record_risk`) of the pool records, block by block.

    The cube is read in slabs aligned to its record chunks (each chunk decompressed once)
    and each slab is processed ``block_records`` records at a time, so peak memory is
    O(models × max(chunk, block_records)) whatever the cube's size. ``n_models`` audits only
    the first models of the cube (an adaptive audit's trained waves); None = every model.
    """
    root = zarr.open_group(str(cube_path), mode="r")
    conf_arr, mem_arr = root["confidence"], root["member"]
    n_records = conf_arr.shape[1]
    pool_idx = _pool_index(root, n_records)
    record_id = root["record_id"]
    patient_id = root["patient_id"]
    chunk = conf_arr.chunks[1]
    slab = max(chunk, (block_records // chunk) * chunk)
    t0 = time.perf_counter()
    for start in range(0, n_records, slab):
        stop = min(n_records, start + slab)
        sel = pool_idx[(pool_idx >= start) & (pool_idx < stop)]
        if sel.size == 0:
            continue
        conf_slab = conf_arr[:n_models, start:stop]
        mem_slab = mem_arr[:n_models, start:stop]
        rid, pid = np.asarray(record_id[start:stop]), np.asarray(patient_id[start:stop])
        for b in range(0, sel.size, block_records):
            local = sel[b : b + block_records] - start
            conf = conf_slab[:, local]
            if conf.ndim == 3:  # views: one number per model, the mean φ over views
                with np.errstate(invalid="ignore"):
                    conf = conf.mean(axis=2)
            df = stats.record_risk(conf, mem_slab[:, local])
            df.insert(0, "patient_id", pid[local].astype(str))
            df.insert(0, "record_id", rid[local].astype(str))
            yield df[RECORD_RISK_COLUMNS]
        del conf_slab, mem_slab
        if log:
            log(f"record risk: {stop}/{n_records} records ({time.perf_counter() - t0:.1f} s)")


def write_record_risk(cube_path, out_path, block_records: int = 65536, log=None, n_models: int | None = None) -> int:
    """Stream the record-risk table to Parquet without holding it in memory; returns the row count."""
    writer = None
    n = 0
    try:
        for df in iter_record_risk(cube_path, block_records, log, n_models):
            table = pa.Table.from_pandas(df, preserve_index=False)
            if writer is None:
                writer = pq.ParquetWriter(str(out_path), table.schema)
            writer.write_table(table.cast(writer.schema))
            n += len(df)
    finally:
        if writer is not None:
            writer.close()
    if writer is None:
        raise ValueError(f"{cube_path}: the cube has no pool records to audit")
    return n


def record_risk_from_cube(cube_path, block_records: int = 65536, log=None) -> pd.DataFrame:
    """The whole record-risk table in memory (for small cubes and tests)."""
    parts = list(iter_record_risk(cube_path, block_records, log))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=RECORD_RISK_COLUMNS)


def patient_risk_from_parquet(record_risk_path) -> pd.DataFrame:
    """Patient risk from a record-risk file, reading only the columns it needs."""
    cols = ["record_id", "patient_id", "auc", "se", "ci_low", "ci_high", "se_hm"]
    return stats.patient_risk(pd.read_parquet(record_risk_path, columns=cols))


def aggregate_attacks_from_cube(
    cube_path,
    n_targets: int = 10,
    seed: int = 0,
    population: int | None = 2000,
    names=None,
    log: Callable[[str], None] | None = None,
    n_models: int | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The standard protocol (:func:`mia_audit.attacks.attack_scores`) on the pool records.

    Returns the per attack × target table (``aggregate_attacks.tsv``) and the mean ROC
    curve of each attack over targets with its SD (``aggregate_roc.parquet``: ``attack,
    fpr, tpr_mean, tpr_sd, n_targets``). The pool records of the whole cube are held in
    memory here (models × pool records × views, float64). ``n_models``: only the first
    models of the cube (an adaptive audit's trained waves); None = every model.
    """
    root = zarr.open_group(str(cube_path), mode="r")
    conf_arr, mem_arr = root["confidence"], root["member"]
    pool = _pool_index(root, conf_arr.shape[1])
    conf = np.asarray(conf_arr.get_orthogonal_selection((slice(n_models), pool)), dtype=np.float64)
    member = np.asarray(mem_arr.get_orthogonal_selection((slice(n_models), pool)))
    t0 = time.perf_counter()
    res = attacks.attack_scores(
        conf,
        member,
        n_targets=n_targets,
        seed=seed,
        attacks=tuple(names or attacks.ATTACKS),
        population=min(population, pool.size - 1) if population else None,
    )
    table = attacks.aggregate_table(res)
    curves = []
    for name, scores in res["scores"].items():
        ok = [i for i in range(len(res["targets"])) if np.isfinite(scores[i]).any()]
        if not ok:
            continue
        keep = [np.isfinite(scores[i]) for i in ok]
        roc = attacks.mean_roc(
            [scores[i][k] for i, k in zip(ok, keep, strict=True)],
            [res["labels"][i][k] for i, k in zip(ok, keep, strict=True)],
        )
        roc.insert(0, "attack", name)
        curves.append(roc)
    if log:
        log(
            f"{len(res['scores'])} attacks on {len(res['targets'])} targets with {len(res['references'])} reference "
            f"models in {time.perf_counter() - t0:.1f} s; RMIA offline a = {res['rmia_a']}"
        )
        if len(res["nonfinite_models"]):
            log(f"models with non-finite confidences (excluded as references): {res['nonfinite_models'].tolist()}")
    return table, pd.concat(curves, ignore_index=True)
