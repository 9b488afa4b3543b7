"""The confidence cube: ``confidence`` (model, record[, view]) and ``member`` (model, record) in Zarr.

Layout (readable with ``xarray.open_zarr``):

* ``confidence`` float32, logit-scaled confidence φ of each model on each record
  (see :mod:`mia_audit.signal`); NaN until the model's shard has been queried;
* ``member`` bool, True where the model trained on the record;
* record coordinates ``record_id``, ``patient_id``, ``label``, ``split`` and one per
  subgroup attribute; model coordinate ``model`` (global model index).

Views. With more than one query view configured (experiment key ``query.views``, e.g.
``[original, hflip]`` for images), ``confidence`` has a third dimension ``view`` and a
``view`` variable holding the view names; with the single default view ``original`` the
cube stays (model, record). The audit averages φ over views per model and record.

Partial access (data set key ``access_levels``). Every access level other than ``full``
gets its **own cube with exactly this layout** at
``{dataset}/{experiment}/access/{level}/cube.zarr``: same coordinates, same ``member``,
same views; its ``confidence`` is φ of the same models on the inputs altered by
:func:`mia_audit.partial.apply_access`. The full-access cube stays at
``{dataset}/{experiment}/cube.zarr``, unchanged. One cube per level keeps every reader of
the cube (record risk, aggregate attacks) usable on a level as it is: an audit of level
``L`` is the audit of ``access/L/cube.zarr``, written to
``{dataset}/{experiment}/audit/access_{L}/``. The cost is a copy of the coordinates and
the membership mask per level, small next to the confidences.

The skeleton (coordinates, membership, empty confidence) is created once; every query
job then writes only its own models' rows. Chunks along ``model`` are exactly one shard
wide, so two jobs never write the same chunk and need no locking.
"""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr
import zarr

from . import integrity

RESERVED = {"confidence", "member", "model", "record", "view"}


def create_cube(
    path: str | Path,
    records: pd.DataFrame,
    member: np.ndarray,
    models_per_shard: int,
    views: list[str] | None = None,
    record_chunk: int = 65536,
    attrs: dict | None = None,
) -> None:
    """Write the cube skeleton: coordinates, the full ``member`` mask and an empty ``confidence``.

    ``member`` is (models, records) bool aligned with ``records`` rows.
    """
    path = Path(path)
    n_models, n_records = member.shape
    if n_records != len(records):
        raise ValueError(f"member has {n_records} records but the records table has {len(records)} rows")
    coords: dict[str, tuple] = {"model": ("model", np.arange(n_models, dtype=np.int32))}
    for col in records.columns:
        if col in RESERVED:
            raise ValueError(f"records column {col!r} clashes with a cube variable name")
        values = records[col]
        if (
            isinstance(values.dtype, pd.CategoricalDtype)
            or values.dtype == object
            or pd.api.types.is_string_dtype(values)
        ):
            values = values.astype(str).to_numpy().astype("U")
        else:
            values = values.to_numpy()
        coords[col] = ("record", values)
    ds = xr.Dataset(coords=coords, attrs=dict(attrs or {}))
    with _quiet_zarr():
        ds.to_zarr(path, mode="w", consolidated=False)
    root = zarr.open_group(path, mode="a")
    rchunk = min(record_chunk, max(1, n_records))
    shape = (n_models, n_records) + ((len(views),) if views else ())
    chunks = (models_per_shard, rchunk) + ((len(views),) if views else ())
    dims = ["model", "record"] + (["view"] if views else [])
    conf = root.create_array(
        "confidence", shape=shape, chunks=chunks, dtype="float32", fill_value=np.nan, dimension_names=dims
    )
    conf.attrs.update({"long_name": "logit-scaled confidence in the true class"})
    mem = root.create_array(
        "member",
        shape=member.shape,
        chunks=(models_per_shard, rchunk),
        dtype="bool",
        fill_value=False,
        dimension_names=["model", "record"],
    )
    mem[...] = member
    mem.attrs[integrity.MEMBER_ATTR] = integrity.member_digests(member, models_per_shard, rchunk)  # see integrity.py
    if views:
        vz = root.create_array("view", shape=(len(views),), dtype=str, dimension_names=["view"])
        vz[...] = np.asarray(views, dtype=object)
    with _quiet_zarr():
        zarr.consolidate_metadata(path)


@contextlib.contextmanager
def _quiet_zarr():
    """Silence zarr's notices that fixed-length strings and consolidated metadata are not yet
    in the Zarr v3 specification; zarr-python ≥ 3 and xarray read both."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have a Zarr V3 specification.*")
        warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part.*")
        yield


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
