"""MIMIC-CXR-JPG v2 (Johnson et al., PhysioNet) chest radiographs, 14 findings multi-label.

Layout under ``root`` (the MIMIC-CXR-JPG folder)::

    mimic-cxr-2.0.0-metadata.csv   # dicom_id, subject_id, study_id, ViewPosition, …
    mimic-cxr-2.0.0-chexpert.csv   # subject_id, study_id, 14 findings (1/0/-1/blank)
    mimic-cxr-2.0.0-negbio.csv     # same columns, NegBio labeler
    mimic-cxr-2.0.0-split.csv      # dicom_id, study_id, subject_id, split (train/validate/test)
    files/p10/p10000032/s50414267/<dicom_id>.jpg

(the CSVs may be gzip-compressed, ``.csv.gz``). Demographics come from MIMIC-IV's hosp
module, option ``mimic_iv_hosp`` (default ``root/hosp``): ``patients.csv`` (subject_id,
gender, anchor_age) and ``admissions.csv`` (subject_id, admittime, insurance, race).

Coding (MIMIC-CXR-JPG documentation, "Labels"): labels are per *study* and apply to every
image of the study; 1 positive, 0 negative, -1 uncertain, blank not mentioned → 0;
uncertain by option ``uncertain: ones|zeros`` (default ``ones``); ``labeler: chexpert|negbio``.
Official split: ``test`` of the split file → ``test``; ``train`` and ``validate`` → pool.
Views: option ``views`` (default [PA, AP]) keeps frontal images by ``ViewPosition``.

Ambiguities noted: race and insurance are recorded per hospital *admission* and can differ
between a patient's admissions (and ``race`` was called ``ethnicity`` before MIMIC-IV 2.0;
both are accepted); the value of the patient's latest admission by ``admittime`` is used,
and patients without an admission get "Unknown". Age is ``anchor_age`` (age in the
patient's anchor year, not at the study).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mia_audit.data.adapters.base import options, require_columns, require_file
from mia_audit.data.adapters.chexpert import FINDINGS, code_findings, uncertain_value
from mia_audit.data.adapters.imaging import load_image
from mia_audit.data.records import integer_text
from mia_audit.errors import DataError

#: the identifier columns of the MIMIC tables, read as text
ID_COLUMNS = ("subject_id", "study_id", "dicom_id", "hadm_id")


def _read(root: Path, stem: str, what: str) -> pd.DataFrame:
    for suffix in (".csv", ".csv.gz"):
        p = root / f"{stem}{suffix}"
        if p.exists():
            df = pd.read_csv(p, dtype=dict.fromkeys(ID_COLUMNS, str))  # ids as text (records.py)
            return df.assign(**{c: integer_text(df[c]) for c in ID_COLUMNS if c in df})
    require_file(root / f"{stem}.csv", what)


def latest_admission(adm: pd.DataFrame, source) -> pd.DataFrame:
    """Per subject: race and insurance of the latest admission (by admittime)."""
    if "race" not in adm and "ethnicity" in adm:
        adm = adm.rename(columns={"ethnicity": "race"})
    require_columns(adm, ["subject_id", "admittime", "insurance", "race"], source)
    adm = adm.assign(_t=pd.to_datetime(adm["admittime"], errors="coerce")).sort_values(["subject_id", "_t"])
    return adm.groupby("subject_id").tail(1)[["subject_id", "race", "insurance"]]


class MimicCXR:
    name = "mimic_cxr"
    modality = "image"

    def labels(self, spec):
        return "multilabel", list(options(spec).get("findings", FINDINGS))

    def index_files(self, spec, root) -> list[Path]:
        """The tables the index is read from (their content keys the validation, data/sources.py)."""
        root = Path(root)
        opts = options(spec)
        labeler = str(opts.get("labeler", "chexpert")).lower()
        hosp = Path(opts.get("mimic_iv_hosp", root / "hosp"))
        hosp = hosp if hosp.is_absolute() else root / hosp
        stems = [root / f"mimic-cxr-2.0.0-{s}" for s in ("metadata", labeler, "split")]
        stems += [hosp / "patients", hosp / "admissions"]
        return [Path(f"{s}{x}") for s in stems for x in (".csv", ".csv.gz") if Path(f"{s}{x}").exists()]

    def read_index(self, spec, root) -> pd.DataFrame:
        root = Path(root)
        opts = options(spec)
        labeler = str(opts.get("labeler", "chexpert")).lower()
        if labeler not in ("chexpert", "negbio"):
            raise DataError(f"options.labeler = {labeler!r}: expected 'chexpert' or 'negbio'")
        meta = _read(root, "mimic-cxr-2.0.0-metadata", "MIMIC-CXR-JPG metadata")
        require_columns(meta, ["dicom_id", "subject_id", "study_id", "ViewPosition"], "mimic-cxr-2.0.0-metadata")
        lab = _read(root, f"mimic-cxr-2.0.0-{labeler}", f"MIMIC-CXR-JPG {labeler} labels")
        split = _read(root, "mimic-cxr-2.0.0-split", "MIMIC-CXR-JPG official split")
        require_columns(split, ["dicom_id", "split"], "mimic-cxr-2.0.0-split")
        views = opts.get("views", ["PA", "AP"])
        if views:
            meta = meta[meta["ViewPosition"].isin(views)]
        df = meta.merge(lab, on=["subject_id", "study_id"], how="inner").merge(
            split[["dicom_id", "split"]], on="dicom_id", how="left"
        )
        df = df.reset_index(drop=True)
        sid, st = integer_text(df["subject_id"]), integer_text(df["study_id"])
        path = [
            str(root / "files" / f"p{str(s)[:2]}" / f"p{s}" / f"s{t}" / f"{d}.jpg")
            for s, t, d in zip(sid, st, df["dicom_id"], strict=True)
        ]
        out = pd.DataFrame(
            {
                "record_id": df["dicom_id"].astype(str),
                "patient_id": sid,
                "split": np.where(df["split"].astype(str) == "test", "test", "pool"),
                "path": path,
                "view": df["ViewPosition"].astype(str),
                "study_id": st,
            }
        )
        out = pd.concat(
            [out, code_findings(df, self.labels(spec)[1], uncertain_value(opts), f"{labeler} labels")], axis=1
        )
        hosp = Path(opts.get("mimic_iv_hosp", root / "hosp"))
        if not hosp.is_absolute():
            hosp = root / hosp
        pat = _read(hosp, "patients", "MIMIC-IV hosp patients (options.mimic_iv_hosp)")
        require_columns(pat, ["subject_id", "gender", "anchor_age"], hosp / "patients.csv")
        adm = latest_admission(_read(hosp, "admissions", "MIMIC-IV hosp admissions"), hosp / "admissions.csv")
        m = (
            out[["patient_id"]]
            .assign(subject_id=sid)
            .merge(pat, on="subject_id", how="left")
            .merge(adm, on="subject_id", how="left")
        )
        out["sex"] = m["gender"].fillna("Unknown").astype(str).to_numpy()
        out["age"] = pd.to_numeric(m["anchor_age"], errors="coerce").to_numpy()
        out["race"] = m["race"].fillna("Unknown").astype(str).to_numpy()
        out["insurance"] = m["insurance"].fillna("Unknown").astype(str).to_numpy()
        return out

    def load_input(self, row, spec):
        return load_image(row["path"], int(spec["image_size"]), int(spec["channels"]))


ADAPTER = MimicCXR()
