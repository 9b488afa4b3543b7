"""CheXpert (Stanford; Irvin et al., AAAI 2019) chest radiographs, 14 findings multi-label.

Layout under ``root`` (the folder that holds ``CheXpert-v1.0-small/`` or ``CheXpert-v1.0/``)::

    CheXpert-v1.0-small/train.csv, valid.csv   # Path, Sex, Age, Frontal/Lateral, AP/PA, 14 findings
    CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg
    CHEXPERT DEMO.xlsx (or .csv)               # PATIENT, GENDER, AGE_AT_CXR, PRIMARY_RACE, ETHNICITY

``Path`` is relative to the folder *above* ``CheXpert-v1.0-small`` (it starts with that
folder's name), so images are found at ``root / Path``; options ``csv_dir`` and
``demographics`` override where the tables are.

Coding (CheXpert paper, Sect. "Labeler"; the CSV header): each finding is 1 positive,
0 negative, -1 uncertain, blank = not mentioned. Blank → 0. Uncertain → 1 (``U-Ones``) or
0 (``U-Zeros``) by option ``uncertain: ones|zeros`` (default ``ones``; the paper's
U-Ones baseline). Patient key: the ``patientNNNNN`` folder in ``Path``; the same key is the
``PATIENT`` column of the demographics file (CheXpert demographics release, Stanford AIMI).

Ambiguities noted: ``PRIMARY_RACE`` holds many fine-grained text values (e.g. "White,
non-Hispanic", "Asian - Historical Conv"); option ``race_map`` (default below) bins them to
White / Black / Asian / Other / Unknown by the leading word — check it against your copy.
``Sex`` in train.csv may be "Unknown"; the demographics' ``GENDER`` is used when present.
The official ``valid.csv`` (200 patients, radiologist-labelled) is kept as ``test``;
option ``use_valid_as_test: false`` pools it with the training records instead.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mia_audit.data.adapters.base import options, require_columns, require_file
from mia_audit.data.adapters.imaging import load_image
from mia_audit.errors import DataError

FINDINGS = [
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Opacity",
    "Lung Lesion",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
]


def race_group(value) -> str:
    """Bin CheXpert's PRIMARY_RACE text to White/Black/Asian/Other/Unknown by its leading word."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "Unknown"
    v = str(value).strip().lower()
    if v.startswith("white"):
        return "White"
    if v.startswith("black"):
        return "Black"
    if v.startswith("asian"):
        return "Asian"
    if v in ("", "unknown", "patient refused", "patient declined"):
        return "Unknown"
    return "Other"


def uncertain_value(opts: dict) -> int:
    u = str(opts.get("uncertain", "ones")).lower()
    if u not in ("ones", "zeros"):
        raise DataError(f"options.uncertain = {u!r}: expected 'ones' (U-Ones) or 'zeros' (U-Zeros)")
    return 1 if u == "ones" else 0


def code_findings(df: pd.DataFrame, findings: list[str], uncertain: int, source) -> pd.DataFrame:
    """1/0/-1/blank → 0/1 columns label_<finding>: -1 → ``uncertain``, blank → 0."""
    require_columns(df, findings, source)
    out = {}
    for f in findings:
        v = pd.to_numeric(df[f], errors="coerce")
        bad = ~v.isin([1, 0, -1]) & v.notna()
        if bad.any():
            raise DataError(f"{source}: finding {f!r} has value {df[f][bad].iloc[0]!r}; expected 1, 0, -1 or blank")
        out[f"label_{f}"] = v.replace(-1, uncertain).fillna(0).astype(np.int8).to_numpy()
    return pd.DataFrame(out, index=df.index)


