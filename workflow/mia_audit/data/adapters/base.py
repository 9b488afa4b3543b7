"""The adapter interface shared by every data set, and the registry that finds an adapter by name.

An adapter turns a data set in its *published* layout (CSV tables, image folders, DICOM,
WFDB, npz …) into an **index**: a :class:`pandas.DataFrame` with one row per record and
the columns

* ``record_id`` (text, unique), ``patient_id`` (text; all of a patient's records share it);
* ``label`` (int class index) for a ``multiclass`` task, or one 0/1 column
  ``label_<name>`` per finding for a ``multilabel`` task (then there is no ``label``);
* ``split`` (optional): ``"test"`` for records in the data set's own official test split,
  ``"pool"`` otherwise; absent when the data set has none (a patient split is drawn);
* any number of attribute columns (text or numbers) that the config's ``subgroups`` may
  name, e.g. ``sex``, ``race``, ``age``;
* whatever the adapter's :meth:`DatasetAdapter.load_input` needs to read the record's raw
  input, by convention ``path`` (absolute path of the raw file).

``load_input(row, spec)`` returns one record's model input as an array: an image as
uint8 (channel, y, x) already resized and center-cropped; an ECG as float32 (lead, time).
Table adapters (``modality == "table"``) instead return the whole table from
``read_index`` and the preparation of :mod:`.table` (missing values, one-hot encoding,
standardisation) makes the features. Ids, the split and subgroup columns follow the shared
rules of :mod:`mia_audit.data.records` for every adapter.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import pandas as pd

from mia_audit.errors import DataError

RESERVED_INDEX = {"record_id", "patient_id", "label", "split", "path"}


@runtime_checkable
class DatasetAdapter(Protocol):
    """What every adapter module provides (as a module-level object named ``ADAPTER``)."""

    name: str
    modality: str  # "table", "image" or "signal"

    def read_index(self, spec: dict, root) -> pd.DataFrame:
        """One row per record (see the module docstring for the columns)."""

    def labels(self, spec: dict) -> tuple[str, list[str]]:
        """(task, label_names): task is "multiclass" or "multilabel"."""

    def load_input(self, row: dict, spec: dict) -> np.ndarray:
        """The model input of one record (a row of the index as a dict)."""


@dataclass(frozen=True)
class AdapterInfo:
    """A registered adapter: its module under :mod:`mia_audit.data.adapters` (imported on first
    use, so that a missing optional reader such as pydicom or wfdb matters only for the data sets
    that need it), the modality of the inputs it prepares, and the size of the data set as
    published (records; sizes the prepare job's cluster request before the index is read)."""

    module: str
    modality: str  # "table", "image" or "signal"
    published_records: int | None = None


#: The adapter registry: config key ``datasets.<name>.adapter`` → adapter. Adding a data set
#: touches its module, this entry and the schema's enum (docs/extending.md).
ADAPTERS: dict[str, AdapterInfo] = {
    "table": AdapterInfo("table", "table"),
    "mimic_iv_ed": AdapterInfo("mimic_iv_ed", "table", 425_087),
    "ptbxl": AdapterInfo("ptbxl", "signal", 21_799),
    "chexpert": AdapterInfo("chexpert", "image", 224_316),
    "mimic_cxr": AdapterInfo("mimic_cxr", "image", 377_110),
    "embed": AdapterInfo("embed", "image", 480_000),
    "fitzpatrick17k": AdapterInfo("fitzpatrick17k", "image", 16_577),
    "fairvision": AdapterInfo("fairvision", "image", 30_000),
    "synthetic_images": AdapterInfo("synthetic_images", "image", 1_000),
}


def adapter_names() -> list[str]:
    return sorted(ADAPTERS)


def adapter_info(name: str, key: str = "datasets.<name>.adapter") -> AdapterInfo:
    """The registry entry of adapter ``name``; an unknown name is a DataError naming ``key``."""
    if name not in ADAPTERS:
        raise DataError(f"unknown adapter {name!r} (config key {key}); known: {adapter_names()}")
    return ADAPTERS[name]


def get_adapter(name: str) -> DatasetAdapter:
    """The adapter registered under ``name`` (config key ``datasets.<name>.adapter``)."""
    module = importlib.import_module(f"{__package__}.{adapter_info(name).module}")
    return module.ADAPTER


def options(spec: dict) -> dict:
    """The adapter-specific options block of a dataset config (``options:``), never None."""
    return dict(spec.get("options") or {})


def require_file(path, what: str):
    """``path`` as given, or a DataError naming the missing file and what it should hold."""
    from pathlib import Path

    path = Path(path)
    if not path.exists():
        raise DataError(f"{what}: expected file {path} does not exist")
    return path


def require_columns(df: pd.DataFrame, columns, source, key: str | None = None) -> None:
    """A DataError naming ``source``, the absent columns and the available ones (and the config ``key``
    that named them, when given) unless every one of ``columns`` is in ``df``."""
    missing = [c for c in columns if c not in df.columns]
    if missing and key is None:
        raise DataError(f"{source}: missing column(s) {missing}; available columns: {list(df.columns)}")
    if missing:
        raise DataError(
            f"{source}: column(s) {missing} named in config key {key} are not in the file; "
            f"available columns: {list(df.columns)}"
        )


def label_columns(names: list[str]) -> list[str]:
    return [f"label_{n}" for n in names]


def check_index(index: pd.DataFrame, adapter: DatasetAdapter, spec: dict) -> None:
    """Check an index against the contract; errors name the adapter and the column."""
    src = f"adapter {adapter.name!r}"
    require_columns(index, ["record_id", "patient_id"], src)
    if len(index) == 0:
        raise DataError(f"{src}: the data set has no records (root {spec.get('root')!r})")
    dup = index["record_id"][index["record_id"].duplicated()]
    if len(dup):
        raise DataError(f"{src}: record ids are not unique, e.g. {dup.iloc[:3].tolist()}")
    if index["patient_id"].isna().any():
        raise DataError(f"{src}: {int(index['patient_id'].isna().sum())} record(s) have no patient id")
    task, names = adapter.labels(spec)
    if task == "multiclass":
        require_columns(index, ["label"], src)
        y = index["label"].to_numpy()
        if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= len(names):
            raise DataError(f"{src}: label must be integer class indices in [0, {len(names)}), got {np.unique(y)[:10]}")
    elif task == "multilabel":
        cols = label_columns(names)
        require_columns(index, cols, src)
        bad = ~index[cols].isin([0, 1]).all(axis=None)
        if bad:
            raise DataError(f"{src}: multi-label columns {cols} must be 0/1")
    else:
        raise DataError(f"{src}: task {task!r} is neither 'multiclass' nor 'multilabel'")
    if "split" in index and not index["split"].isin(["pool", "test"]).all():
        raise DataError(f"{src}: split must be 'pool' or 'test', got {sorted(index['split'].unique().tolist())}")
