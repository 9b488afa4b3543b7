"""From an adapter's index to the prepare stage's outputs (records.parquet + inputs.zarr).

Images and signals are decoded in parallel (a :class:`concurrent.futures.ProcessPoolExecutor`
with ``workers`` processes; 0 or 1 = in this process) and streamed into ``inputs.zarr``
``block_records`` records at a time, the next block being decoded while the current one is
written, so memory holds at most two blocks whatever the size of the data set.

Records: ids, the split and subgroup columns follow :mod:`.records` for every adapter.
Table adapters (``modality == "table"``) get their standardised features from
:func:`.adapters.table.prepare_table` instead of a stream of per-record inputs.

:func:`validate` runs every check of :func:`prepare` with the same reading code and writes
nothing: for tables the whole preparation in memory (cheap), for the other adapters the
index, the records table, the split and the existence of every raw file (decoding the
images themselves is prepare's work). The workflow runs it as its own step so that a bad
input stops the run before ``prepare_dataset`` replaces earlier outputs.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd
import xarray as xr
import zarr

from mia_audit import integrity
from mia_audit.data.adapters.base import check_index, get_adapter, label_columns
from mia_audit.data.adapters.table import FLAG_COLUMNS, prepare_table
from mia_audit.data.records import check_split, records_table, uses_official_split
from mia_audit.errors import DataError
from mia_audit.settings import complete


@dataclass
class Layout:
    variable: str
    dims: tuple[str, ...]
    modality: str


LAYOUTS = {
    "image": Layout("images", ("record", "channel", "y", "x"), "image"),
    "signal": Layout("signals", ("record", "lead", "time"), "signal"),
}


def _load_one(args):
    name, row, spec = args
    return get_adapter(name).load_input(row, spec)


def _load_block(pool, name, rows, spec):
    jobs = [(name, r, spec) for r in rows]
    if pool is None:
        return [_load_one(j) for j in jobs]
    return pool.map(_load_one, jobs, chunksize=max(1, len(jobs) // (4 * pool._max_workers)))


def stream_inputs(
    path,
    name: str,
    rows: list[dict],
    spec: dict,
    layout: Layout,
    attrs: dict,
    record_ids: np.ndarray,
    workers: int = 1,
    block_records: int = 1024,
    coords: dict | None = None,
) -> tuple[int, ...]:
    """Decode every row with the adapter's ``load_input`` and write the stack to ``path`` in blocks.

    Returns the shape of the written array. The first record fixes the per-record shape;
    a record of another shape is an error naming its record id.
    """
    n = len(rows)
    first = np.asarray(_load_one((name, rows[0], spec)))
    shape, dtype = first.shape, first.dtype
    ds = xr.Dataset(coords={"record_id": ("record", np.asarray(record_ids).astype("U")), **(coords or {})}, attrs=attrs)
    from mia_audit.storage import quiet_zarr

    with quiet_zarr():
        ds.to_zarr(path, mode="w", consolidated=False)
    root = zarr.open_group(path, mode="a")
    store_chunk = max(1, min(block_records, 256))
    block = max(store_chunk, (block_records // store_chunk) * store_chunk)  # aligned: no partial chunk writes
    arr = root.create_array(
        layout.variable, shape=(n, *shape), chunks=(store_chunk, *shape), dtype=dtype, dimension_names=list(layout.dims)
    )
    pool = ProcessPoolExecutor(max_workers=workers) if workers and workers > 1 else None
    digest = integrity.ValuesHasher()  # of the whole array, block by block (checked by its readers)
    try:
        pending = None
        for start in range(0, n, block):
            stop = min(n, start + block)
            current = pending if pending is not None else _load_block(pool, name, rows[start:stop], spec)
            nxt = stop
            pending = (
                _load_block(pool, name, rows[nxt : min(n, nxt + block)], spec) if nxt < n and pool is not None else None
            )
            out = np.empty((stop - start, *shape), dtype=dtype)
            for i, x in enumerate(current):
                x = np.asarray(x)
                if x.shape != shape:
                    raise DataError(
                        f"record {record_ids[start + i]!r}: input shape {x.shape}, expected {shape} "
                        "like the first record"
                    )
                out[i] = x
            arr[start:stop] = out
            digest.update(out)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    root.attrs[integrity.ARRAYS_ATTR] = {
        layout.variable: digest.hexdigest(),
        **{name: integrity.values_digest(a[...]) for name, a in root.arrays() if name != layout.variable},
    }
    with quiet_zarr():
        zarr.consolidate_metadata(path)
    return (n, *shape)


def _index_records(adapter, spec: dict, root, dataset=None) -> tuple[pd.DataFrame, pd.DataFrame, str, list, dict]:
    """A non-table adapter's index, checked, and its records table with the split checked:
    ``(index, records, task, label_names, split counts)``."""
    if root is None and getattr(adapter, "needs_root", True):
        raise DataError(
            f"adapter {adapter.name!r} needs config key datasets.{dataset or '<name>'}.root (the data directory)"
        )
    index = adapter.read_index(spec, root).reset_index(drop=True)
    check_index(index, adapter, spec)
    task, label_names = adapter.labels(spec)
    rec = records_table(index, spec, task, label_names)
    official = uses_official_split(index, spec)
    split_file = adapter.official_split_file(spec, root) if hasattr(adapter, "official_split_file") else None
    counts = check_split(
        rec["patient_id"],
        rec["split"].astype(str).to_numpy(),
        rec["label"].to_numpy() if task == "multiclass" else None,
        label_names,
        spec,
        f"adapter {adapter.name!r}",
        dataset,
        official=official,
        split_file=split_file,
    )
    counts["id_notes"] = rec.attrs.get("id_notes", [])
    if task == "multiclass":
        y = rec["label"].to_numpy()
        counts["label_counts"] = dict(
            zip(label_names, np.bincount(y, minlength=len(label_names)).tolist(), strict=True)
        )
    else:
        counts["label_counts"] = {
            n: int(rec[c].sum()) for n, c in zip(label_names, label_columns(label_names), strict=True)
        }
    return index, rec, task, label_names, counts


def _table(adapter, spec: dict, root, dataset=None):
    """A table adapter's rows through :func:`.adapters.table.prepare_table`: ``(Prepared, source)``."""
    df = adapter.read_index(spec, root)
    full = adapter.table_spec(spec, df)
    source = full.get("path", adapter.name)
    return prepare_table(df, full, path=source, name=dataset), source


