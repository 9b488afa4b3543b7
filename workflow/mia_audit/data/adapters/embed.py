"""EMBED (Emory Breast Imaging Dataset, Jeong et al., Radiology: AI 2023) mammograms → breast density.

Layout under ``root``::

    tables/EMBED_OpenData_clinical.csv   # empi_anon, acc_anon, side, numfind, tissueden, RACE_DESC, age_at_study, …
    tables/EMBED_OpenData_metadata.csv   # empi_anon, acc_anon, anon_dicom_path, ViewPosition, FinalImageType, …
    images/…                             # DICOMs (or PNGs converted from them) by anon_dicom_path

(the two CSVs are also looked for directly in ``root``). Hierarchy (EMBED documentation,
"Structure"): ``empi_anon`` = patient, ``acc_anon`` = exam; the clinical table has one row
per *finding* of an exam (``numfind``), the metadata table one row per image.

Images: ``anon_dicom_path`` is an absolute path on the data provider's storage; option
``dicom_prefix`` (default: everything up to and including ``anon_dicom/`` … see below) is
cut from its start and the rest is looked for under option ``image_dir`` (default
``root/images``). Option ``image_ext`` (e.g. ``.png``) replaces the file suffix for
pre-converted images; DICOMs are read with pydicom (VOI LUT, MONOCHROME1 inverted).
Option ``image_types`` (default ["2D"]) filters ``FinalImageType`` (2D, cview).

Label: ``tissueden`` — BI-RADS density 1 = almost entirely fatty (A), 2 = scattered
fibroglandular (B), 3 = heterogeneously dense (C), 4 = extremely dense (D). Other codes
(e.g. 5, used for male patients in the EMBED data dictionary as we read it) and blanks are
dropped. Ambiguities noted: density is recorded per clinical *row*; an exam whose rows
disagree takes the most frequent valid value (ties: the lower, less dense category), and
this is an assumption, not documented behaviour. Race is ``RACE_DESC`` as text;
``ETHNIC_GROUP_DESC`` is kept as ``ethnicity``; age ``age_at_study``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mia_audit.data.adapters.base import options, require_columns, require_file
from mia_audit.data.adapters.imaging import load_image
from mia_audit.data.records import integer_text
from mia_audit.errors import DataError

DENSITY = ["A (fatty)", "B (scattered)", "C (heterogeneous)", "D (extremely dense)"]


def _table(root: Path, name: str) -> Path:
    for p in (root / "tables" / name, root / name):
        if p.exists():
            return p
    return require_file(root / "tables" / name, f"EMBED table {name}")


def exam_density(clin: pd.DataFrame) -> pd.DataFrame:
    """One valid density (1–4) per exam: the most frequent, ties to the lower category."""
    d = clin.assign(tissueden=pd.to_numeric(clin["tissueden"], errors="coerce"))
    d = d[d["tissueden"].isin([1, 2, 3, 4])]
    counts = d.groupby(["acc_anon", "tissueden"]).size().reset_index(name="n")
    counts = counts.sort_values(["acc_anon", "n", "tissueden"], ascending=[True, False, True])
    return counts.groupby("acc_anon").head(1)[["acc_anon", "tissueden"]]


class Embed:
    name = "embed"
    modality = "image"

    def labels(self, spec):
        return "multiclass", DENSITY

    def index_files(self, spec, root) -> list[Path]:
        """The tables the index is read from (their content keys the validation, data/sources.py)."""
        root = Path(root)
        names = ("EMBED_OpenData_clinical.csv", "EMBED_OpenData_metadata.csv")
        return [p for n in names for p in (root / "tables" / n, root / n) if p.exists()]

    def read_index(self, spec, root) -> pd.DataFrame:
        root = Path(root)
        opts = options(spec)
        cp, mp = _table(root, "EMBED_OpenData_clinical.csv"), _table(root, "EMBED_OpenData_metadata.csv")
        ids = dict.fromkeys(("empi_anon", "acc_anon"), str)  # identifiers as text (records.py)
        clin, meta = (pd.read_csv(p, low_memory=False, dtype=ids) for p in (cp, mp))
        clin, meta = (t.assign(**{c: integer_text(t[c]) for c in ids if c in t}) for t in (clin, meta))
        require_columns(clin, ["empi_anon", "acc_anon", "tissueden"], cp)
        require_columns(meta, ["empi_anon", "acc_anon", "anon_dicom_path", "FinalImageType"], mp)
        types = opts.get("image_types", ["2D"])
        if types:
            meta = meta[meta["FinalImageType"].isin(types)]
        dens = exam_density(clin)
        per_exam = clin.drop_duplicates("acc_anon")
        demo_cols = [c for c in ("RACE_DESC", "ETHNIC_GROUP_DESC", "age_at_study") if c in clin]
        df = meta.merge(dens, on="acc_anon", how="inner").merge(
            per_exam[["acc_anon", *demo_cols]], on="acc_anon", how="left"
        )
        df = df.reset_index(drop=True)
        image_dir = Path(opts.get("image_dir", root / "images"))
        if not image_dir.is_absolute():
            image_dir = root / image_dir
        prefix = opts.get("dicom_prefix")
        ext = opts.get("image_ext")

        def local(p: str) -> str:
            p = str(p)
            if prefix and p.startswith(prefix):
                rel = p[len(prefix) :]
            elif "anon_dicom/" in p:  # the provider's storage layout
                rel = p.split("anon_dicom/", 1)[1]
            else:
                rel = p
            rel = Path(rel.lstrip("/"))
            return str(image_dir / (rel.with_suffix(ext) if ext else rel))

        out = pd.DataFrame(
            {
                "record_id": df["anon_dicom_path"].map(lambda p: Path(str(p)).stem).astype(str),
                "patient_id": df["empi_anon"].astype(str),
                "path": df["anon_dicom_path"].map(local),
                "label": (df["tissueden"].astype(int) - 1).to_numpy(),
                "exam": df["acc_anon"].astype(str),
                "image_type": df["FinalImageType"].astype(str),
                "view": df.get("ViewPosition", pd.Series("unknown", index=df.index)).fillna("unknown").astype(str),
                "race": df.get("RACE_DESC", pd.Series(np.nan, index=df.index)).fillna("Unknown").astype(str),
                "ethnicity": df.get("ETHNIC_GROUP_DESC", pd.Series(np.nan, index=df.index))
                .fillna("Unknown")
                .astype(str),
                "age": pd.to_numeric(df.get("age_at_study", pd.Series(np.nan, index=df.index)), errors="coerce"),
            }
        )
        if out["record_id"].duplicated().any():  # file stems not unique: fall back to the full path
            out["record_id"] = df["anon_dicom_path"].astype(str)
        if len(out) == 0:
            raise DataError(f"EMBED: no image of types {types} has an exam with a valid tissueden (1–4) in {cp}")
        return out

    def load_input(self, row, spec):
        return load_image(row["path"], int(spec["image_size"]), int(spec["channels"]))


ADAPTER = Embed()
