"""Reading and writing the stage outputs named in the design's path contract."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import xarray as xr

from .adapters.table import Prepared
from .layout import INPUT_VARIABLES


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
    from .cube import _quiet_zarr

    with _quiet_zarr():
        ds.to_zarr(inputs_path, mode="w", consolidated=True)


def read_records(path) -> pd.DataFrame:
    return pd.read_parquet(path)


def write_membership(path, member: np.ndarray, patient_ids: np.ndarray, seed: int) -> None:
    ds = xr.Dataset(
        {"member": (("model", "patient"), member)},
        coords={
            "model": np.arange(member.shape[0], dtype=np.int32),
            "patient_id": ("patient", np.asarray(patient_ids).astype("U")),
        },
        attrs={"seed": int(seed), "scheme": "balanced: every patient IN for exactly half of the models"},
    )
    from .cube import _quiet_zarr

    with _quiet_zarr():
        ds.to_zarr(path, mode="w", consolidated=True)


def read_membership(path) -> tuple[np.ndarray, np.ndarray]:
    ds = xr.open_zarr(path, consolidated=True)
    return ds["member"].values.astype(bool), ds["patient_id"].values.astype(str)


def record_membership(records: pd.DataFrame, membership_path) -> np.ndarray:
    """(models, records) bool: patient membership expanded to records; test records never IN."""
    from .sampling import record_membership as expand

    member, patients = read_membership(membership_path)
    lookup = pd.Series(np.arange(len(patients)), index=patients)
    idx = records["patient_id"].map(lookup)
    idx = np.where(records["split"].astype(str).to_numpy() == "pool", idx.fillna(-1).to_numpy(), -1).astype(np.int64)
    missing = records.loc[(records["split"].astype(str) == "pool").to_numpy() & (idx < 0), "patient_id"]
    if len(missing):
        raise ValueError(f"{membership_path}: pool patients {missing.unique()[:5].tolist()} have no membership column")
    return expand(member, idx)


def save_shard(path, params: dict, buffers: dict, meta: dict) -> None:
    """Stacked weights of a shard as safetensors (no pickle); ``meta`` is stored as JSON."""
    from safetensors.torch import save_file  # imports torch: only the jobs that need it pay for it

    tensors = {f"param.{k}": v.detach().contiguous().cpu() for k, v in params.items()}
    tensors.update({f"buffer.{k}": v.detach().contiguous().cpu() for k, v in buffers.items()})
    save_file(tensors, str(path), metadata={"meta": json.dumps(meta)})


def load_shard(path, device="cpu") -> tuple[dict, dict, dict]:
    """Stacked weights and metadata of a shard; a damaged file is a DataError naming it."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    from .errors import DataError

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads(f.metadata()["meta"])
        tensors = load_file(str(path), device=str(device))
    except MemoryError:
        raise
    except Exception as e:  # safetensors raises its own SafetensorError (and OSError, KeyError …)
        raise DataError(f"weights file {path} cannot be read ({' '.join(str(e).split())}); retrain its shard") from e
    params = {k[len("param.") :]: v for k, v in tensors.items() if k.startswith("param.")}
    buffers = {k[len("buffer.") :]: v for k, v in tensors.items() if k.startswith("buffer.")}
    return params, buffers, meta


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