def validate(spec: dict, root=None, dataset=None, check_files: bool = True) -> tuple[dict, pd.DataFrame]:
    """Every check of :func:`prepare` on a data set, writing nothing: ``(report, range flags)``.

    The report (``validation/{digest}.json``) holds the counts (records, patients per split,
    label classes), what filters and date columns did, the strongest univariate predictors of
    the label and the plausibility flags per feature; the flags (``{digest}_range_flags.tsv``)
    list every value outside its configured range. Raises :class:`DataError` with one line naming the
    file, column, key or value. ``check_files``: also check that every raw file named by a
    non-table adapter's index exists.
    """
    spec = complete(spec, "dataset")
    name = spec["adapter"]
    adapter = get_adapter(name)
    root = root if root is not None else spec.get("root")
    report: dict = {"dataset": dataset, "adapter": name}
    if adapter.modality == "table":
        prep, source = _table(adapter, spec, root, dataset)
        report.update({"source": str(source), **prep.report, "label_names": prep.label_names})
        return report, prep.flags
    index, rec, task, label_names, counts = _index_records(adapter, spec, root, dataset)
    report.update({"root": None if root is None else str(root), "task": task, "label_names": label_names, **counts})
    if counts["split_rule"] == "official split" and "test_fraction" in spec:
        report["notes"] = [f"test_fraction ({spec['test_fraction']}) is not used: the official split is kept"]
    if check_files and "path" in index:  # a WFDB record is a name: its files add suffixes
        suffixes = getattr(adapter, "raw_file_suffixes", ("",))
        exists = index["path"].map(lambda p: all(os.path.exists(f"{p}{s}") for s in suffixes))
        if not exists.all():
            missing = index.loc[~exists, "path"].astype(str)
            raise DataError(
                f"adapter {name!r}: {len(missing)} of the {len(index)} raw files it lists do not exist, "
                f"e.g. {missing.iloc[:3].tolist()} (root {root!r})"
            )
    return report, pd.DataFrame(columns=FLAG_COLUMNS)


