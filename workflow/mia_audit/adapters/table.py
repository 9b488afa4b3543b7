"""``table``: one CSV or Parquet row per record, described entirely by the config block.

The rules (missing values, one-hot encoding, standardisation by the pool) are those of
:mod:`mia_audit.data`. ``path`` is read as given; when the dataset also has a ``root``, a
relative ``path`` is taken inside it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .. import data
from ..errors import DataError


class TableAdapter:
    name = "table"
    modality = "table"

    def resolve(self, spec: dict, root=None) -> Path:
        if "path" not in spec:
            raise DataError("adapter 'table' needs config key datasets.<name>.path (a CSV or Parquet file)")
        p = Path(spec["path"])
        root = root if root is not None else spec.get("root")
        return p if (p.is_absolute() or root is None) else Path(root) / p

    def read_index(self, spec: dict, root=None) -> pd.DataFrame:
        return data.read_table(self.resolve(spec, root))

    def table_spec(self, spec: dict, df: pd.DataFrame) -> dict:
        return spec

    def labels(self, spec: dict) -> tuple[str, list[str]]:
        return "multiclass", []  # class names come from the data (see mia_audit.data)

    def load_input(self, row: dict, spec: dict) -> np.ndarray:
        return np.asarray([row[c] for c in spec["features"]], dtype=object)


ADAPTER = TableAdapter()
