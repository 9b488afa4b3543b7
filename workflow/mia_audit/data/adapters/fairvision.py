"""Harvard-FairVision30k (Luo et al., CVPR 2024) SLO fundus photos → eye disease.

Layout under ``root`` (one disease folder, option ``disease``: glaucoma | dr | amd)::

    Glaucoma/{train,val,test}/data_XXXXX.npz   # keys slo_fundus, oct_bscans, race, male, hispanic, …
    data_summary_glaucoma.csv                   # (optional here; the npz keys are the source)

(folders named ``Training``/``Validation``/``Test`` as downloaded are accepted too).
The npz keys and codes follow the data set's README: ``race`` 0 Asian, 1 Black, 2 White;
``male`` 0 female, 1 male; ``hispanic`` 0 non-Hispanic, 1 Hispanic; labels ``glaucoma``
0/1; for DR and AMD the text ``dr_subtype`` is mapped by the README's condition→disease
tables (DR: vision-threatening = severe NPDR or PDR; AMD: 0 none, 1 early, 2 intermediate,
3 late dry or wet). The image is ``slo_fundus`` (200 × 200 in the npz; option
``image_key``). Every subject has one photo and is its own patient (key = the file's
numeric id). The official ``test`` folder is kept as ``test``; train and val are pooled.

Ambiguity noted: the AMD and DR npz files both call their condition key ``dr_subtype``
(README); a file with neither the label key nor ``dr_subtype`` is an error naming it.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from mia_audit.data.adapters.base import options
from mia_audit.data.adapters.imaging import load_image
from mia_audit.errors import DataError

DISEASES = {"glaucoma": "Glaucoma", "dr": "DR", "amd": "AMD"}
DR_MAP = {"not.in.icd.table": 0, "no.dr.diagnosis": 0, "mild.npdr": 0, "moderate.npdr": 0, "severe.npdr": 1, "pdr": 1}
AMD_MAP = {
    "not.in.icd.table": 0,
    "no.amd.diagnosis": 0,
    "early.dry": 1,
    "intermediate.dry": 2,
    "advanced.atrophic.dry.with.subfoveal.involvement": 3,
    "advanced.atrophic.dry.without.subfoveal.involvement": 3,
    "wet.amd.active.choroidal.neovascularization": 3,
    "wet.amd.inactive.choroidal.neovascularization": 3,
    "wet.amd.inactive.scar": 3,
}
LABEL_NAMES = {
    "glaucoma": ["non-glaucoma", "glaucoma"],
    "dr": ["not vision-threatening DR", "vision-threatening DR"],
    "amd": ["no AMD", "early AMD", "intermediate AMD", "late AMD"],
}
RACE = {0: "Asian", 1: "Black", 2: "White"}
SEX = {0: "Female", 1: "Male"}
HISPANIC = {0: "Non-Hispanic", 1: "Hispanic"}
SPLIT_DIRS = {"train": "pool", "training": "pool", "val": "pool", "validation": "pool", "test": "test"}


def _scalar(z, key):
    v = z[key]
    v = v.item() if np.ndim(v) == 0 else v.ravel()[0]
    return v.decode() if isinstance(v, bytes) else v


def disease_label(z, disease: str, path) -> int:
    if disease == "glaucoma":
        if "glaucoma" not in z:
            raise DataError(f"{path}: npz has no key 'glaucoma' (keys {list(z.keys())})")
        return int(_scalar(z, "glaucoma"))
    key = "dr_subtype" if "dr_subtype" in z else ("amd_subtype" if "amd_subtype" in z else None)
    if key is None:
        raise DataError(f"{path}: npz has no condition key 'dr_subtype' (keys {list(z.keys())})")
    cond = str(_scalar(z, key))
    table = DR_MAP if disease == "dr" else AMD_MAP
    if cond not in table:
        raise DataError(f"{path}: condition {cond!r} is not one of {sorted(table)}")
    return table[cond]


class FairVision:
    name = "fairvision"
    modality = "image"

    def _disease(self, spec):
        d = str(options(spec).get("disease", "glaucoma")).lower()
        if d not in DISEASES:
            raise DataError(f"options.disease = {d!r}: expected one of {sorted(DISEASES)}")
        return d

    def labels(self, spec):
        return "multiclass", LABEL_NAMES[self._disease(spec)]

    def index_listing(self, spec, root) -> list[Path]:
        """The npz files (labels and attributes sit inside them): keyed by name and size only,
        their content being the images themselves (data/sources.py)."""
        root = Path(root)
        base = root / DISEASES[self._disease(spec)]
        base = base if base.is_dir() else root
        if not base.is_dir():
            return []
        subs = sorted(p for p in base.iterdir() if p.is_dir() and p.name.lower() in SPLIT_DIRS)
        return [f for sub in subs for f in sorted(sub.glob("*.npz"))]

    def read_index(self, spec, root) -> pd.DataFrame:
        root = Path(root)
        disease = self._disease(spec)
        base = root / DISEASES[disease]
        if not base.is_dir():
            base = root  # root is already the disease folder
        rows = []
        for sub in sorted(p for p in base.iterdir() if p.is_dir() and p.name.lower() in SPLIT_DIRS):
            for f in sorted(sub.glob("*.npz")):
                with np.load(f, allow_pickle=False) as z:  # reads only the small keys asked for
                    m = re.search(r"(\d+)", f.stem)
                    rid = m.group(1) if m else f.stem
                    rows.append(
                        {
                            "record_id": rid,
                            "patient_id": rid,
                            "path": str(f),
                            "split": SPLIT_DIRS[sub.name.lower()],
                            "label": disease_label(z, disease, f),
                            "race": RACE.get(int(_scalar(z, "race")), "Unknown") if "race" in z else "Unknown",
                            "sex": SEX.get(int(_scalar(z, "male")), "Unknown") if "male" in z else "Unknown",
                            "ethnicity": HISPANIC.get(int(_scalar(z, "hispanic")), "Unknown")
                            if "hispanic" in z
                            else "Unknown",
                            "age": float(_scalar(z, "age")) if "age" in z else np.nan,
                        }
                    )
        if not rows:
            raise DataError(
                f"FairVision: no data_*.npz under {base}/{{train,val,test}} (options.disease = {disease!r})"
            )
        return pd.DataFrame(rows)

    def load_input(self, row, spec):
        key = options(spec).get("image_key", "slo_fundus")
        with np.load(row["path"], allow_pickle=False) as z:
            if key not in z:
                raise DataError(f"{row['path']}: npz has no image key {key!r} (keys {list(z.keys())})")
            img = z[key]
        return load_image(img, int(spec["image_size"]), int(spec["channels"]))


ADAPTER = FairVision()
