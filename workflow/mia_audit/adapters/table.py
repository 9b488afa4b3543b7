"""``table``: one CSV or Parquet row per record, described entirely by the config block.

A dataset is described by its config block (see ``config/schema.yaml``): the file, the
patient-id column, the label definition, the feature columns, the subgroup attributes and
the share of patients held out as ``test``. ``path`` is read as given; when the dataset
also has a ``root``, a relative ``path`` is taken inside it. Record and patient ids, the
patient split and the subgroup columns follow the shared rules of :mod:`.records`.

Missing values (the documented rule): each numeric feature's missing entries are
replaced by the median of that feature over the ``pool`` records, and a 0/1 indicator
column ``<feature>__missing`` is added for every feature that has any missing value, so
a model can still use missingness. Categorical features are one-hot encoded, with a
missing value its own category. All resulting columns are then standardised with the
mean and SD of the pool records (an SD of 0 is replaced by 1). Statistics come from the
pool only, so held-out test patients never shape the inputs.

Other table data sets (e.g. :mod:`.mimic_iv_ed`) read their own layout and complete the
config block (``table_spec``); :func:`prepare_table` then applies the same rules.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DataError
from ..layout import table_path
from .base import require_columns
from .records import add_subgroups, id_label, split_patients, subgroup_columns


@dataclass
class Prepared:
    records: pd.DataFrame  # record_id, patient_id, label, split, subgroup columns
    features: np.ndarray  # (records, features) float32, standardised
    feature_names: list[str]
    preprocessing: dict = field(default_factory=dict)  # medians, means, SDs per feature
    label_names: list[str] = field(default_factory=list)


def read_table(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    if not path.exists():
        raise DataError(f"dataset file {path} does not exist (config key datasets.<name>.path)")
    suffixes = "".join(path.suffixes[-2:]).lower()
    if path.suffix.lower() in (".parquet", ".pq"):
        try:
            return pd.read_parquet(path)
        except Exception as e:  # pyarrow raises several types for a damaged file
            raise DataError(f"dataset file {path} is not a readable Parquet file: {e}") from e
    if path.suffix.lower() in (".csv", ".tsv", ".txt") or suffixes in (".csv.gz", ".tsv.gz"):
        sep = "\t" if ".tsv" in suffixes else ","
        return pd.read_csv(path, sep=sep, low_memory=False)
    raise DataError(
        f"dataset file {path}: unsupported file type {path.suffix!r}; expected a CSV (.csv, .csv.gz, .tsv) "
        "or Parquet (.parquet, .pq) table"
    )


def _label(df: pd.DataFrame, spec: dict, path) -> tuple[np.ndarray, list[str]]:
    col = spec["column"]
    values = df[col]
    if values.isna().any():
        rows = np.flatnonzero(values.isna().to_numpy())[:5].tolist()
        raise DataError(f"{path}: label column {col!r} has missing values (rows {rows} …)")
    if spec.get("positive") is not None:
        positive = set(spec["positive"])
        y = values.isin(positive).to_numpy().astype(np.int64)
        names = [f"not {spec.get('name', col)}", spec.get("name", f"{col} in {sorted(positive)}")]
    else:
        classes = sorted(values.unique().tolist(), key=str)
        lookup = {c: i for i, c in enumerate(classes)}
        y = values.map(lookup).to_numpy().astype(np.int64)
        names = [str(c) for c in classes]
    counts = np.bincount(y, minlength=len(names))
    if (counts > 0).sum() < 2:
        raise DataError(
            f"{path}: label {spec.get('name', col)!r} (column {col!r}, positive={spec.get('positive')}) "
            f"has a single class in the data (counts {counts.tolist()}); a classifier needs at least two"
        )
    return y, names


def prepare_table(df: pd.DataFrame, spec: dict, path="<table>") -> Prepared:
    """Validate and transform a table by its dataset config block (the module's rules). Errors before any work;
    they name ``path``, the column or config key and what was expected."""
    pid_col = spec["patient_id"]
    features = list(spec["features"])
    categorical = list(spec.get("categorical") or [])
    unknown_cat = [c for c in categorical if c not in features]
    if unknown_cat:
        raise DataError(f"config key categorical lists {unknown_cat}, which are not in features")
    sub_cols = [sg["column"] for sg in (spec.get("subgroups") or {}).values()]
    rid_col = spec.get("record_id")
    require_columns(df, [pid_col], path, key="patient_id")
    require_columns(df, [spec["label"]["column"]], path, key="label.column")
    require_columns(df, features, path, key="features")
    require_columns(df, sub_cols, path, key="subgroups.<attribute>.column")
    if rid_col:
        require_columns(df, [rid_col], path, key="record_id")

    pids = df[pid_col]
    if pids.isna().any():
        rows = np.flatnonzero(pids.isna().to_numpy())
        raise DataError(
            f"{path}: patient-id column {pid_col!r} has {len(rows)} missing value(s) (first rows {rows[:5].tolist()}); "
            "every record must belong to a patient"
        )
    patient_id = pids.map(id_label).astype(str)

    if rid_col:
        record_id = df[rid_col].map(id_label).astype(str)
    else:  # patient id + visit number within the patient, in file order
        record_id = patient_id + "_" + df.groupby(patient_id.to_numpy()).cumcount().astype(str)
    dup = record_id[record_id.duplicated(keep=False)]
    if len(dup):
        raise DataError(
            f"{path}: record ids are not unique (column {rid_col or '<generated>'!r}): "
            f"{sorted(dup.unique().tolist())[:5]} …"
        )

    numeric = [c for c in features if c not in categorical]
    for c in numeric:
        converted = pd.to_numeric(df[c], errors="coerce")
        bad = converted.isna() & df[c].notna()
        if bad.any():
            example = df[c][bad].iloc[0]
            raise DataError(
                f"{path}: feature column {c!r} has non-numeric value {example!r} "
                f"({int(bad.sum())} rows); list it under 'categorical' to one-hot encode it"
            )

    y, label_names = _label(df, spec["label"], path)
    groups = subgroup_columns(df, spec.get("subgroups") or {})

    split = split_patients(patient_id, spec)
    pool = split == "pool"

    cols: dict[str, np.ndarray] = {}
    prep: dict[str, dict] = {}
    for c in numeric:
        x = pd.to_numeric(df[c], errors="coerce").to_numpy(dtype=np.float64)
        miss = np.isnan(x)
        med = float(np.nanmedian(x[pool])) if np.isfinite(x[pool]).any() else 0.0
        cols[c] = np.where(miss, med, x)
        prep[c] = {"median": med}
        if miss.any():
            cols[f"{c}__missing"] = miss.astype(np.float64)
    for c in categorical:
        v = df[c].map(id_label).astype(str)
        for level in sorted(v.unique()):
            cols[f"{c}={level}"] = (v == level).to_numpy(dtype=np.float64)
    names = list(cols)
    X = np.column_stack([cols[n] for n in names])
    mean = X[pool].mean(axis=0)
    sd = X[pool].std(axis=0)
    sd = np.where(sd > 0, sd, 1.0)
    X = ((X - mean) / sd).astype(np.float32)
    for i, n in enumerate(names):
        prep.setdefault(n, {}).update({"mean": float(mean[i]), "sd": float(sd[i])})

    records = pd.DataFrame(
        {
            "record_id": record_id.to_numpy(),
            "patient_id": patient_id.to_numpy(),
            "label": y,
            "split": pd.Categorical(split, categories=["pool", "test"]),
        }
    )
    add_subgroups(records, groups)
    return Prepared(records, X, names, prep, label_names)


class TableAdapter:
    name = "table"
    modality = "table"

    def resolve(self, spec: dict, root=None) -> Path:
        if "path" not in spec:
            raise DataError("adapter 'table' needs config key datasets.<name>.path (a CSV or Parquet file)")
        return table_path(spec, root)

    def read_index(self, spec: dict, root=None) -> pd.DataFrame:
        return read_table(self.resolve(spec, root))

    def table_spec(self, spec: dict, df: pd.DataFrame) -> dict:
        return spec

    def labels(self, spec: dict) -> tuple[str, list[str]]:
        return "multiclass", []  # class names come from the data (see prepare_table)

    def load_input(self, row: dict, spec: dict) -> np.ndarray:
        return np.asarray([row[c] for c in spec["features"]], dtype=object)


ADAPTER = TableAdapter()