def log_report(report: dict, log) -> None:
    """The effects of filters, dates, the split and plausibility ranges, the label's mapping and
    notes on ids, one line each (prepare/validate logs)."""
    values = report.get("label_values") or []
    if values:
        shown = ", ".join(f"{v['value']!r} → {v['class']} ({v['records']:,})" for v in values[:20])
        log.info("label values (raw value → class, records): %s%s", shown, " …" if len(values) > 20 else "")
    for note in report.get("id_notes") or []:
        getattr(log, "warning", log.info)("%s", note)
    for f in report.get("filters") or []:
        cond = {k: v for k, v in f.items() if k not in ("filter", "column", "removed", "kept")}
        log.info(
            "filter %d on %r %s: removed %d records, %d kept", f["filter"], f["column"], cond, f["removed"], f["kept"]
        )
    for c, d in (report.get("dates") or {}).items():
        log.info(
            "date column %r → days since the %s: %s to %s days, %d missing",
            c,
            "patient's first record" if d["origin"] == "patient_first" else "table's first date",
            d["days_min"],
            d["days_max"],
            d["missing"],
        )
    if "split_rule" in report:
        log.info(
            "split by %s: %d pool patients, %d test patients",
            report["split_rule"],
            report["pool_patients"],
            report["test_patients"],
        )
    for note in report.get("notes") or []:
        log.info("%s", note)
    top = report.get("strongest_univariate_auc") or []
    if top:
        log.info(
            "strongest single-feature predictor of the label: %s (AUC %.3f of %s; leakage_auc %s)",
            top[0]["feature"],
            top[0]["auc"],
            top[0]["how"] or "its values",
            report.get("leakage_auc"),
        )
    for c, r in (report.get("range_flags") or {}).items():
        log.info(
            "plausibility range of %r [%s, %s]: %d value(s) outside, flagged (kept)",
            c,
            r["low"],
            r["high"],
            r["values"],
        )


def prepare(
    spec: dict, records_path, inputs_path, root=None, log=None, dataset=None, workers: int | None = None
) -> pd.DataFrame:
    """Run a dataset's adapter (any adapter, the bundled table included) and write records.parquet and
    inputs.zarr; returns the records. With ``log``, one summary line: for tables the source, records,
    patients, pool/test patients, input features and label classes; otherwise the adapter's shapes;
    then the effects of filters, dates, the split and plausibility ranges (:func:`log_report`).
    ``workers`` decoding processes (the workflow passes the job's threads); None: the spec's
    ``workers``, else min(8, CPUs)."""
    spec = complete(spec, "dataset")
    name = spec["adapter"]
    adapter = get_adapter(name)
    root = root if root is not None else spec.get("root")
    if adapter.modality == "table":
        return _prepare_table(adapter, spec, root, records_path, inputs_path, log, dataset)
    index, rec, task, label_names, counts = _index_records(adapter, spec, root, dataset)
    rec.to_parquet(records_path, index=False)
    layout = LAYOUTS[adapter.modality]
    attrs = {"label_names": json.dumps(label_names), "task": task, "modality": layout.modality, "adapter": name}
    coords = {}
    if adapter.modality == "signal" and hasattr(adapter, "lead_names"):
        coords["lead"] = ("lead", np.asarray(adapter.lead_names(spec), dtype="U"))
    if adapter.modality == "signal" and hasattr(adapter, "sampling_rate"):
        attrs["sampling_rate"] = int(adapter.sampling_rate(spec))
    if adapter.modality == "image":
        attrs.update({"image_size": int(spec["image_size"]), "channels": int(spec["channels"])})
    rows = index.to_dict("records")
    if workers is None:
        workers = int(spec.get("workers") or min(8, os.cpu_count() or 1))
    shape = stream_inputs(
        inputs_path,
        name,
        rows,
        spec,
        layout,
        attrs,
        rec["record_id"].to_numpy(),
        workers=workers,
        block_records=int(spec["block_records"]),
        coords=coords,
    )
    if log is not None:
        log.info(
            "%s: %d records of %d patients, %s %s, task %s, labels %s",
            name,
            len(rec),
            rec["patient_id"].nunique(),
            layout.variable,
            shape,
            task,
            label_names,
        )
        log_report(counts, log)
    return rec


def _prepare_table(adapter, spec, root, records_path, inputs_path, log, dataset=None) -> pd.DataFrame:
    """A table adapter's rows → records.parquet and standardised ``features`` in inputs.zarr."""
    from mia_audit.data.store import write_prepared

    prep, source = _table(adapter, spec, root, dataset)
    write_prepared(prep, records_path, inputs_path)
    rec = prep.records
    if log is not None:
        log.info(
            "%s: %d records of %d patients (%d pool / %d test patients), %d input features, label classes %s",
            source,
            len(rec),
            rec["patient_id"].nunique(),
            rec.loc[rec["split"] == "pool", "patient_id"].nunique(),
            rec.loc[rec["split"] == "test", "patient_id"].nunique(),
            prep.features.shape[1],
            prep.label_names,
        )
        log_report(prep.report, log)
    return rec
