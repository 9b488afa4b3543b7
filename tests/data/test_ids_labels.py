"""Identifiers are text and the label's mapping is explicit: nothing is merged or reclassified unseen.

Ids read by a type-guessing CSV reader become numbers, so ``01`` and ``1`` (or ``1E2`` and
``100``) would be one patient; a binary label that sends every unlisted value to the negative
class turns a stray ``Yes `` or ``unknown`` into negatives. These tests write the tables to
files and read them as the workflow does (CSV and Parquet).
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from snakemake.utils import validate

from mia_audit.data.adapters.table import prepare_table, read_table
from mia_audit.data.prepare import validate as validate_dataset
from mia_audit.data.records import check_ids, integer_text
from mia_audit.errors import DataError

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def spec() -> dict:
    cfg = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    validate(cfg, str(ROOT / "config/schema.yaml"))
    return cfg["datasets"]["pbc"]


@pytest.fixture(scope="module")
def pbc() -> pd.DataFrame:
    return pd.read_csv(ROOT / "data/pbcseq.csv")


def _write(df: pd.DataFrame, path: Path) -> Path:
    if path.suffix == ".parquet":
        df.to_parquet(path, index=False)
    else:
        df.to_csv(path, index=False)
    return path


def _validate(tmp_path, df, spec, name="cohort.csv", **over):
    s = copy.deepcopy(spec)
    s.update(over)
    s["label"].setdefault("name", "death")
    s["path"] = str(_write(df, tmp_path / name))
    return validate_dataset(s, dataset="cohort")


def _records(tmp_path, df, spec, name="cohort.csv", **over):
    s = copy.deepcopy(spec)
    s.update(over)
    path = _write(df, tmp_path / name)
    text = [s["patient_id"], s.get("record_id"), s["label"]["column"]]
    return prepare_table(read_table(path, text_columns=text), s, path=path, name="cohort")


def _relabel_patients(pbc: pd.DataFrame, new: dict) -> pd.DataFrame:
    """The cohort with the ids of some patients rewritten as text (``{old id: new text}``)."""
    df = pbc.copy()
    df["id"] = df["id"].astype(str)
    for old, text in new.items():
        df.loc[df["id"] == str(old), "id"] = text
    return df


IDS = {5: "01", 1: "1", 7: "1E2", 100: "100", 9: "007", 11: "7"}


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_ids_that_are_one_number_written_differently_stay_different_patients(tmp_path, pbc, spec, suffix):
    """01/1, 1E2/100 and 007/7 are six patients, not three, in CSV and in Parquet (text column);
    the report notes that they are equal as numbers."""
    df = _relabel_patients(pbc, IDS)
    prep = _records(tmp_path, df, spec, name=f"cohort{suffix}")
    rec = prep.records
    assert rec["patient_id"].nunique() == 312  # as many patients as the cohort has
    for old, text in IDS.items():
        n = int((pbc["id"] == old).sum())
        assert (rec["patient_id"] == text).sum() == n, text
    note = " ".join(prep.report["id_notes"])
    assert "'01'/'1'" in note and "'100'/'1E2'" in note and "'007'/'7'" in note
    # every record keeps its own patient: record ids are built from the id as written
    assert rec.loc[rec["patient_id"] == "01", "record_id"].str.startswith("01_").all()


def test_ids_differing_only_in_spaces_are_refused_in_one_line(tmp_path, pbc, spec):
    df = _relabel_patients(pbc, {12: " 7", 7: "7"})
    with pytest.raises(DataError) as err:
        _records(tmp_path, df, spec)
    msg = str(err.value)
    assert "\n" not in msg
    assert "patient-id column 'id' holds ids that differ only in surrounding spaces: '7'" in msg and "' 7'" in msg


def test_record_ids_are_text_too(tmp_path, pbc, spec):
    df = pbc.copy()
    df["visit"] = [f"{i:04d}" for i in range(len(df))]  # '0001' … : zero-padded, all distinct as text
    df.loc[2, "visit"] = "1"  # row 1 holds '0001': '0001' and '1' are different records
    prep = _records(tmp_path, df, spec, record_id="visit")
    assert prep.records["record_id"].is_unique and {"0001", "1"} <= set(prep.records["record_id"])
    assert any("record-id column 'visit'" in n for n in prep.report["id_notes"])


def test_integer_ids_in_parquet_become_their_digits(tmp_path, pbc, spec):
    """A Parquet file keeps its own types: integer ids are written as their digits, as before."""
    prep = _records(tmp_path, pbc, spec, name="cohort.parquet")
    assert set(prep.records["patient_id"]) == {str(i) for i in pbc["id"].unique()}


def test_blank_and_float_export_ids():
    ids = pd.Series(["1", "2", "  "])
    with pytest.raises(DataError, match=r"blank id\(s\) \(rows \[2\]\)"):
        check_ids(ids, "id", "t.csv")
    assert integer_text(pd.Series(["15709.0", "01", "1E2", None])).tolist()[:3] == ["15709", "01", "1E2"]
    assert integer_text(pd.Series(["15709.0", None])).isna().tolist() == [False, True]


# --------------------------------------------------------------------------- the label


def test_the_report_lists_every_raw_label_value_with_its_class_and_count(tmp_path, pbc, spec):
    report, _ = _validate(tmp_path, pbc, spec)
    counts = pbc["status"].value_counts()
    assert report["label_values"] == [
        {"value": "0", "class": "not death", "records": int(counts[0])},
        {"value": "1", "class": "not death", "records": int(counts[1])},
        {"value": "2", "class": "death", "records": int(counts[2])},
    ]


def _yes_no(pbc: pd.DataFrame, spelt: str, n: int) -> pd.DataFrame:
    """status as text yes/no, with the first ``n`` deaths spelt ``spelt``."""
    df = pbc.copy()
    df["status"] = np.where(pbc["status"] == 2, "yes", "no").astype(object)
    deaths = df.index[df["status"] == "yes"][:n]
    df.loc[deaths, "status"] = spelt
    return df


@pytest.mark.parametrize(
    "label, pattern",
    [
        (
            {"column": "status", "positive": ["yes"], "negative": ["no"]},
            r"value\(s\) 'Yes ' \(242 records\) that differ from the positive value\(s\) \['yes'\] only in case",
        ),
        (  # an unquoted yes in YAML
            {"column": "status", "positive": [True], "negative": [False]},
            r"lists the boolean\(s\) \[True, False\].*YAML reads an unquoted yes/no.*positive: \['yes'\]",
        ),
        (
            {"column": "status", "positive": ["yes"]},
            r"differ from the positive value\(s\) \['yes'\] only in case or spaces",
        ),
    ],
    ids=["near-duplicate", "yaml-boolean", "near-duplicate-no-negative"],
)
def test_near_duplicates_and_yaml_booleans_are_named(tmp_path, pbc, spec, label, pattern):
    df = _yes_no(pbc, "Yes ", 242)
    with pytest.raises(DataError, match=pattern) as err:
        _validate(tmp_path, df, spec, label={**label, "name": "death"})
    assert "\n" not in str(err.value)


def test_near_duplicates_listed_in_positive_are_one_class(tmp_path, pbc, spec):
    df = _yes_no(pbc, "Yes ", 242)
    report, _ = _validate(
        tmp_path, df, spec, label={"column": "status", "positive": ["yes", "Yes "], "negative": ["no"]}
    )
    assert report["label_counts"]["death"] == int((pbc["status"] == 2).sum())
    assert {v["value"]: v["class"] for v in report["label_values"]} == {
        "Yes ": "death",
        "no": "not death",
        "yes": "death",
    }


def test_a_stray_value_is_refused_naming_it_and_its_count(tmp_path, pbc, spec):
    df = pbc.copy().astype({"status": object})
    df.loc[df.index[:278], "status"] = "unknown"
    with pytest.raises(DataError) as err:
        _validate(tmp_path, df, spec, label={"column": "status", "positive": ["2"], "negative": ["0", "1"]})
    msg = str(err.value)
    assert "'unknown' (278 records) in neither datasets.cohort.label.positive ['2']" in msg
    assert "'2'" not in msg.split("in neither")[0]  # the positive value is not reported as a stray one


def test_positive_without_negative_is_refused_with_the_line_to_add(tmp_path, pbc, spec):
    with pytest.raises(DataError) as err:
        _validate(tmp_path, pbc, spec, label={"column": "status", "positive": [2], "name": "death"})
    msg = str(err.value)
    assert "label.positive is given but datasets.cohort.label.negative is not" in msg
    assert "'0' (1,073 records), '1' (147 records), '2' (725 records)" in msg and "negative: [0, 1]" in msg


def test_negative_other_takes_every_value_not_positive(tmp_path, pbc, spec):
    df = pbc.copy().astype({"status": object})
    df.loc[df.index[:10], "status"] = "unknown"
    report, _ = _validate(tmp_path, df, spec, label={"column": "status", "positive": [2], "negative": "other"})
    assert {v["value"]: v["class"] for v in report["label_values"]}["unknown"].startswith("not ")


def test_numbers_match_their_written_forms(tmp_path, pbc, spec):
    """positive: [2] matches '2' and '2.0'; quoted '2' matches only the text '2' (then '2.0' is a stray)."""
    df = pbc.copy().astype({"status": object})
    df.loc[df.index[:6], "status"] = df.loc[df.index[:6], "status"].map(lambda v: f"{v}.0")
    report, _ = _validate(tmp_path, df, spec)
    assert report["label_counts"]["death"] == int((pbc["status"] == 2).sum())
    with pytest.raises(DataError, match=r"in neither datasets\.cohort\.label\.positive \['2'\]"):
        _validate(tmp_path, df, spec, label={"column": "status", "positive": ["2"], "negative": ["0", "1"]})


def test_positive_matching_nothing_lists_the_values_as_written(tmp_path, pbc, spec):
    with pytest.raises(DataError) as err:
        _validate(tmp_path, pbc, spec, label={"column": "status", "positive": [3], "negative": [0, 1]})
    assert "positive = [3] matches no value of column 'status'; its values as written: '0' (1,073" in str(err.value)


def test_a_multiclass_value_written_two_ways_is_refused(tmp_path, pbc, spec):
    df = pbc.copy().astype({"status": object})
    df.loc[df.index[:6], "status"] = "2.0"
    with pytest.raises(DataError, match=r"one value written differently: '2' \(\d+ records\), '2\.0' \(6 records\)"):
        _validate(tmp_path, df, spec, label={"column": "status"})


def test_a_value_in_both_lists_is_refused(tmp_path, pbc, spec):
    with pytest.raises(DataError, match=r"\['1'\] of column 'status' are in both"):
        _validate(tmp_path, pbc, spec, label={"column": "status", "positive": [1, 2], "negative": [0, 1]})


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".parquet"])
def test_external_candidate_tables_read_ids_as_text(tmp_path, suffix):
    """The candidate table of an external attack keeps 01 and 1 apart too."""
    from mia_audit.external.scores import read_candidates

    df = pd.DataFrame(
        {
            "record_id": ["01", "1", "2", "3"],
            "patient_id": ["01", "1", "1E2", "100"],
            "member": [1, 0, 1, 0],
            "target": [0.1, 0.2, 0.3, 0.4],
            "reference_1": [0.0, 0.1, 0.2, 0.3],
        }
    )
    path = tmp_path / f"candidates{suffix}"
    if suffix == ".parquet":
        df.to_parquet(path, index=False)
    else:
        df.to_csv(path, sep="\t" if suffix == ".tsv" else ",", index=False)
    got = read_candidates(path)
    assert got["patient_id"].tolist() == ["01", "1", "1E2", "100"] and got["record_id"].is_unique
