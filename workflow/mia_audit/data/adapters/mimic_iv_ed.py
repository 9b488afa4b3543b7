"""MIMIC-IV-ED (Johnson et al., PhysioNet) emergency visits → hospitalisation, a table task.

Two sources (option ``source``):

* ``benchmark`` (default): ``master_dataset.csv`` made by the MIMIC-IV-ED benchmark
  (Xie et al., Sci. Data 2022; file option ``file``), one row per ED stay with
  ``subject_id, stay_id, age, gender, race`` (``ethnicity`` in older versions)``,
  insurance, triage_*`` (temperature, heartrate, resprate, o2sat, sbp, dbp, pain,
  acuity), ``chiefcom_*`` (ten chief-complaint flags), ``cci_*`` / ``eci_*`` (Charlson /
  Elixhauser comorbidity flags) and ``outcome_hospitalization``.
* ``raw``: the module tables ``ed/edstays.csv`` (subject_id, hadm_id, stay_id, intime,
  gender, race), ``ed/triage.csv`` (stay_id, temperature, heartrate, resprate, o2sat, sbp,
  dbp, pain, acuity, chiefcomplaint) and ``hosp/patients.csv`` (anchor_age, anchor_year),
  ``hosp/admissions.csv`` (insurance). Derived as the benchmark does: age =
  anchor_age + year(intime) − anchor_year; hospitalisation = the stay has an ``hadm_id``;
  ``chiefcom_*`` flags by case-insensitive keyword match on ``chiefcomplaint`` (the
  keyword lists are ours, below). Comorbidity flags need ICD coding of prior
  diagnoses and are only available from the benchmark file.

Records are ED stays (``stay_id``), patients ``subject_id``. Features default to every
present column among age, gender, triage_*, chiefcom_*, cci_*, eci_* (``gender`` one-hot);
``features`` in the config overrides. Subgroup attributes available: race, gender,
insurance, age and each comorbidity flag. Missing values, encoding and standardisation
follow :mod:`.table`. Ambiguities noted: ``triage_pain`` is free text in the
raw table (e.g. "unable"); non-numbers become missing. Insurance is per admission: the
stay's own admission when it has one, else the patient's latest admission.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mia_audit.data.adapters.base import options, require_columns, require_file
from mia_audit.data.records import integer_text
from mia_audit.errors import DataError

VITALS = ["temperature", "heartrate", "resprate", "o2sat", "sbp", "dbp", "pain", "acuity"]
COMPLAINTS = {
    "chest_pain": ["chest pain"],
    "abdominal_pain": ["abd pain", "abdominal pain"],
    "headache": ["headache"],
    "shortness_of_breath": ["shortness of breath", "sob", "dyspnea"],
    "back_pain": ["back pain"],
    "cough": ["cough"],
    "nausea_vomiting": ["nausea", "vomiting", "n/v"],
    "fever_chills": ["fever", "chills"],
    "syncope": ["syncope"],
    "dizziness": ["dizziness", "dizzy"],
}
PREFIXES = ("triage_", "chiefcom_", "cci_", "eci_")
#: identifier columns of the MIMIC tables, read as text
ID_COLUMNS = ("subject_id", "stay_id", "hadm_id")


def _csv(path: Path, what: str) -> pd.DataFrame:
    for p in (path, path.with_suffix(".csv.gz")):
        if p.exists():
            # identifiers as text (records.py): merged across tables and kept as written
            df = pd.read_csv(p, low_memory=False, dtype=dict.fromkeys(ID_COLUMNS, str))
            return df.assign(**{c: integer_text(df[c]) for c in ID_COLUMNS if c in df})
    require_file(path, what)


def complaint_flags(text: pd.Series) -> pd.DataFrame:
    t = text.fillna("").astype(str).str.lower()
    return pd.DataFrame(
        {
            f"chiefcom_{k}": np.column_stack([t.str.contains(w, regex=False) for w in words]).any(axis=1).astype(int)
            for k, words in COMPLAINTS.items()
        },
        index=text.index,
    )


class MimicIVED:
    name = "mimic_iv_ed"
    modality = "table"

    def labels(self, spec):
        return "multiclass", ["not hospitalised", "hospitalised"]

    def index_files(self, spec, root) -> list[Path]:
        """The tables the index is read from (their content keys the validation, data/sources.py)."""
        root = Path(root)
        opts = options(spec)
        if opts.get("source", "benchmark") == "benchmark":
            paths = [root / opts.get("file", "master_dataset.csv")]
        else:
            ed, hosp = root / opts.get("ed_dir", "ed"), root / opts.get("hosp_dir", "hosp")
            paths = [ed / "edstays.csv", ed / "triage.csv", hosp / "patients.csv", hosp / "admissions.csv"]
        return [q for p in paths for q in (p, p.with_suffix(".csv.gz")) if q.exists()]

    def read_index(self, spec, root) -> pd.DataFrame:
        root = Path(root)
        opts = options(spec)
        source = opts.get("source", "benchmark")
        if source == "benchmark":
            p = root / opts.get("file", "master_dataset.csv")
            df = _csv(p, "MIMIC-IV-ED benchmark master dataset (options.file)")
            if "race" not in df and "ethnicity" in df:
                df = df.rename(columns={"ethnicity": "race"})
            require_columns(df, ["subject_id", "stay_id", "age", "gender", "outcome_hospitalization"], p)
        elif source == "raw":
            df = self._raw(root, opts)
        else:
            raise DataError(f"options.source = {source!r}: expected 'benchmark' or 'raw'")
        for c in ("race", "insurance"):
            if c not in df:
                df[c] = "Unknown"
        df["triage_pain"] = pd.to_numeric(df.get("triage_pain"), errors="coerce") if "triage_pain" in df else np.nan
        df["outcome_hospitalization"] = df["outcome_hospitalization"].astype(bool).astype(int)
        return df.reset_index(drop=True)

    def _raw(self, root: Path, opts) -> pd.DataFrame:
        ed, hosp = root / opts.get("ed_dir", "ed"), root / opts.get("hosp_dir", "hosp")
        stays = _csv(ed / "edstays.csv", "MIMIC-IV-ED edstays")
        require_columns(stays, ["subject_id", "hadm_id", "stay_id", "intime", "gender"], ed / "edstays.csv")
        tri = _csv(ed / "triage.csv", "MIMIC-IV-ED triage")
        require_columns(tri, ["stay_id", *VITALS, "chiefcomplaint"], ed / "triage.csv")
        pat = _csv(hosp / "patients.csv", "MIMIC-IV hosp patients")
        require_columns(pat, ["subject_id", "anchor_age", "anchor_year"], hosp / "patients.csv")
        adm = _csv(hosp / "admissions.csv", "MIMIC-IV hosp admissions")
        require_columns(adm, ["subject_id", "hadm_id", "admittime", "insurance"], hosp / "admissions.csv")
        tri = tri.drop(columns=[c for c in ("subject_id",) if c in tri]).rename(
            columns={v: f"triage_{v}" for v in VITALS}
        )
        df = stays.merge(tri, on="stay_id", how="left").merge(
            pat[["subject_id", "anchor_age", "anchor_year"]], on="subject_id", how="left"
        )
        year = pd.to_datetime(df["intime"], errors="coerce").dt.year
        df["age"] = df["anchor_age"] + (year - df["anchor_year"])
        own = adm[["hadm_id", "insurance"]].drop_duplicates("hadm_id")
        df = df.merge(own, on="hadm_id", how="left")
        latest = (
            adm.assign(_t=pd.to_datetime(adm["admittime"], errors="coerce"))
            .sort_values("_t")
            .groupby("subject_id")
            .tail(1)[["subject_id", "insurance"]]
            .rename(columns={"insurance": "_ins"})
        )
        df = df.merge(latest, on="subject_id", how="left")
        df["insurance"] = df["insurance"].fillna(df["_ins"])
        df["outcome_hospitalization"] = df["hadm_id"].notna().astype(int)
        df = pd.concat([df, complaint_flags(df["chiefcomplaint"])], axis=1)
        return df.drop(columns=["_ins", "anchor_age", "anchor_year"])

    def table_spec(self, spec: dict, df: pd.DataFrame) -> dict:
        full = dict(spec)
        for key, default in (
            ("patient_id", "subject_id"),
            ("record_id", "stay_id"),
            (
                "label",
                {"column": "outcome_hospitalization", "positive": [1], "negative": [0], "name": "hospitalisation"},
            ),
        ):
            if not full.get(key):
                full[key] = default
        if not full.get("features"):
            full["features"] = [c for c in df.columns if c in ("age", "gender") or c.startswith(PREFIXES)]
            full["categorical"] = ["gender"]
        full.setdefault("path", "MIMIC-IV-ED")
        return full

    def load_input(self, row, spec):
        return np.asarray(
            [row[c] for c in self.table_spec(spec, pd.DataFrame(columns=list(row)))["features"]], dtype=object
        )


ADAPTER = MimicIVED()
