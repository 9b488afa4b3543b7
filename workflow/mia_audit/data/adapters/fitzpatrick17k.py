"""Fitzpatrick 17k (Groh et al., CVPR-W 2021) clinical skin images → skin condition.

Layout under ``root``::

    fitzpatrick17k.csv   # md5hash, fitzpatrick_scale, fitzpatrick_centaur, label,
                         # nine_partition_label, three_partition_label, qc, url, url_alphanum
    images/<md5hash>.jpg  (option image_dir, option image_ext default .jpg)

Label: option ``label`` = ``three_partition_label`` (default: benign / malignant /
non-neoplastic) or ``nine_partition_label`` or ``label`` (114 conditions); classes are
the sorted distinct values. Patient key: the data set has none, so every image is its own
patient (``patient_id = md5hash``) — a caveat for patient-level risk, since one person may
appear in several images. Skin type: ``fitzpatrick_scale`` 1–6 (−1 = unknown, per the
data set's README) binned to I/II, III/IV, V/VI, unknown → "unknown"; option
``skin_column: fitzpatrick_centaur`` uses the second annotation instead. Rows whose image
file is missing are an error (option ``skip_missing: true`` drops them instead, since
some source URLs are dead). No official test split.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mia_audit.data.adapters.base import options, require_columns, require_file
from mia_audit.data.adapters.imaging import load_image
from mia_audit.errors import DataError

LABELS = ("three_partition_label", "nine_partition_label", "label")


def skin_type_group(v) -> str:
    """Fitzpatrick 1–6 → I/II, III/IV, V/VI; anything else → unknown."""
    try:
        v = int(v)
    except (TypeError, ValueError):
        return "unknown"
    return {1: "I/II", 2: "I/II", 3: "III/IV", 4: "III/IV", 5: "V/VI", 6: "V/VI"}.get(v, "unknown")


class Fitzpatrick17k:
    name = "fitzpatrick17k"
    modality = "image"

    def _label_col(self, spec):
        col = options(spec).get("label", "three_partition_label")
        if col not in LABELS:
            raise DataError(f"options.label = {col!r}: expected one of {list(LABELS)}")
        return col

    def labels(self, spec):
        names = options(spec).get("label_names")
        if names is None:
            raise DataError("fitzpatrick17k: label names are known only after read_index (call it first)")
        return "multiclass", list(names)

    def index_files(self, spec, root) -> list[Path]:
        """The table the index is read from (its content keys the validation, data/sources.py)."""
        p = Path(root) / options(spec).get("csv", "fitzpatrick17k.csv")
        return [p] if p.exists() else []

    def read_index(self, spec, root) -> pd.DataFrame:
        root = Path(root)
        opts = options(spec)
        p = require_file(root / opts.get("csv", "fitzpatrick17k.csv"), "Fitzpatrick 17k table")
        df = pd.read_csv(p, dtype={"md5hash": str})  # hex hashes may look numeric
        col = self._label_col(spec)
        skin = opts.get("skin_column", "fitzpatrick_scale")
        require_columns(df, ["md5hash", col, skin], p)
        image_dir = root / opts.get("image_dir", "images")
        ext = opts.get("image_ext", ".jpg")
        df = df.drop_duplicates("md5hash").reset_index(drop=True)
        paths = [image_dir / f"{h}{ext}" for h in df["md5hash"]]
        exists = np.array([q.exists() for q in paths])
        if not exists.all():
            if not opts.get("skip_missing", False):
                raise DataError(
                    f"Fitzpatrick 17k: {int((~exists).sum())} image(s) missing under {image_dir}, e.g. "
                    f"{paths[int(np.flatnonzero(~exists)[0])]}; set options.skip_missing: true to drop them"
                )
            df, paths = df[exists].reset_index(drop=True), [q for q, e in zip(paths, exists, strict=True) if e]
        classes = sorted(df[col].astype(str).unique())
        spec.setdefault("options", {})["label_names"] = classes  # fixes labels() for this spec
        return pd.DataFrame(
            {
                "record_id": df["md5hash"].astype(str),
                "patient_id": df["md5hash"].astype(str),
                "path": [str(q) for q in paths],
                "label": df[col].astype(str).map({c: i for i, c in enumerate(classes)}).to_numpy(np.int64),
                "skin_type": df[skin].map(skin_type_group),
                "fitzpatrick": df[skin].astype(str),
                "condition": df["label"].astype(str) if "label" in df else "unknown",
            }
        )

    def load_input(self, row, spec):
        return load_image(row["path"], int(spec["image_size"]), int(spec["channels"]))


ADAPTER = Fitzpatrick17k()
