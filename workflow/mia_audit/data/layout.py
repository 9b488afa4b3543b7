"""Names inside the stage outputs that more than one stage relies on (see the path contract
in the README): which variable of ``inputs.zarr`` holds the model inputs of each modality.

Kept free of heavy imports: the workflow's planning (:mod:`mia_audit.pipeline.plan`) reads it when the
Snakefile is parsed.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

#: inputs.zarr variable → modality: tables, images (uint8), signals
INPUT_VARIABLES = {"features": "table", "images": "image", "signals": "signal"}

#: bytes per value of the Zarr v3 data types the inputs use
ITEMSIZE = {
    "float32": 4,
    "float64": 8,
    "float16": 2,
    "uint8": 1,
    "int8": 1,
    "uint16": 2,
    "int16": 2,
    "int32": 4,
    "int64": 8,
    "bool": 1,
}


def model_inputs_array(inputs_path) -> tuple[list[int], int]:
    """(shape, bytes) of the model inputs array (records, …), from the Zarr v3 metadata only.

    Raises FileNotFoundError before the prepare stage has written ``inputs_path``.
    """
    for name in INPUT_VARIABLES:
        meta_path = os.path.join(str(inputs_path), name, "zarr.json")
        if os.path.exists(meta_path):
            with open(meta_path) as fh:
                meta = json.load(fh)
            shape = [int(n) for n in meta["shape"]]
            return shape, math.prod(shape) * ITEMSIZE.get(str(meta.get("data_type")), 4)
    raise FileNotFoundError(2, f"model inputs not prepared yet (none of {list(INPUT_VARIABLES)})", str(inputs_path))


def table_path(spec: dict, root=None) -> Path:
    """The file of a table data set: ``path`` as given, or inside ``root`` when ``path`` is
    relative and the data set has a ``root`` (config keys ``datasets.<name>.path`` / ``root``)."""
    p = Path(spec["path"])
    root = root if root is not None else spec.get("root")
    return p if (p.is_absolute() or root is None) else Path(root) / p
