"""Reading and writing the prepare stage's outputs, records.parquet and inputs.zarr (paths: README.md)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import xarray as xr

from mia_audit import integrity
from mia_audit.data.adapters.table import Prepared
from mia_audit.data.layout import INPUT_VARIABLES


def write_prepared(prep: Prepared, records_path, inputs_path) -> None:
    """records.parquet (one row per record) and inputs.zarr (aligned row for row), with the
    SHA-256 of each array of inputs.zarr (:data:`mia_audit.integrity.ARRAYS_ATTR`)."""
    prep.records.to_parquet(records_path, index=False)
    arrays = {
        "features": prep.features,
        "record_id": prep.records["record_id"].to_numpy().astype("U"),
        "feature": np.asarray(prep.feature_names, dtype="U"),
    }
    ds = xr.Dataset(
        {"features": (("record", "feature"), arrays["features"])},
        coords={"record_id": ("record", arrays["record_id"]), "feature": arrays["feature"]},
        attrs={
            "label_names": json.dumps(prep.label_names),
            "task": "multiclass",
            "preprocessing": json.dumps(prep.preprocessing),
            integrity.ARRAYS_ATTR: {k: integrity.values_digest(v) for k, v in arrays.items()},
        },
    )
    from mia_audit.storage import quiet_zarr

    with quiet_zarr():
        ds.to_zarr(inputs_path, mode="w", consolidated=True)


def read_records(path) -> pd.DataFrame:
    return pd.read_parquet(path)


def read_model_inputs(path) -> tuple[np.ndarray, dict, str, list[str] | None]:
    """The inputs.zarr array of any modality: ``(array, attrs, modality, part_names)``.

    ``features`` (record, feature) float32 → ``table``; ``images`` (record, channel, y, x)
    uint8 → ``image`` (kept uint8); ``signals`` (record, lead, time) float32 → ``signal``.
    ``part_names`` are the feature or lead names (what partial access can name), or None.
    Every array is checked against the SHA-256 its writer stored, and float inputs are checked
    to be finite (:mod:`mia_audit.integrity`): a damaged store stops the job naming it.
    """
    root = integrity.open_store(path, "the model inputs")
    attrs = dict(root.attrs)
    arrays = integrity.store_arrays(path)
    found = [v for v in INPUT_VARIABLES if v in arrays]
    if len(found) != 1:
        raise integrity.IntegrityError(
            f"{path}: expected exactly one of the arrays {list(INPUT_VARIABLES)}, found {sorted(arrays)}; "
            f"{integrity.rebuild_hint(path)}"
        )
    integrity.check_arrays(path, attrs.get(integrity.ARRAYS_ATTR), arrays, "the model inputs")
    var = found[0]
    modality = INPUT_VARIABLES[var]
    arr = arrays[var].astype(np.uint8 if modality == "image" else np.float32, copy=False)
    names = None
    for coord in ("feature", "lead"):
        if coord in arrays:
            names = [str(v) for v in arrays[coord]]
    integrity.check_finite(path, arr, arrays["record_id"], names if modality == "table" else None)
    return arr, attrs, modality, names