class CheXpert:
    name = "chexpert"
    modality = "image"

    def labels(self, spec):
        return "multilabel", list(options(spec).get("findings", FINDINGS))

    def read_index(self, spec, root) -> pd.DataFrame:
        root = Path(root)
        opts = options(spec)
        csv_dir = Path(opts["csv_dir"]) if opts.get("csv_dir") else None
        if csv_dir is None:
            cands = [root / d for d in ("CheXpert-v1.0-small", "CheXpert-v1.0") if (root / d / "train.csv").exists()]
            csv_dir = cands[0] if cands else root
        frames = []
        for split, fname in (("pool", "train.csv"), ("test", "valid.csv")):
            p = csv_dir / fname
            if fname == "train.csv":
                require_file(p, "CheXpert training labels (train.csv)")
            elif not p.exists():  # no official test split: the split checks say so (official_split_file)
                continue
            df = pd.read_csv(p)
            require_columns(df, ["Path", "Sex", "Age", "Frontal/Lateral"], p)
            df["split"] = "test" if (split == "test" and opts.get("use_valid_as_test", True)) else "pool"
            df["_source"] = str(p)
            frames.append(df)
        df = pd.concat(frames, ignore_index=True)
        if opts.get("frontal_only", True):
            df = df[df["Frontal/Lateral"].astype(str) == "Frontal"].reset_index(drop=True)
        pid = df["Path"].astype(str).str.extract(r"(patient\d+)", expand=False)
        if pid.isna().any():
            raise DataError(f"CheXpert: Path {df['Path'][pid.isna()].iloc[0]!r} has no patientNNNNN folder")
        findings = self.labels(spec)[1]
        out = pd.DataFrame(
            {
                "record_id": df["Path"].astype(str).str.replace(r"^CheXpert-v1\.0(-small)?/", "", regex=True),
                "patient_id": pid,
                "split": df["split"],
                "path": [str(root / p) for p in df["Path"].astype(str)],
                "sex": df["Sex"].astype(str),
                "age": pd.to_numeric(df["Age"], errors="coerce"),
                "view": df.get("AP/PA", pd.Series(index=df.index, dtype=object)).fillna("lateral").astype(str),
            }
        )
        out = pd.concat([out, code_findings(df, findings, uncertain_value(opts), "CheXpert labels")], axis=1)
        demo = self._demographics(root, opts)
        if demo is not None:
            m = out[["patient_id"]].merge(demo, on="patient_id", how="left")
            out["race"] = m["PRIMARY_RACE"].map(race_group).to_numpy()
            out["race_raw"] = m["PRIMARY_RACE"].fillna("Unknown").astype(str).to_numpy()
            out["ethnicity"] = m["ETHNICITY"].fillna("Unknown").astype(str).to_numpy()
            g = m["GENDER"].fillna("Unknown").astype(str).to_numpy()
            out["sex"] = np.where(pd.Series(g).isin(["Male", "Female"]), g, out["sex"])
        else:
            out["race"] = "Unknown"
        return out

    def index_files(self, spec, root) -> list[Path]:
        """The tables the index is read from (their content keys the validation, data/sources.py)."""
        root = Path(root)
        split = self.official_split_file(spec, root)
        opts = options(spec)
        demo = (
            [root / opts["demographics"]]
            if opts.get("demographics")
            else [
                root / n for n in ("CHEXPERT DEMO.xlsx", "CHEXPERT DEMO.csv", "CHEXPERT_DEMO.xlsx", "CHEXPERT_DEMO.csv")
            ]
        )
        return [p for p in (split.with_name("train.csv"), split, *demo) if p.exists()]

    def official_split_file(self, spec, root) -> Path:
        """The file of the official test split (``valid.csv``), named when that split is empty."""
        opts = options(spec)
        if opts.get("csv_dir"):
            return Path(opts["csv_dir"]) / "valid.csv"
        root = Path(root)
        cands = [root / d for d in ("CheXpert-v1.0-small", "CheXpert-v1.0") if (root / d / "train.csv").exists()]
        return (cands[0] if cands else root) / "valid.csv"

    def _demographics(self, root: Path, opts) -> pd.DataFrame | None:
        if opts.get("demographics"):
            paths = [root / opts["demographics"]]
            require_file(paths[0], "CheXpert demographics (options.demographics)")
        else:
            paths = [
                root / n for n in ("CHEXPERT DEMO.xlsx", "CHEXPERT DEMO.csv", "CHEXPERT_DEMO.xlsx", "CHEXPERT_DEMO.csv")
            ]
        for p in paths:
            if p.exists():
                demo = pd.read_excel(p, engine="openpyxl") if p.suffix == ".xlsx" else pd.read_csv(p)
                require_columns(demo, ["PATIENT", "PRIMARY_RACE", "GENDER"], p)
                if "ETHNICITY" not in demo:
                    demo["ETHNICITY"] = np.nan
                demo = demo.rename(columns={"PATIENT": "patient_id"}).drop_duplicates("patient_id")
                return demo[["patient_id", "PRIMARY_RACE", "GENDER", "ETHNICITY"]]
        return None

    def load_input(self, row, spec):
        return load_image(row["path"], int(spec["image_size"]), int(spec["channels"]))


ADAPTER = CheXpert()
