"""The confidence cube: ``confidence`` (model, record[, view]) and ``member`` (model, record) in Zarr.

Readable with ``xarray.open_zarr``: the record dimension is ``record_id``, with record
coordinates ``patient_id``, ``label``, ``split`` and one per subgroup attribute; every variable
carries ``long_name`` and ``description`` (:data:`VARIABLE_ATTRS`), and the caller's attributes
(configuration, seeds, code version, creation time) are the cube's. With several query views
``confidence`` has a ``view`` dimension. The skeleton is created once and every query job
writes only its own models' rows, in chunks exactly one shard wide (no locking). The SHA-256 of
every coordinate array is the cube's attribute ``sha256_coordinates`` and ``member``'s
per-region digests are its attribute; the readers check them (:mod:`mia_audit.integrity`). Each
partial access level has its own cube of the same layout. Layout: README.md ("What the run
produces"); access levels: docs/datasets.md.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr
import zarr

from mia_audit import integrity
from mia_audit.errors import ConfigError
from mia_audit.storage import quiet_zarr

RESERVED = {"confidence", "member", "model", "record", "view"}
#: the record dimension (its coordinate holds the record keys, so it is the cube's index)
RECORD_DIM = "record_id"

#: attributes of the cube's fixed variables and the records table's standard columns
VARIABLE_ATTRS = {
    "confidence": {
        "long_name": "membership signal phi",
        "units": "log-odds",
        "description": "logit-scaled confidence of each model in the record's true class(es): "
        "phi = log sum_{c in y} p_c - log sum_{c not in y} p_c (mia_audit.query.membership_signal); NaN until the "
        "model's shard has been queried",
    },
    "member": {
        "long_name": "training membership",
        "description": "True where the model was trained on the record (its patient was IN for the model); "
        "test records are never members",
    },
    "model": {"long_name": "target model", "description": "global model index (shard = model // models_per_job)"},
    "record_id": {"long_name": "record key", "description": "record_id of records.parquet (unique)"},
    "patient_id": {"long_name": "patient key", "description": "patient_id of records.parquet"},
    "label": {"long_name": "label", "description": "the record's label as in records.parquet"},
    "split": {
        "long_name": "split",
        "description": "pool = may be trained on (audited); test = held out from every target model",
    },
    "view": {"long_name": "query view", "description": "input view each record was queried in"},
}


def create_cube(
    path: str | Path,
    records: pd.DataFrame,
    member: np.ndarray,
    models_per_shard: int,
    views: list[str] | None = None,
    record_chunk: int = 65536,
    attrs: dict | None = None,
    label_names: list[str] | None = None,
) -> None:
    """Write the cube skeleton: coordinates, the full ``member`` mask and an empty ``confidence``.

    ``member`` is (models, records) bool aligned with ``records`` rows. ``attrs`` become the
    cube's attributes (values that are not str/int/float/bool are stored as JSON);
    ``label_names`` (the task's class or finding names) are stored on ``label`` and as a
    cube attribute.
    """
    path = Path(path)
    n_models, n_records = member.shape
    if n_records != len(records):
        raise ValueError(f"member has {n_records} records but the records table has {len(records)} rows")
    if "record_id" in records.columns and not records["record_id"].is_unique:
        raise ValueError("records column 'record_id' has duplicated keys; the cube's record index must be unique")
    coords: dict[str, tuple] = {"model": ("model", np.arange(n_models, dtype=np.int32), VARIABLE_ATTRS["model"])}
    for col in records.columns:
        if col in RESERVED:
            raise ConfigError(f"records column {col!r} clashes with a cube variable name")
        values = records[col]
        if (
            isinstance(values.dtype, pd.CategoricalDtype)
            or values.dtype == object
            or pd.api.types.is_string_dtype(values)
        ):
            values = values.astype(str).to_numpy().astype("U")
        else:
            values = values.to_numpy()
        var_attrs = dict(
            VARIABLE_ATTRS.get(col)
            or {"long_name": f"subgroup attribute {col}", "description": f"column {col} of records.parquet"}
        )
        if col == "label" and label_names is not None:
            var_attrs["label_names"] = json.dumps(list(label_names))
        coords[col] = (RECORD_DIM, values, var_attrs)
    ds_attrs = {k: v if isinstance(v, str | int | float | bool) else json.dumps(v) for k, v in (attrs or {}).items()}
    if label_names is not None:
        ds_attrs["label_names"] = json.dumps(list(label_names))
    ds = xr.Dataset(coords=coords, attrs=ds_attrs)
    with quiet_zarr():
        ds.to_zarr(path, mode="w", consolidated=False)
    root = zarr.open_group(path, mode="a")
    rchunk = min(record_chunk, max(1, n_records))
    shape = (n_models, n_records) + ((len(views),) if views else ())
    chunks = (models_per_shard, rchunk) + ((len(views),) if views else ())
    dims = ["model", RECORD_DIM] + (["view"] if views else [])
    conf = root.create_array(
        "confidence", shape=shape, chunks=chunks, dtype="float32", fill_value=np.nan, dimension_names=dims
    )
    conf.attrs.update(VARIABLE_ATTRS["confidence"])
    mem = root.create_array(
        "member",
        shape=member.shape,
        chunks=(models_per_shard, rchunk),
        dtype="bool",
        fill_value=False,
        dimension_names=["model", RECORD_DIM],
    )
    mem[...] = member
    mem.attrs.update(VARIABLE_ATTRS["member"])
    mem.attrs[integrity.MEMBER_ATTR] = integrity.member_digests(member, models_per_shard, rchunk)  # see integrity.py
    if views:
        vz = root.create_array("view", shape=(len(views),), dtype=str, dimension_names=["view"])
        vz[...] = np.asarray(views, dtype=object)
        vz.attrs.update(VARIABLE_ATTRS["view"])
    # one SHA-256 per coordinate array, checked by every reader of the cube (integrity.CubeCheck)
    root.attrs[integrity.COORDS_ATTR] = integrity.coordinate_digests(root)
    with quiet_zarr():
        zarr.consolidate_metadata(path)


def write_confidence(path: str | Path, model_start: int, confidence: np.ndarray) -> None:
    """Write rows ``model_start : model_start + len(confidence)`` of ``confidence``.

    The rows must cover whole model chunks (one shard), which is what makes concurrent
    writers safe.
    """
    arr = zarr.open_array(Path(path) / "confidence", mode="r+")
    m0, m1 = model_start, model_start + confidence.shape[0]
    chunk = arr.chunks[0]
    if m0 % chunk or (m1 % chunk and m1 != arr.shape[0]):
        raise ValueError(f"write of models {m0}:{m1} is not aligned to the cube's model chunks of {chunk}")
    if confidence.shape[1:] != arr.shape[1:]:
        raise ValueError(f"confidence block has shape {confidence.shape[1:]} per model, cube expects {arr.shape[1:]}")
    arr[m0:m1] = confidence.astype(np.float32)


def open_cube(path: str | Path) -> xr.Dataset:
    """Open the cube lazily with xarray."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"cube {path} does not exist; run the query stage first")
    return xr.open_zarr(path, consolidated=True)
