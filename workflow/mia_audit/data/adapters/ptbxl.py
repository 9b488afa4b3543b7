"""PTB-XL (Wagner et al., Sci. Data 2020) 12-lead ECGs → 5 diagnostic superclasses, multi-label.

Layout under ``root``::

    ptbxl_database.csv   # ecg_id, patient_id, age, sex, scp_codes, strat_fold, filename_lr, filename_hr, extra_beats, …
    scp_statements.csv   # index = SCP code; diagnostic (1/blank), diagnostic_class (NORM, MI, STTC, CD, HYP)
    records100/00000/00001_lr.{hea,dat}   (WFDB, 100 Hz; records500/… at 500 Hz)

Coding (the data descriptor, Table 2): ``sex`` male 0, female 1; ``age`` in years (ages
above 89 are set to 300 in the published file for privacy — mapped here to 90);
``strat_fold`` 1–10, folds 9 and 10 have human-validated labels and fold 10 is the
recommended test fold → ``split = test``. ``scp_codes`` is a dict code → likelihood
(0–100), read with :func:`ast.literal_eval`. A record gets superclass c when any of its
codes with likelihood ≥ option ``min_likelihood`` (default 0, as in the data set's own
example script) is diagnostic with ``diagnostic_class`` c. Records without any
diagnostic superclass are dropped (option ``drop_unlabelled``, default true).
``extra_beats`` is free text (e.g. "1ES", "SVES"); non-empty → "yes", else "no".

Input: option ``sampling_rate`` 100 (default, ``filename_lr``) or 500 (``filename_hr``);
float32 (lead, time) in mV as stored; leads in the WFDB header's order, checked against
option ``leads`` (default the standard 12). NaN samples → 0.
"""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pandas as pd

from mia_audit.data.adapters.base import options, require_columns, require_file
from mia_audit.data.records import integer_text
from mia_audit.errors import DataError

SUPERCLASSES = ["NORM", "MI", "STTC", "CD", "HYP"]
LEADS = ["I", "II", "III", "AVR", "AVL", "AVF", "V1", "V2", "V3", "V4", "V5", "V6"]


def parse_codes(text, source="scp_codes") -> dict:
    try:
        d = ast.literal_eval(str(text))
    except (ValueError, SyntaxError) as e:
        raise DataError(f"{source}: cannot parse {text!r} as a dict of SCP code → likelihood") from e
    if not isinstance(d, dict):
        raise DataError(f"{source}: {text!r} is not a dict")
    return d


def superclasses(codes: dict, diag_class: dict, min_likelihood: float) -> set:
    return {diag_class[c] for c, lik in codes.items() if c in diag_class and float(lik) >= min_likelihood}


class PTBXL:
    name = "ptbxl"
    modality = "signal"
    raw_file_suffixes = (".hea", ".dat")  # ``path`` is a WFDB record name

    def labels(self, spec):
        return "multilabel", list(SUPERCLASSES)

    def lead_names(self, spec):
        return list(options(spec).get("leads", LEADS))

    def sampling_rate(self, spec):
        fs = int(options(spec).get("sampling_rate", 100))
        if fs not in (100, 500):
            raise DataError(f"options.sampling_rate = {fs}: PTB-XL has 100 or 500 Hz records")
        return fs

    def index_files(self, spec, root) -> list[Path]:
        """The tables the index is read from (their content keys the validation, data/sources.py)."""
        return [p for p in (Path(root) / "ptbxl_database.csv", Path(root) / "scp_statements.csv") if p.exists()]

    def read_index(self, spec, root) -> pd.DataFrame:
        root = Path(root)
        opts = options(spec)
        dbp = require_file(root / "ptbxl_database.csv", "PTB-XL database")
        scp = require_file(root / "scp_statements.csv", "PTB-XL SCP statements")
        db = pd.read_csv(dbp, dtype={"ecg_id": str, "patient_id": str})  # ids as text (records.py)
        col = "filename_lr" if self.sampling_rate(spec) == 100 else "filename_hr"
        require_columns(db, ["ecg_id", "patient_id", "age", "sex", "scp_codes", "strat_fold", col], dbp)
        st = pd.read_csv(scp, index_col=0)
        require_columns(st, ["diagnostic", "diagnostic_class"], scp)
        diag = st[pd.to_numeric(st["diagnostic"], errors="coerce") == 1]
        diag_class = diag["diagnostic_class"].dropna().astype(str).to_dict()
        unknown = set(diag_class.values()) - set(SUPERCLASSES)
        if unknown:
            raise DataError(f"{scp}: diagnostic_class values {sorted(unknown)} are not among {SUPERCLASSES}")
        minlik = float(opts.get("min_likelihood", 0))
        sets = [
            superclasses(parse_codes(t, f"{dbp} ecg_id {e}"), diag_class, minlik)
            for t, e in zip(db["scp_codes"], db["ecg_id"], strict=True)
        ]
        out = pd.DataFrame(
            {
                "record_id": integer_text(db["ecg_id"]),
                "patient_id": integer_text(db["patient_id"]),
                "path": [str(root / f) for f in db[col]],
                "split": np.where(pd.to_numeric(db["strat_fold"]) == 10, "test", "pool"),
                "sex": pd.to_numeric(db["sex"], errors="coerce").map({0: "male", 1: "female"}).fillna("unknown"),
                "age": pd.to_numeric(db["age"], errors="coerce").clip(upper=90),
                "extra_beats": np.where(
                    db.get("extra_beats", pd.Series(np.nan, index=db.index)).fillna("").astype(str).str.strip() != "",
                    "yes",
                    "no",
                ),
                "strat_fold": db["strat_fold"].astype(str),
            }
        )
        for c in SUPERCLASSES:
            out[f"label_{c}"] = np.array([c in s for s in sets], dtype=np.int8)
        if opts.get("drop_unlabelled", True):
            out = out[np.array([len(s) > 0 for s in sets])].reset_index(drop=True)
        return out

    def load_input(self, row, spec):
        import wfdb

        try:
            sig, fields = wfdb.rdsamp(row["path"])
        except FileNotFoundError as e:
            raise DataError(f"PTB-XL record {row['record_id']}: WFDB files {row['path']}.hea/.dat not found") from e
        names = [n.upper() for n in fields["sig_name"]]
        want = [n.upper() for n in self.lead_names(spec)]
        missing = [n for n in want if n not in names]
        if missing:
            raise DataError(f"{row['path']}: leads {missing} not in the record (it has {names})")
        if int(round(fields["fs"])) != self.sampling_rate(spec):
            raise DataError(f"{row['path']}: sampled at {fields['fs']} Hz, expected {self.sampling_rate(spec)}")
        x = np.asarray(sig, dtype=np.float32)[:, [names.index(n) for n in want]].T
        return np.nan_to_num(x, nan=0.0)


ADAPTER = PTBXL()
