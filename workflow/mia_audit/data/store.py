"""Reading and writing the prepare stage's outputs, records.parquet and inputs.zarr (paths: README.md)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import xarray as xr

from mia_audit.data.adapters.table import Prepared
from mia_audit.data.layout import INPUT_VARIABLES


def write_prepared(prep: Prepared, records_path, inputs_path) -> None:
    """records.parquet (one row per record) and inputs.zarr (aligned row for row)."""
    prep.records.to_parquet(records_path, index=False)
    ds = xr.Dataset(
        {"features": (("record", "feature"), prep.features)},
        coords={
            "record_id": ("record", prep.records["record_id"].to_numpy().astype("U")),
            "feature": np.asarray(prep.feature_names, dtype="U"),
        },
        attrs={
            "label_names": json.dumps(prep.label_names),
            "task": "multiclass",
            "preprocessing": json.dumps(prep.preprocessing),
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
    """
    ds = xr.open_zarr(path, consolidated=True)
    found = [v for v in INPUT_VARIABLES if v in ds.data_vars]
    if len(found) != 1:
        raise ValueError(
            f"{path}: expected exactly one of the variables {list(INPUT_VARIABLES)}, found {list(ds.data_vars)}"
        )
    var = found[0]
    modality = INPUT_VARIABLES[var]
    arr = np.asarray(ds[var].values)
    arr = arr.astype(np.uint8 if modality == "image" else np.float32, copy=False)
    names = None
    for coord in ("feature", "lead"):
        if coord in ds.coords:
            names = [str(v) for v in ds[coord].values]
    return arr, dict(ds.attrs), modality, names
