"""SYNTHETIC imaging cohort as a data set: generated from the config, no files, no real patients.

The images come from :func:`mia_audit.data.synthetic.make_synthetic_cohort` (see that
module for what they mimic: patients with several correlated images, a small minority
subgroup with a distinctive appearance, a rare finding). Nothing is read from disk, so the
data set needs no ``root``; it exists to run the image path of the workflow end to end on a
laptop CPU and in tests.

Config (``datasets.<name>``)::

    adapter: synthetic_images
    image_size: 32           # pixels (height = width)
    channels: 1              # 1 grey, 3 RGB
    options:
      n_patients: 60
      images_per_patient: [1, 6]   # inclusive range, uniform per patient
      minority_share: 0.1
      seed: 0
      prevalence: 0.1              # optional, see make_synthetic_cohort
      minority_prevalence: 0.2
      label_noise: 0.02
      multilabel: false            # true: findings lesion, line, opacity (multi-label task)

Task: binary ``multiclass`` with classes ``[no_lesion, lesion]``, or ``multilabel`` with one
0/1 column ``label_<finding>`` per finding. Attributes for subgroups: ``group``
(majority/minority) and ``sex`` (F/M). No official test split (``test_fraction`` of the
patients is held out).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mia_audit.data.adapters.base import options
from mia_audit.data.synthetic import FINDINGS, make_synthetic_cohort
from mia_audit.errors import DataError

GENERATOR_OPTIONS = (
    "n_patients",
    "images_per_patient",
    "minority_share",
    "seed",
    "prevalence",
    "minority_prevalence",
    "label_noise",
    "multilabel",
    "noise_sd",
)


class SyntheticImages:
    name = "synthetic_images"
    modality = "image"
    needs_root = False

    def _options(self, spec: dict) -> dict:
        opts = options(spec)
        unknown = sorted(set(opts) - set(GENERATOR_OPTIONS))
        if unknown:
            raise DataError(
                f"datasets.<name>.options has unknown key(s) {unknown} for adapter synthetic_images; "
                f"known: {list(GENERATOR_OPTIONS)}"
            )
        kw = {k: opts[k] for k in GENERATOR_OPTIONS if k in opts}
        if "images_per_patient" in kw:
            ipp = kw["images_per_patient"]
            if isinstance(ipp, int):
                ipp = (ipp, ipp)
            if len(ipp) != 2:
                raise DataError(f"options.images_per_patient = {ipp!r}: expected [low, high] or one integer")
            kw["images_per_patient"] = tuple(int(v) for v in ipp)
        kw["size"] = int(spec["image_size"])
        kw["channels"] = int(spec["channels"])
        kw["multilabel"] = bool(kw.get("multilabel", False))
        return kw

    def labels(self, spec: dict) -> tuple[str, list[str]]:
        if self._options(spec)["multilabel"]:
            return "multilabel", list(FINDINGS)
        return "multiclass", ["no_lesion", "lesion"]

    def read_index(self, spec: dict, root=None) -> pd.DataFrame:
        """The generated cohort; each row carries its image (uint8 (C, H, W)) in column ``pixels``."""
        kw = self._options(spec)
        try:
            records, images = make_synthetic_cohort(**kw)
        except ValueError as err:
            raise DataError(f"adapter synthetic_images, config key datasets.<name>.options: {err}") from err
        index = records.copy()
        if kw["multilabel"]:
            for f in FINDINGS:
                index[f"label_{f}"] = index.pop(f"finding_{f}").astype(np.int64)
            index = index.drop(columns=["label"])
        index["group"] = index["group"].astype(str)
        index["sex"] = index["sex"].astype(str)
        index["pixels"] = list(images)
        return index

    def load_input(self, row: dict, spec: dict) -> np.ndarray:
        return np.asarray(row["pixels"], dtype=np.uint8)


ADAPTER = SyntheticImages()
