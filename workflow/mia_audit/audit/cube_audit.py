"""The audit stage over a confidence cube, in record blocks (bounded memory).

Only ``pool`` records are audited: held-out ``test`` records were never trained on, so
they have no in-distribution. When the cube has a ``view`` dimension, a record's signal
per model is the mean φ over views (the record-level statistic needs one number per model).

The patient-level statistics that need every record of a patient together (the interval
of the maximum and the direct patient attack, :mod:`mia_audit.audit.patients`) ride on the same
single pass in cube order: a patient's state is kept from its first to its last record and
then closed, so memory stays bounded by the block size for cubes whose records are grouped
by patient (and by the number of patients otherwise); see :class:`mia_audit.audit.patients.PatientAccumulator`.
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

from mia_audit.audit import attacks, patients, stats
from mia_audit.errors import DataError

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
    "auc_emp",
    "se_emp",
    "binormal_z",
    "binormal_flag",
]
#: records per call of :func:`mia_audit.audit.stats.record_risk` (bounds its working arrays)
COMPUTE_RECORDS = 16384


def _pool_index(root, n_records: int) -> np.ndarray:
    split = np.asarray(root["split"][...]) if "split" in root else np.full(n_records, "pool")
    return np.flatnonzero(split == "pool")


def pool_patients(cube_path) -> tuple[np.ndarray, np.ndarray]:
    """Patient code of every pool record in cube order, and the patient id of every code.

    Reads the ``patient_id`` coordinate slab by slab (never the whole column as text).
    Codes number patients in order of first appearance.
    """
    root = zarr.open_group(str(cube_path), mode="r")
    n_records = root["confidence"].shape[1]
    pool_idx = _pool_index(root, n_records)
    pid_arr = root["patient_id"]
    step = max(pid_arr.chunks[0], 1 << 20)
    index: dict[str, int] = {}
    codes = np.empty(pool_idx.size, dtype=np.int64)
    done = 0
    for start in range(0, n_records, step):
        sel = pool_idx[(pool_idx >= start) & (pool_idx < start + step)]
        if sel.size == 0:
            continue
        vals = np.asarray(pid_arr[start : min(n_records, start + step)])[sel - start].astype(str)
        local, uniq = pd.factorize(vals)
        glob = np.array([index.setdefault(u, len(index)) for u in uniq], dtype=np.int64)
        codes[done : done + sel.size] = glob[local]
        done += sel.size
    return codes, np.array(list(index), dtype=object)


def iter_record_risk(
    cube_path: str | Path,
    block_records: int = 65536,
    log: Callable[[str], None] | None = None,
    estimator: str = stats.ESTIMATOR_DEFAULT,
    check_alpha: float = stats.BINORMAL_CHECK_ALPHA,
    patients_acc: patients.PatientAccumulator | None = None,
    check: Callable[[int, int, np.ndarray, np.ndarray], None] | None = None,
    n_models: int | None = None,
) -> Iterator[pd.DataFrame]:
    """Per-record risk (:func:`mia_audit.audit.stats.record_risk`) of the pool records, block by block.

    The cube is read in slabs aligned to its record chunks (each chunk decompressed once)
    and each slab is processed ``block_records`` records at a time (at most
    :data:`COMPUTE_RECORDS` per statistics call), so peak memory is
    O(models × max(chunk, block_records)) whatever the cube's size. Each block is also
    handed to ``patients_acc`` (in pool order) when given. ``check(start, stop,
    confidence, member)`` sees every slab before it is used (e.g.
    :meth:`mia_audit.integrity.CubeCheck.check_slab`, which raises on a damaged chunk).
    ``n_models`` audits only the first models of the cube (an adaptive audit's trained waves);
    None = every model.
    """
    root = zarr.open_group(str(cube_path), mode="r")
    conf_arr, mem_arr = root["confidence"], root["member"]
    n_records = conf_arr.shape[1]
    pool_idx = _pool_index(root, n_records)
    record_id = root["record_id"]
    patient_id = root["patient_id"]
    chunk = conf_arr.chunks[1]
    slab = max(chunk, (block_records // chunk) * chunk)
    step = max(1, min(block_records, COMPUTE_RECORDS))
    position = 0  # index of the next pool record, in cube order
    t0 = time.perf_counter()
    for start in range(0, n_records, slab):
        stop = min(n_records, start + slab)
        sel = pool_idx[(pool_idx >= start) & (pool_idx < stop)]
        if sel.size == 0 and check is None:
            continue
        conf_slab = conf_arr[:n_models, start:stop]
        mem_slab = mem_arr[:n_models, start:stop]
        if check is not None:
            check(start, stop, conf_slab, mem_slab)
        rid, pid = np.asarray(record_id[start:stop]), np.asarray(patient_id[start:stop])
        for b in range(0, sel.size, step):
            local = sel[b : b + step] - start
            conf = conf_slab[:, local]
            if conf.ndim == 3:  # views: one number per model, the mean φ over views
                with np.errstate(invalid="ignore"):
                    conf = conf.mean(axis=2)
            member = mem_slab[:, local]
            df = stats.record_risk(conf, member, estimator=estimator, check_alpha=check_alpha)
            if patients_acc is not None:
                patients_acc.update(conf, member, np.arange(position, position + local.size))
            position += local.size
            df.insert(0, "patient_id", pid[local].astype(str))
            df.insert(0, "record_id", rid[local].astype(str))
            yield df[RECORD_RISK_COLUMNS]
        del conf_slab, mem_slab
        if log:
            log(f"record risk: {stop}/{n_records} records ({time.perf_counter() - t0:.1f} s)")


def write_record_risk(cube_path, out_path, block_records: int = 65536, log=None, **options) -> int:
    """Stream the record-risk table to Parquet without holding it in memory; returns the row count.

    ``options`` go to :func:`iter_record_risk` (``estimator``, ``check_alpha``, ``patients_acc``, ``check``,
    ``n_models``).
    """
    writer = None
    n = 0
    try:
        for df in iter_record_risk(cube_path, block_records, log, **options):
            table = pa.Table.from_pandas(df, preserve_index=False)
            if writer is None:
                writer = pq.ParquetWriter(str(out_path), table.schema)
            writer.write_table(table.cast(writer.schema))
            n += len(df)
    finally:
        if writer is not None:
            writer.close()
    if writer is None:
        raise DataError(f"{cube_path}: the cube has no pool records to audit")
    return n


def write_audit(
    cube_path,
    records_out,
    *,
    block_records: int = 65536,
    estimator: str = stats.ESTIMATOR_DEFAULT,
    check_alpha: float = stats.BINORMAL_CHECK_ALPHA,
    n_boot: int = 500,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
    check: Callable[[int, int, np.ndarray, np.ndarray], None] | None = None,
    n_models: int | None = None,
    thresholds=None,
    attack_folds: int = 2,
    attack_permutations: int = 100,
) -> tuple[int, pd.DataFrame, np.ndarray | None]:
    """Record risk to ``records_out`` and the per-patient columns of :mod:`mia_audit.audit.patients`, in one pass.
    ``check`` and ``n_models``: as in :func:`iter_record_risk` (every slab is verified before it is
    used; only the first ``n_models`` models are audited, None = all). ``attack_folds``,
    ``attack_permutations``: folds and membership shuffles of the cross-fitted direct attack.

    Returns (rows written, per-patient table: ``patient_id`` and
    :data:`mia_audit.audit.patients.COLUMNS`, which :func:`patient_risk_from_parquet` appends to
    the patient table, and with ``thresholds`` and ``n_boot`` > 0 the joint bootstrap replicates
    of the share of patients at or above each threshold,
    :meth:`mia_audit.audit.patients.PatientAccumulator.headline_bootstrap`, else None).
    """
    root = zarr.open_group(str(cube_path), mode="r")
    codes, ids = pool_patients(cube_path)
    acc = patients.PatientAccumulator(
        codes,
        len(ids),
        root["confidence"].shape[0] if n_models is None else int(n_models),
        n_boot,
        np.random.default_rng([seed, 13]),
        estimator=estimator,
        patient_ids=ids,
        thresholds=thresholds if n_boot else None,
        attack_folds=attack_folds,
        attack_permutations=attack_permutations,
    )
    n = write_record_risk(
        cube_path,
        records_out,
        block_records,
        log,
        estimator=estimator,
        check_alpha=check_alpha,
        patients_acc=acc,
        check=check,
        n_models=n_models,
    )
    extra = acc.table()
    extra.insert(0, "patient_id", ids.astype(str))
    if log:
        log(
            f"patient statistics: {len(ids)} patients, at most {acc.max_open} open at once "
            f"holding at most {acc.max_held} candidate records for the maximum, {n_boot} bootstrap replicates"
        )
    return n, extra, (acc.headline_bootstrap() if thresholds is not None and n_boot else None)


def record_risk_from_cube(cube_path, block_records: int = 65536, log=None) -> pd.DataFrame:
    """The whole record-risk table in memory (for small cubes and tests)."""
    parts = list(iter_record_risk(cube_path, block_records, log))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=RECORD_RISK_COLUMNS)


def check_summary(record_risk_path, estimator: str, check_alpha: float) -> list[str]:
    """Log lines on the record AUCs: the estimator used and how many records fail the bi-normal check."""
    df = pd.read_parquet(record_risk_path, columns=["auc", "auc_emp", "binormal_flag"])
    lines = []
    if estimator == stats.ESTIMATOR_PAPER:
        lines.append(
            "record AUC by the paper code's estimator (audit.compat: paper): population SDs, "
            "sigma_in + 1e-10, AUC clipped to [0.5, 1 - 1e-10]"
        )
    ok = df["auc"].notna() & df["auc_emp"].notna()
    diff = (df.loc[ok, "auc"] - df.loc[ok, "auc_emp"]).abs()
    n_flag = int(df["binormal_flag"].sum())
    lines.append(
        f"bi-normal check: {n_flag} of {int(ok.sum())} records ({100 * n_flag / max(int(ok.sum()), 1):.1f} %) "
        f"flagged at two-sided level {check_alpha:g} (bi-normal and empirical AUC disagree; use auc_emp for them); "
        f"|bi-normal - empirical| mean {diff.mean():.4f}, 95th percentile {diff.quantile(0.95):.4f}, "
        f"max {diff.max():.4f}"
    )
    return lines


def patient_risk_from_parquet(record_risk_path, extra: pd.DataFrame | None = None) -> pd.DataFrame:
    """Patient risk from a record-risk file, reading only the columns it needs.

    With ``extra`` (the per-patient table of :func:`write_audit`) the patient table also
    gets the interval of the maximum, the bias-corrected maximum and the direct patient
    attack (:data:`mia_audit.audit.patients.COLUMNS`, :func:`mia_audit.audit.patients.join_patient_columns`).
    """
    cols = ["record_id", "patient_id", "auc", "se", "ci_low", "ci_high", "se_hm"]
    records = pd.read_parquet(record_risk_path, columns=cols)
    table = stats.patient_risk(records)
    if extra is None:
        return table
    return patients.join_patient_columns(table, extra)


def aggregate_attacks_from_cube(
    cube_path,
    n_targets: int = 10,
    seed: int = 0,
    population: int | None = 2000,
    names=None,
    log: Callable[[str], None] | None = None,
    n_models: int | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The standard protocol (:func:`mia_audit.audit.attacks.attack_scores`) on the pool records.

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
