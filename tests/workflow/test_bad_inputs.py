"""A table of bad inputs: each stops with one line naming the file, column, key or value and
what was expected — before anything is trained or an earlier output replaced.

Most cases call the check that the workflow runs in-process: the data-set validation
(``adapters.pipeline.validate``, what rule ``validate_dataset`` runs), the config checks of
the plan, the schema with its one-line description, the device check, and the integrity
checks of weights and cube (``integrity``). A handful run through ``snakemake`` after a first
run has prepared the data set (``slow``): they also check that no traceback is shown and that
records.parquet and inputs.zarr are byte-identical afterwards.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from workflow_config import REPO, deep_update, default_config, small_config, validated
from workflow_runs import run_snakemake

from mia_audit import integrity
from mia_audit.data.records import split_patients
from mia_audit.errors import DataError
from mia_audit.pipeline import checks, runlock
from mia_audit.pipeline.runtime import config_errors_as_one_line
from mia_audit.pipeline.validate import validate_dataset as validate
from mia_audit.query import cube

PBC = REPO / "data" / "pbcseq.csv"


@pytest.fixture(scope="module")
def pbc() -> pd.DataFrame:
    return pd.read_csv(PBC)


@pytest.fixture(scope="module")
def spec() -> dict:
    return copy.deepcopy(_validated_default()["datasets"]["pbc"])


# --------------------------------------------------------------------------- case builders
#
# Each builder gets (tmp_path, pbc frame, validated pbc spec) and returns a callable that must
# raise; the table below pairs it with the pattern its one-line message must contain.


def table(mutate=None, overrides=None, name="cohort.csv"):
    """A data case: the PBC table changed by ``mutate(df)``, the spec by ``overrides``; validate it."""

    def build(tmp, df, sp):
        df = df.copy() if mutate is None else mutate(df.copy())
        path = tmp / name
        df.to_csv(path, index=False)
        over = dict(overrides or {})
        if "features" in over and "categorical" not in over:  # keep the spec consistent
            over["categorical"] = [c for c in sp["categorical"] if c in over["features"]]
        s = deep_update(copy.deepcopy(sp), {**over, "path": str(path)})
        return lambda: validate(s, dataset="cohort")

    return build


def raw_file(content: bytes, name="cohort.csv", overrides=None):
    """A data case whose file holds exactly ``content``."""

    def build(tmp, df, sp):
        path = tmp / name
        path.write_bytes(content)
        s = deep_update(copy.deepcopy(sp), {**(overrides or {}), "path": str(path)})
        return lambda: validate(s, dataset="cohort")

    return build


def missing_file(tmp, df, sp):
    s = {**sp, "path": str(tmp / "nope.csv")}
    return lambda: validate(s, dataset="cohort")


def only_test_patients_have(col):
    """``col`` is observed only in held-out test patients."""

    def build(tmp, df, sp):
        test = split_patients(df["id"].astype(str), sp) == "test"
        return table(lambda d: d.assign(**{col: np.where(test, d[col], np.nan)}))(tmp, df, sp)

    return build


def pbc_bytes(edit) -> bytes:
    lines = PBC.read_bytes().split(b"\n")
    return b"\n".join(edit(lines))


def set_rows(col, rows, value):
    def mutate(df):
        df[col] = df[col].astype(object)
        df.loc[rows, col] = value
        return df

    return mutate


def few_patients(n_patients):
    def mutate(df):
        keep = df["id"].isin(df["id"].unique()[:n_patients])
        return df[keep]

    return mutate


def disguised_label(df):
    """A lab value that is 45 exactly when the patient is alive (the issue's real-cohort leak)."""
    rng = np.random.default_rng(0)
    lab = rng.uniform(20, 80, len(df)).round(1)
    df["lab"] = np.where(df["status"] == 2, np.where(lab == 45.0, 45.1, lab), 45.0)
    return df


def pool_single_class(df, sp):
    split = split_patients(df["id"].astype(str), sp)
    df["status"] = np.where(split == "test", 2, 0)
    return df


@functools.lru_cache(maxsize=1)
def _validated_default() -> dict:
    return validated(default_config())


def config_case(overrides, validate_schema=False):
    """A config case: the default config with ``overrides``, through the schema as the Snakefile
    runs it (one line) when ``validate_schema``, then the plan's checks."""

    def build(tmp, df, sp):
        def check():
            if not validate_schema:  # defaults already filled in
                return checks.check_config(deep_update(_validated_default(), overrides))
            from snakemake.utils import validate as schema_validate

            cfg = deep_update(default_config(), overrides)
            try:
                with config_errors_as_one_line():
                    schema_validate(cfg, str(REPO / "config" / "schema.yaml"))
            except SystemExit:  # the Snakefile's path: the line went to the log
                raise DataError(LAST_LOGGED[-1]) from None
            checks.check_config(cfg)

        return check

    return build


LAST_LOGGED: list[str] = []


def device_case(executor, overrides=None):
    def build(tmp, df, sp):
        cfg = deep_update(_validated_default(), {"device": "cuda", **(overrides or {})})
        return lambda: checks.check_device(cfg, executor, cuda_available=lambda: False, gpu_gres=lambda: ())

    return build


def chexpert_case(drop_valid=False, drop_images=False, **spec_keys):
    def build(tmp, df, sp):
        from fixtures_datasets import write_chexpert

        root = tmp / "chexpert"
        write_chexpert(root)
        if drop_valid:
            (root / "CheXpert-v1.0-small" / "valid.csv").unlink()
        if drop_images:
            for f in root.rglob("*.jpg"):
                f.unlink()
        s = {"adapter": "chexpert", "root": str(root), **spec_keys}
        return lambda: validate(s, dataset="cxr")

    return build


# --- integrity: a tiny cube written by two "query jobs", and one shard's weights


def small_cube(tmp, views=False):
    rng = np.random.default_rng(0)
    n_models, n_records, per_shard = 4, 10, 2
    records = pd.DataFrame(
        {
            "record_id": [f"r{i}" for i in range(n_records)],
            "patient_id": [f"p{i // 2}" for i in range(n_records)],
            "label": np.arange(n_records) % 2,
            "split": ["pool"] * 8 + ["test"] * 2,
            "sex": ["f", "m"] * (n_records // 2),
        }
    )
    member = rng.random((n_models, n_records)) < 0.5
    member[::2] = True  # no all-False (unwritten) chunk: each can be deleted
    path = tmp / "cube.zarr"
    cube.create_cube(path, records, member, models_per_shard=per_shard, record_chunk=4)
    summaries = []
    for k in range(n_models // per_shard):
        block = rng.standard_normal((per_shard, n_records)).astype(np.float32)
        cube.write_confidence(path, k * per_shard, block)
        s = tmp / f"shard_{k}.json"
        s.write_text(json.dumps({"cube_regions": {"full": integrity.cube_region(path, k * per_shard, block)}}))
        summaries.append(s)
    return path, summaries


def cube_case(damage):
    def build(tmp, df, sp):
        path, summaries = small_cube(tmp)
        damage(path, summaries)
        return lambda: integrity.CubeCheck(path, summaries).verify()

    return build


def delete_chunk(array, key):
    return lambda path, summaries: (path / array / "c" / key[0] / key[1]).unlink()


def change_region(path, summaries):
    import zarr

    arr = zarr.open_array(str(path / "confidence"), mode="r+")
    arr[2, 5] = arr[2, 5] + 1.0


def weights_case(damage):
    def build(tmp, df, sp):
        import torch

        from mia_audit.train import weights

        w, m = tmp / "shard_1.safetensors", tmp / "shard_1_manifest.json"
        weights.save_shard(w, {"0.weight": torch.ones(2, 3, 4)}, {}, {"models": [2, 3]})
        integrity.write_shard_manifest(m, 1, (2, 4), [w])
        damage(w)
        return lambda: integrity.check_shard_file(w, m, models=[2, 4])

    return build


def truncate(w):
    w.write_bytes(w.read_bytes()[:-10])


def flip_byte(w):
    b = bytearray(w.read_bytes())
    b[-1] ^= 0xFF
    w.write_bytes(bytes(b))


def coordinate_case(damage):
    """A damaged coordinate of a finished cube: the check every reader of the cube makes first."""

    def build(tmp, df, sp):
        path, summaries = small_cube(tmp)
        damage(path)
        return lambda: integrity.CubeCheck(path, summaries)

    return build


def delete_chunks(array):
    def damage(path):
        for f in (path / array / "c").rglob("*"):
            if f.is_file():
                f.unlink()

    return damage


def change_coordinate(array, value):
    def damage(path):
        import zarr

        arr = zarr.open_array(str(path / array), mode="r+")
        arr[3] = value

    return damage


def drop_attribute(path):
    import zarr

    root = zarr.open_group(str(path), mode="r+")
    del root.attrs[integrity.COORDS_ATTR]
    zarr.consolidate_metadata(str(path))


def membership_case(damage=None, missing=False):
    """``membership.zarr`` as sample_membership writes it, damaged, read as every later stage reads it."""

    def build(tmp, df, sp):
        from mia_audit.sampling import membership

        path = tmp / "membership.zarr"
        member = membership.balanced_membership(4, 6, 0)
        membership.write_membership(path, member, np.array([f"p{i}" for i in range(6)]), 0)
        if missing:
            import shutil

            shutil.rmtree(path)
        elif damage is not None:
            damage(path)
        return lambda: membership.read_membership(path)

    return build


def inputs_case(damage=None, missing=False):
    """``inputs.zarr`` of the bundled cohort as prepare_dataset writes it, damaged, read as training reads it."""

    def build(tmp, df, sp):
        from mia_audit.data import store
        from mia_audit.data.adapters.table import prepare_table

        s = copy.deepcopy(sp)
        prep = prepare_table(df.head(300), s, path="pbcseq.csv", name="pbc")
        path = tmp / "inputs.zarr"
        store.write_prepared(prep, tmp / "records.parquet", path)
        if missing:
            import shutil

            shutil.rmtree(path)
        elif damage is not None:
            damage(path)
        return lambda: store.read_model_inputs(path)

    return build


def nan_inputs(path):
    """A NaN written into the features with the digests made to match: only the finite check can see it."""
    import zarr

    root = zarr.open_group(str(path), mode="r+")
    features = root["features"]
    values = np.asarray(features[...])
    values[5, 2] = np.nan
    features[...] = values
    digests = dict(root.attrs[integrity.ARRAYS_ATTR])
    digests["features"] = integrity.values_digest(values)
    root.attrs[integrity.ARRAYS_ATTR] = digests
    zarr.consolidate_metadata(str(path))


def settings_case(changes=None, damaged=False):
    """An experiment folder made with the default settings, and a config with ``changes``."""

    def build(tmp, df, sp):
        from mia_audit.pipeline import plan

        cfg = deep_update(_validated_default(), {"results": str(tmp / "results")})
        path = Path(plan.settings_file(cfg, "mlp"))
        path.parent.mkdir(parents=True)
        digest, settings = plan.settings_digest(cfg, "mlp"), plan.experiment_settings(cfg, "mlp")
        path.write_text("{" if damaged else json.dumps({"digest": digest, "settings": settings}))
        (path.parent / "models").mkdir()
        (path.parent / "models" / "metrics.tsv").write_text("model\tauc\n0\t0.7\n")  # an earlier result
        return lambda: checks.check_experiment_folders(deep_update(cfg, changes or {}))

    return build


def script_case(make_main):
    """A job's script run by run_script: a file it cannot read or write ends it in one line."""

    def build(tmp, df, sp):
        import types

        from mia_audit.pipeline import runtime

        main, inputs, outputs = make_main(tmp)
        log = tmp / "job.log"

        def check():
            globals()["snakemake"] = types.SimpleNamespace(
                input=[str(f) for f in inputs], output=[str(f) for f in outputs]
            )
            try:
                runtime.run_script(main, str(log))
            except SystemExit:
                lines = log.read_text().strip().splitlines()
                assert len(lines) == 1 and "Traceback" not in log.read_text(), log.read_text()
                raise DataError(lines[0].split(" ERROR ", 1)[1]) from None
            finally:
                globals().pop("snakemake", None)

        return check

    return build


def truncated_parquet(tmp):
    path = tmp / "audit" / "record_risk.parquet"
    path.parent.mkdir()
    pd.DataFrame({"record_id": [f"r{i}" for i in range(400)], "auc": np.linspace(0.5, 1, 400)}).to_parquet(path)
    path.write_bytes(path.read_bytes()[:-100])
    return (lambda log: pd.read_parquet(path)), [path], [tmp / "subgroups" / "sex.tsv"]


def disk_full(code):
    def make(tmp):
        import errno

        out = tmp / "audit" / "record_risk.parquet"
        out.parent.mkdir()

        def main(log):
            with open(out, "wb") as fh:  # noqa: F841 (the open file names the output)
                raise OSError(getattr(errno, code), os.strerror(getattr(errno, code)))

        return main, [tmp / "cube.zarr"], [out]

    return make


def workbook(magic: bytes):
    return raw_file(magic + b"\x00" * 200)


def relabel(mapping, column="id"):
    """The cohort with some ids of ``column`` rewritten as text (``{old: new}``)."""

    def mutate(df):
        df[column] = df[column].astype(str)
        for old, new in mapping.items():
            df.loc[df[column] == str(old), column] = new
        return df

    return mutate


def yes_no(spelt, n):
    def mutate(df):
        df["status"] = np.where(df["status"] == 2, "yes", "no").astype(object)
        df.loc[df.index[df["status"] == "yes"][:n], "status"] = spelt
        return df

    return mutate


# --------------------------------------------------------------------------- the table

CASES = [
    # reading the file
    ("missing-file", missing_file, r"nope\.csv does not exist"),
    ("empty-file", raw_file(b""), r"cohort\.csv is empty \(0 bytes\)"),
    ("blank-lines-only", raw_file(b"\n\n\n"), r"cohort\.csv holds no columns"),
    ("header-only", raw_file(PBC.read_bytes().split(b"\n")[0] + b"\n"), r"cohort\.csv: the table has a header but no"),
    (
        "not-utf8",
        raw_file(pbc_bytes(lambda ls: [*ls[:3], ls[3].replace(b",", b",\xe9", 1), *ls[4:]])),
        r"cohort\.csv is not utf-8 text: byte 0xe9 at line 4, column \d+.*encoding",
    ),
    (
        "ragged-row",
        raw_file(pbc_bytes(lambda ls: [*ls[:5], ls[5] + b",1,2", *ls[6:]])),
        r"cohort\.csv is not a readable table: .*line 6",
    ),
    (
        "damaged-parquet",
        raw_file(b"PAR1 not really", name="cohort.parquet"),
        r"cohort\.parquet is not a readable Parquet",
    ),
    ("unsupported-type", raw_file(b"x", name="cohort.xlsx"), r"unsupported file type '\.xlsx'"),
    (
        "excel-saved-as-csv",
        workbook(b"PK\x03\x04"),
        r"cohort\.csv is an Excel workbook \(\.xlsx\) named \.csv, not a CSV text file; export it",
    ),
    ("old-excel-saved-as-csv", workbook(b"\xd0\xcf\x11\xe0"), r"cohort\.csv is an Excel workbook \(\.xls\) named"),
    # columns the config names
    ("missing-feature", table(lambda d: d.drop(columns=["bili"])), r"\['bili'\] named in config key features"),
    ("missing-patient-id", table(lambda d: d.drop(columns=["id"])), r"\['id'\] named in config key patient_id"),
    ("missing-label-column", table(overrides={"label": {"column": "outcome"}}), r"\['outcome'\].*label\.column"),
    (
        "missing-subgroup-column",
        table(overrides={"subgroups": {"sex": {"column": "gender"}}}),
        r"\['gender'\].*subgroups",
    ),
    ("missing-record-id-column", table(overrides={"record_id": "visit"}), r"\['visit'\] named in config key record_id"),
    # values
    ("inf", table(set_rows("bili", [3, 50, 700], np.inf)), r"'bili' has 3 non-finite or absurdly large values"),
    ("minus-inf", table(set_rows("albumin", [9], -np.inf)), r"'albumin' has 1 non-finite .*-inf in rows \[9\]"),
    ("1e308", table(set_rows("chol", [1, 2], 1e308)), r"'chol' has 2 non-finite or absurdly large.*1e\+308"),
    ("absurd-magnitude", table(set_rows("ast", [0], 1e20)), r"'ast' has 1 non-finite or absurdly large.*≤ 1e\+15"),
    ("all-missing", table(set_rows("chol", slice(None), np.nan)), r"'chol' has no value in any of the 1945"),
    ("values-only-in-test", only_test_patients_have("chol"), r"'chol' has no value among the pool records"),
    ("non-numeric", table(set_rows("chol", [5], "high")), r"'chol' has non-numeric value 'high'.*categorical"),
    (
        "date-as-number",
        table(
            lambda d: d.assign(visit=pd.Timestamp("2014-01-01") + pd.to_timedelta(d["day"], "D")),
            {"features": ["age", "visit"]},
        ),
        r"feature column 'visit' holds dates \(e\.g\. '\d{4}-\d\d-\d\d'\); list it under datasets\.cohort\.dates",
    ),
    (
        "date-as-categorical",
        table(
            lambda d: d.assign(visit=(pd.Timestamp("2014-01-01") + pd.to_timedelta(d["day"], "D")).astype(str)),
            {"features": ["age", "visit"], "categorical": ["visit"]},
        ),
        r"categorical feature 'visit' holds dates.*one input per date.*datasets\.cohort\.dates",
    ),
    (
        "unparseable-date",
        table(
            lambda d: d.assign(visit=np.where(d.index == 7, "31/12/2014", "2014-03-02")),
            {"features": ["age", "visit"], "dates": {"visit": {}}},
        ),
        r"date column 'visit'.*'31/12/2014' \(rows \[7\].*datasets\.cohort\.dates\.visit\.format",
    ),
    ("patient-id-missing", table(set_rows("id", [3], np.nan)), r"patient-id column 'id' has 1 missing"),
    (
        "duplicate-record-id",
        table(lambda d: d.assign(visit=0), {"record_id": "visit"}),
        r"record ids are not unique \(column 'visit'\)",
    ),
    (
        "label-missing",
        table(set_rows("status", [11], np.nan)),
        r"label column 'status' has 1 missing value\(s\) \(rows \[11\]",
    ),
    # the label
    (
        "positive-matches-nothing",
        table(overrides={"label": {"positive": [3]}}),
        r"label\.positive = \[3\] matches no value of column 'status'; its values as written: '0' \(1,073 records\), "
        r"'1' \(147 records\), '2' \(725 records\)",
    ),
    (
        "single-class",
        table(overrides={"label": {"positive": [0, 1, 2], "negative": "other"}}),
        r"single class in the data \(counts \[0, 1945\]",
    ),
    (
        "positive-without-negative",
        table(overrides={"label": {"negative": None}}),
        r"datasets\.cohort\.label\.positive is given but datasets\.cohort\.label\.negative is not.*"
        r"'0' \(1,073 records\).*e\.g\. negative: \[0, 1\], or negative: other",
    ),
    (
        "stray-label-value",
        table(set_rows("status", slice(0, 277), "unknown"), {"label": {"positive": ["2"], "negative": ["0", "1"]}}),
        r"column 'status' has value\(s\) 'unknown' \(278 records\) in neither datasets\.cohort\.label\.positive "
        r"\['2'\] nor datasets\.cohort\.label\.negative \['0', '1'\]",
    ),
    (
        "near-duplicate-positive",
        table(yes_no("Yes ", 242), {"label": {"positive": ["yes"], "negative": ["no"]}}),
        r"column 'status' has value\(s\) 'Yes ' \(242 records\) that differ from the positive value\(s\) "
        r"\['yes'\] only in case or spaces",
    ),
    (
        "near-duplicate-other",
        table(yes_no("YES", 10), {"label": {"positive": ["yes"], "negative": "other"}}),
        r"'YES' \(10 records\) that differ from the positive value\(s\) \['yes'\] only in case",
    ),
    (
        "yaml-boolean-positive",
        table(yes_no("yes", 0), {"label": {"positive": [True], "negative": [False]}}),
        r"datasets\.cohort\.label lists the boolean\(s\) \[True, False\], but column 'status' holds no True/False: "
        r"YAML reads an unquoted yes/no",
    ),
    (
        "label-value-in-both-lists",
        table(overrides={"label": {"positive": [1, 2], "negative": [0, 1]}}),
        r"value\(s\) \['1'\] of column 'status' are in both datasets\.cohort\.label\.positive and \.negative",
    ),
    (
        "multiclass-value-written-twice",
        table(set_rows("status", [0, 1, 2], "2.0"), {"label": {"positive": None, "negative": None}}),
        r"label column 'status' \(multi-class.*one value written differently: '2' \(\d+ records\), '2\.0' \(3",
    ),
    (
        "negative-without-positive",
        config_case({"datasets": {"pbc": {"label": {"positive": None}}}}),
        r"config key datasets\.pbc\.label\.negative needs datasets\.pbc\.label\.positive",
    ),
    (
        "label-missing-na-text",
        table(set_rows("status", [4], "NA")),
        r"label column 'status' has 1 missing value\(s\) \(rows \[4\]; an empty field or NA, N/A",
    ),
    # identifiers are text
    (
        "patient-ids-differ-in-spaces",
        table(relabel({12: " 7", 7: "7"})),
        r"patient-id column 'id' holds ids that differ only in surrounding spaces: '7' \(rows \[\d+, .*"
        r"and ' 7' \(rows",
    ),
    (
        "record-ids-differ-in-spaces",
        table(
            lambda d: d.assign(visit=[" v1" if i == 0 else f"v{i}" for i in range(len(d))]),
            {"record_id": "visit"},
        ),
        r"record-id column 'visit' holds ids that differ only in surrounding spaces: 'v1' \(rows \[1\]\) and ' v1'",
    ),
    ("patient-id-blank", table(relabel({3: "  "})), r"patient-id column 'id' has blank id\(s\) \(rows \[\d+"),
    (
        "record-id-missing",
        table(lambda d: d.assign(visit=np.where(d.index == 9, None, d.index.astype(str))), {"record_id": "visit"}),
        r"record-id column 'visit' has 1 missing value\(s\) \(first rows \[9\]\)",
    ),
    (
        "label-as-feature",
        table(overrides={"features": ["age", "bili", "status"]}),
        r"datasets\.cohort\.features lists the label column 'status'",
    ),
    (
        "label-in-disguise",
        table(disguised_label, {"features": ["age", "bili", "lab"]}),
        r"feature 'lab' separates .*\(ROC AUC 1\.000 of the indicator lab == 45\).*datasets\.cohort\.leakage_auc",
    ),
    (
        "label-plus-noise",
        table(
            lambda d: d.assign(score=(d["status"] == 2) + np.random.default_rng(1).normal(0, 0.01, len(d))),
            {"features": ["age", "score"]},
        ),
        r"feature 'score' separates .*\(ROC AUC 1\.000 of the values of score\)",
    ),
    (
        "missingness-leak",
        table(
            lambda d: d.assign(marker=np.where(d["status"] == 2, np.nan, 1.0 + d["age"])),
            {"features": ["age", "marker"]},
        ),
        r"feature 'marker' separates .*the indicator marker missing",
    ),
    # the split
    (
        "pool-single-class",
        lambda tmp, df, sp: table(lambda d: pool_single_class(d, sp))(tmp, df, sp),
        r"every pool record has label class 'not death'",
    ),
    (
        "no-test-patient",
        table(overrides={"test_fraction": 0.001}),
        r"test_fraction = 0\.001 holds out no patient of the 312",
    ),
    (
        "one-pool-patient",
        table(few_patients(3), {"test_fraction": 0.5}),
        r"only 1 pool patient\(s\) left for training \(3 patients, 2 held out",
    ),
    (
        "model-without-patient",
        table(few_patients(7)),
        r"with 6 pool patients and datasets\.cohort\.n_models = 200, target model\(s\) \[.*would train on no patient",
    ),
    (
        "official-split-file-missing",
        chexpert_case(drop_valid=True),
        r"official test split \(.*valid\.csv does not exist\) holds no patient.*datasets\.cxr\.official_split: false",
    ),
    (
        "official-split-empty",
        chexpert_case(options={"use_valid_as_test": False}),
        r"official test split \(.*valid\.csv\) holds no patient.*datasets\.cxr\.official_split: false",
    ),
    (
        "raw-files-missing",
        chexpert_case(drop_images=True),
        r"adapter 'chexpert': 10 of the 10 raw files .* do not exist",
    ),
    # row filters
    (
        "filter-column-missing",
        table(overrides={"filters": [{"column": "result", "drop": ["invalid"]}]}),
        r"\['result'\] named in config key datasets\.cohort\.filters\[0\]\.column",
    ),
    (
        "filter-removes-everything",
        table(overrides={"filters": [{"column": "status", "keep": [7]}]}),
        r"filters \(datasets\.cohort\.filters\) removed all 1945 records",
    ),
    (
        "filter-min-on-text",
        table(overrides={"filters": [{"column": "sex", "min": 1}]}),
        r"compares column 'sex' with min/max, but it has non-numeric value 'f'",
    ),
    # the configuration
    (
        "bins-labels-length",
        config_case({"datasets": {"pbc": {"subgroups": {"age": {"labels": ["young", "old", "older"]}}}}}),
        r"datasets\.pbc\.subgroups\.age: 3 labels for 4 bins",
    ),
    (
        "bins-not-increasing",
        config_case({"datasets": {"pbc": {"subgroups": {"age": {"bins": [0, 50, 40, 60, 120]}}}}}),
        r"subgroups\.age\.bins = \[0, 50, 40, 60, 120\]: edges must increase",
    ),
    (
        "categorical-not-feature",
        config_case({"datasets": {"pbc": {"categorical": ["sex", "race"]}}}),
        r"datasets\.pbc\.categorical names \['race'\], which are not in datasets\.pbc\.features",
    ),
    (
        "dates-column-missing",
        table(overrides={"dates": {"visit": {}}}),
        r"column\(s\) \['visit'\] named in config key dates are not in the file",
    ),
    (
        "dates-as-a-list",
        config_case({"datasets": {"pbc": {"dates": ["visit"]}}}, validate_schema=True),
        r"config key datasets\.pbc\.dates: \['visit'\] is not a mapping \(name: settings\) \(A mapping of date column "
        r"to its settings, e\.g\. \{visit: \{\}\}",
    ),
    (
        "label-under-dates",
        config_case({"datasets": {"pbc": {"dates": {"status": {}}}}}),
        r"datasets\.pbc\.dates lists the label column 'status'",
    ),
    (
        "epsilon-as-text",
        config_case(
            {"experiments": {"mlp": {"dp": {"epsilon": "ten", "level": "record"}, "selection": None}}},
            validate_schema=True,
        ),
        r"config key experiments\.mlp\.dp\.epsilon: 'ten' is not a number > 0 or 'inf' \(Privacy budget",
    ),
    (
        "negative-bad-form",
        config_case({"datasets": {"pbc": {"label": {"negative": "others"}}}}, validate_schema=True),
        r"config key datasets\.pbc\.label\.negative: 'others' is not a list or 'other' or null",
    ),
    (
        "range-on-categorical",
        config_case({"datasets": {"pbc": {"ranges": {"sex": [0, 1]}}}}),
        r"datasets\.pbc\.ranges\.sex: .* is categorical",
    ),
    (
        "range-low-above-high",
        config_case({"datasets": {"pbc": {"ranges": {"bili": [50, 0]}}}}),
        r"datasets\.pbc\.ranges\.bili = \[50, 0\]: expected low < high",
    ),
    (
        "filter-without-condition",
        config_case({"datasets": {"pbc": {"filters": [{"column": "status"}]}}}, validate_schema=True),
        r"datasets\.pbc\.filters\[0\] \(column 'status'\) has no condition",
    ),
    (
        "unknown-key",
        config_case({"datasets": {"pbc": {"featurez": ["age"]}}}, validate_schema=True),
        r"^ConfigError: config key datasets\.pbc has unknown key\(s\) \['featurez'\]; known keys: access_levels",
    ),
    (
        "wrong-type",
        config_case({"experiments": {"mlp": {"train": {"epochs": "many"}}}}, validate_schema=True),
        r"config key experiments\.mlp\.train\.epochs: 'many' is not an integer ≥ 1",
    ),
    (
        "access-level-path",
        config_case({"datasets": {"pbc": {"access_levels": {"../x": {"known": ["age"]}}}}}, validate_schema=True),
        r"config key datasets\.pbc\.access_levels: '\.\./x' does not match",
    ),
    (
        "test-fraction-zero",
        config_case({"datasets": {"pbc": {"test_fraction": 0}}}, validate_schema=True),
        r"config key datasets\.pbc\.test_fraction: 0 is less than or equal to the minimum of 0",
    ),
    (
        "cuda-without-gpu",
        device_case("local"),
        r"device is 'cuda' but this machine has no CUDA device; set device: auto",
    ),
    (
        "cuda-cluster-jobs-without-gpu",
        device_case("slurm", {"cluster": {"gpu": "auto"}}),
        r"device is 'cuda' but the train and query jobs ask the slurm cluster for no GPU \(cluster\.gpu: auto\)",
    ),
    # integrity of what the jobs wrote
    ("weights-truncated", weights_case(truncate), r"shard_1\.safetensors of shard 1 \(models 2–3\) has .* bytes but"),
    ("weights-changed", weights_case(flip_byte), r"shard_1\.safetensors of shard 1 .*SHA-256 mismatch.*--force"),
    (
        "cube-chunk-deleted",
        cube_case(delete_chunk("confidence", ("1", "1"))),
        r"the confidences of models 2–3 \(shard 1\), records 4–7, differ.*--force .*cube\.zarr",  # re-assembled
    ),
    (
        "cube-value-changed",
        cube_case(change_region),
        r"the confidences of models 2–3 \(shard 1\), records 4–7, differ",
    ),
    (
        "member-chunk-deleted",
        cube_case(delete_chunk("member", ("0", "2"))),
        r"the membership of models 0–1 \(shard 0\), records 8–9, differ.*--force .*cube\.zarr",
    ),
    (
        "query-record-missing",
        cube_case(lambda path, summaries: summaries[1].unlink()),
        r"shard_1\.json records no checksums of what shard 1 wrote",
    ),
    (
        "cube-record-id-chunk-deleted",
        coordinate_case(delete_chunks("record_id")),
        r"cube\.zarr/record_id \(the cube's record_id coordinate\) differs from what create_cube wrote.*"
        r"snakemake --force \S+/cube\.zarr ",
    ),
    (
        "cube-patient-id-chunk-deleted",
        coordinate_case(delete_chunks("patient_id")),
        r"cube\.zarr/patient_id \(the cube's patient_id coordinate\) differs",
    ),
    ("cube-split-changed", coordinate_case(change_coordinate("split", "test")), r"cube\.zarr/split \(the cube's split"),
    ("cube-label-changed", coordinate_case(change_coordinate("label", 7)), r"cube\.zarr/label \(the cube's label"),
    ("cube-subgroup-changed", coordinate_case(change_coordinate("sex", "x")), r"cube\.zarr/sex \(the cube's sex"),
    ("cube-model-changed", coordinate_case(change_coordinate("model", 9)), r"cube\.zarr/model \(the cube's model"),
    (
        "cube-coordinates-unrecorded",
        coordinate_case(drop_attribute),
        r"cube\.zarr records no checksums of its coordinates \(an older cube, or damaged\).*--force",
    ),
    (
        "membership-chunk-deleted",
        membership_case(delete_chunks("member")),
        r"membership\.zarr/member \(the membership matrix\) differs from what was written.*"
        r"snakemake --force \S+/membership\.zarr ",
    ),
    (
        "membership-patient-ids-changed",
        membership_case(change_coordinate("patient_id", "p99")),
        r"membership\.zarr/patient_id \(the membership matrix\) differs",
    ),
    (
        "membership-unrecorded",
        membership_case(lambda path: _drop_arrays_attr(path)),
        r"membership\.zarr \(the membership matrix\) records no checksums of its arrays",
    ),
    (
        "membership-missing",
        membership_case(missing=True),
        r"membership\.zarr \(the membership matrix\) cannot be opened.*--force",
    ),
    (
        "inputs-chunk-deleted",
        inputs_case(delete_chunks("features")),
        r"inputs\.zarr/features \(the model inputs\) differs from what was written.*"
        r"snakemake --force \S+/inputs\.zarr ",
    ),
    (
        "inputs-record-id-changed",
        inputs_case(change_coordinate("record_id", "x")),
        r"inputs\.zarr/record_id \(the model inputs\) differs",
    ),
    (
        "inputs-not-finite",
        inputs_case(nan_inputs),
        r"inputs\.zarr: 1 model input value\(s\) are not finite \(e\.g\. record '\S+' column '\S+': nan\)",
    ),
    ("inputs-missing", inputs_case(missing=True), r"inputs\.zarr \(the model inputs\) cannot be opened"),
    # one configuration per experiment folder
    (
        "experiment-settings-differ",
        settings_case({"experiments": {"mlp": {"model": {"width": 64}}}}),
        r"config key experiments\.mlp: \S+/results/pbc/mlp holds the outputs of experiment 'mlp' made with other "
        r"settings \(experiment\.model\.width: 16 → 64\).*delete \S+/results/pbc/mlp and \S+/figures/pbc/mlp",
    ),
    (
        "experiment-dataset-settings-differ",
        settings_case({"datasets": {"pbc": {"features": ["age", "bili"]}}}),
        r"config key experiments\.mlp: .* made with other settings \(dataset\.features",
    ),
    (
        "experiment-settings-damaged",
        settings_case(damaged=True),
        r"results/pbc/mlp/settings\.json cannot be read \(damaged\)",
    ),
    # files a job cannot read or write (run_script)
    (
        "damaged-stage-parquet",
        script_case(truncated_parquet),
        r"reading input \S+/audit/record_risk\.parquet; if the file is damaged, rebuild it with: snakemake --force "
        r"\S+/audit/record_risk\.parquet",
    ),
    (
        "disk-full",
        script_case(disk_full("ENOSPC")),
        r"OSError: No space left on device — writing output \S+/record_risk\.parquet; free disk space",
    ),
    (
        "file-too-large",
        script_case(disk_full("EFBIG")),
        r"OSError: File too large — writing output \S+/record_risk\.parquet; the file system does not take",
    ),
]


def _drop_arrays_attr(path):
    import zarr

    root = zarr.open_group(str(path), mode="r+")
    del root.attrs[integrity.ARRAYS_ATTR]
    zarr.consolidate_metadata(str(path))


@pytest.fixture(autouse=True)
def _capture_logged(monkeypatch):
    """The Snakefile logs a config error through Snakemake's logger, then exits: keep the line."""
    import mia_audit.pipeline.runtime as runtime

    LAST_LOGGED.clear()
    monkeypatch.setattr(runtime, "_stop", lambda message: (LAST_LOGGED.append(message), sys.exit(1)))


def test_the_table_has_enough_distinct_cases() -> None:
    assert len(CASES) >= 70 and len({c[0] for c in CASES}) == len(CASES)


def _tree(root: Path) -> dict[str, str]:
    return {str(f): hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(root.rglob("*")) if f.is_file()}


@pytest.mark.parametrize("build, pattern", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_naming_the_problem(tmp_path, pbc, spec, build, pattern) -> None:
    """Each case stops with one line matching its pattern (the file, column or key), and the
    check changes nothing it finds: every file there before (the earlier results) is intact."""
    check = build(tmp_path, pbc, spec)
    before = {k: v for k, v in _tree(tmp_path).items() if not k.endswith("job.log")}
    with pytest.raises(DataError) as err:
        check()
    message = str(err.value)
    assert "\n" not in message, message  # one line
    assert re.search(pattern, message), message
    assert "Traceback" not in message
    after = {k: v for k, v in _tree(tmp_path).items() if not k.endswith("job.log")}
    if "script_case" not in getattr(build, "__qualname__", ""):  # a failed job's own output is not an earlier result
        assert after == before


def test_good_table_features_pass_and_report_their_effect(tmp_path, pbc, spec) -> None:
    """Filters, date columns and plausibility ranges on a valid table: counted, converted, flagged (not dropped)."""
    df = pbc.copy()
    df["result"] = np.where(df.index % 50 == 0, "invalid", "ok")
    df["visit"] = (pd.Timestamp("2014-01-01") + pd.to_timedelta(df["day"], "D")).dt.strftime("%d/%m/%Y")
    df.to_csv(tmp_path / "c.csv", index=False)
    s = deep_update(
        spec,
        {
            "path": str(tmp_path / "c.csv"),
            "features": [*spec["features"], "visit"],
            "filters": [{"column": "result", "drop": ["invalid"]}, {"column": "age", "min": 0, "max": 200}],
            "dates": {"visit": {"format": "%d/%m/%Y"}},
            "ranges": {"bili": [0, 20], "visit": [0, None]},
        },
    )
    report, flags = validate(s, dataset="cohort")
    n_invalid = int((df["result"] == "invalid").sum())
    assert report["filters"][0]["removed"] == n_invalid and report["records"] == len(df) - n_invalid
    assert report["filters"][1] == {
        "filter": 1,
        "column": "age",
        "min": 0,
        "max": 200,
        "removed": 0,
        "kept": len(df) - n_invalid,
    }
    kept = df[df["result"] != "invalid"]
    # days since the patient's first visit: 'day' minus the patient's first 'day'
    assert report["dates"]["visit"]["days_min"] == 0
    assert report["dates"]["visit"]["days_max"] == (kept["day"] - kept.groupby("id")["day"].transform("min")).max()
    too_high = kept[kept["bili"] > 20]
    assert report["range_flags"]["bili"]["values"] == len(too_high) > 0
    assert report["range_flags"]["visit"]["values"] == 0
    assert sorted(flags["value"]) == sorted(too_high["bili"]) and set(flags["feature"]) == {"bili"}
    assert report["strongest_univariate_auc"][0]["auc"] < 0.99


def test_a_date_column_need_not_be_listed_among_the_features(tmp_path, pbc, spec) -> None:
    """dates: {visit: {}} alone makes visit an input (days since the patient's first record)."""
    df = pbc.assign(visit=(pd.Timestamp("2014-01-01") + pd.to_timedelta(pbc["day"], "D")).dt.strftime("%Y-%m-%d"))
    df.to_csv(tmp_path / "c.csv", index=False)
    s = deep_update(spec, {"path": str(tmp_path / "c.csv"), "dates": {"visit": {}}})
    assert "visit" not in s["features"]
    report, _ = validate(s, dataset="cohort")
    without, _ = validate({**s, "dates": {}}, dataset="cohort")
    assert report["dates"]["visit"]["days_min"] == 0 and report["input_columns"] == without["input_columns"] + 1


# --------------------------------------------------------------------------- through snakemake


def digest_tree(*paths: Path) -> dict[str, str]:
    out = {}
    for p in paths:
        files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
        for f in files:
            out[str(f)] = hashlib.sha256(f.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A results folder whose data set a good run has validated and prepared."""
    wd = tmp_path_factory.mktemp("bad_runs")
    cfg = small_config(wd / "results")
    target = str(wd / "results" / "pbc" / "records.parquet")
    run_snakemake(wd, cfg, target)
    outputs = [wd / "results" / "pbc" / "records.parquet", wd / "results" / "pbc" / "inputs.zarr"]
    return wd, cfg, target, outputs, digest_tree(*outputs)


def bad_csv(wd: Path, mutate) -> str:
    df = mutate(pd.read_csv(PBC))
    path = wd / "bad.csv"
    df.to_csv(path, index=False)
    return str(path)


SNAKEMAKE_CASES = [
    (
        "inf-values",
        lambda wd, cfg: deep_update(
            cfg, {"datasets": {"pbc": {"path": bad_csv(wd, set_rows("bili", [3, 50, 700], np.inf))}}}
        ),
        r"DataError: .*bad\.csv: feature column 'bili' has 3 non-finite or absurdly large values",
    ),
    (
        "label-in-disguise",
        lambda wd, cfg: deep_update(
            cfg,
            {
                "datasets": {
                    "pbc": {"path": bad_csv(wd, disguised_label), "features": ["age", "bili", "lab"], "categorical": []}
                }
            },
        ),
        r"DataError: .*feature 'lab' separates .*\(ROC AUC 1\.000 of the indicator lab == 45\)",
    ),
    (
        "unknown-key",
        lambda wd, cfg: deep_update(cfg, {"datasets": {"pbc": {"featurez": ["age"]}}}),
        r"ConfigError: config key datasets\.pbc has unknown key\(s\) \['featurez'\]",
    ),
]


@pytest.mark.slow
@pytest.mark.parametrize(
    "make, pattern, revert",
    [(*c[1:], i == 0) for i, c in enumerate(SNAKEMAKE_CASES)],
    ids=[c[0] for c in SNAKEMAKE_CASES],
)
def test_a_bad_rerun_stops_in_one_line_and_keeps_earlier_results(prepared, make, pattern, revert) -> None:
    wd, cfg, target, outputs, before = prepared
    proc = run_snakemake(wd, make(wd, cfg), target, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert re.search(pattern, out), out[-3000:]
    assert "Traceback" not in out and len(out) < 20_000, out[-3000:]  # no traceback, no schema dump
    assert not re.search(r"^\s*(local)?rule prepare_dataset:", out, re.M), out[-3000:]  # never started
    assert digest_tree(*outputs) == before  # the good records and inputs are untouched
    if revert:  # back to the good config: its validation stands, nothing is prepared again
        again = run_snakemake(wd, cfg, target, "-n")
        assert "Nothing to be done" in again.stdout + again.stderr


@pytest.mark.slow
@pytest.mark.skipif(
    subprocess.run([sys.executable, "-c", "import torch; assert not torch.cuda.is_available()"]).returncode != 0,
    reason="this machine has a GPU",
)
def test_cuda_without_a_gpu_stops_before_any_job(prepared) -> None:
    wd, cfg, target, outputs, before = prepared
    proc = run_snakemake(wd, {**cfg, "device": "cuda"}, target, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1 and "Traceback" not in out
    assert "ConfigError: config key device is 'cuda' but this machine has no CUDA device" in out
    assert "Job stats" not in out and digest_tree(*outputs) == before


@pytest.mark.slow
def test_one_run_per_results_folder(prepared) -> None:
    """A second run stops at once naming the first (pid, start time); a dry run still works; a
    lock left by a killed run is cleared with a message."""
    wd, cfg, target, outputs, before = prepared
    lock = wd / "results" / runlock.LOCK_FILE
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        holder = {
            "pid": other.pid,
            "host": socket.gethostname(),
            "started": "2026-01-02 03:04:05 UTC",
            "start_ticks": runlock._start_ticks(other.pid),
            "command": "snakemake --cores 8",
        }
        lock.write_text(json.dumps(holder))
        t0 = time.monotonic()
        proc = run_snakemake(wd, cfg, target, "--forcerun", "validate_dataset", check=False)
        out = proc.stdout + proc.stderr
        assert proc.returncode == 1 and "Traceback" not in out and "Job stats" not in out, out[-3000:]
        assert f"in use by another run: pid {other.pid} on {socket.gethostname()}, started 2026-01-02 03:04:05" in out
        assert time.monotonic() - t0 < 60
        dry = run_snakemake(wd, cfg, target, "--forcerun", "validate_dataset", "-n")
        assert f"is in use by run pid {other.pid}" in dry.stdout + dry.stderr
        assert json.loads(lock.read_text())["pid"] == other.pid  # neither touched the other run's lock
    finally:
        other.kill()
        other.wait()
    ok = run_snakemake(wd, cfg, target)
    said = ok.stdout + ok.stderr
    assert f"cleared the lock of results folder {str(wd / 'results')!r}: run pid {other.pid}" in said
    assert "rerun what it left unfinished with `snakemake --cores 8 --rerun-incomplete`" in said  # the recovery
    assert not lock.exists()  # released when the run ended
    assert digest_tree(*outputs) == before


@pytest.mark.slow
def test_a_changed_table_with_an_older_time_is_validated_and_prepared_again(tmp_path) -> None:
    """Validation is keyed by the table's content: a table replaced by another one whose
    modification time is older than the results is validated and prepared again (here one
    patient's id written with a leading zero: 313 patients), and going back to the first
    table finds its validation in place and prepares the first records again."""
    import os

    wd = tmp_path / "run"
    table = tmp_path / "cohort.csv"
    original = PBC.read_bytes()
    table.write_bytes(original)
    cfg = deep_update(small_config(wd / "results"), {"datasets": {"pbc": {"path": str(table)}}})
    target = str(wd / "results" / "pbc" / "records.parquet")
    run_snakemake(wd, cfg, target)
    records = wd / "results" / "pbc" / "records.parquet"
    assert pd.read_parquet(records)["patient_id"].nunique() == 312
    lines = original.split(b"\n")
    first = lines[1].split(b",", 1)[1]
    table.write_bytes(b"\n".join([lines[0], b"01," + first, *lines[2:]]))  # one record now of patient '01'
    os.utime(table, ns=(10**9, 10**9))  # 1970: older than every result
    proc = run_snakemake(wd, cfg, target)
    out = proc.stdout + proc.stderr
    assert "validate_dataset" in out and "prepare_dataset" in out, out[-3000:]
    rec = pd.read_parquet(records)
    assert rec["patient_id"].nunique() == 313 and (rec["patient_id"] == "01").sum() == 1
    assert len(list((wd / "results" / "pbc" / "validation").glob("*.json"))) == 2
    table.write_bytes(original)
    os.utime(table, ns=(10**9, 10**9))
    again = run_snakemake(wd, cfg, target)
    out = again.stdout + again.stderr
    assert "rule validate_dataset" not in out and "prepare_dataset" in out, out[-3000:]  # its report stands
    assert pd.read_parquet(records)["patient_id"].nunique() == 312


@pytest.fixture(scope="module")
def audited(tmp_path_factory):
    """A results folder with one audited experiment (record risk) of the small configuration."""
    wd = tmp_path_factory.mktemp("audited")
    cfg = small_config(wd / "results")
    exp = wd / "results" / "pbc" / "mlp"
    run_snakemake(wd, cfg, str(exp / "audit" / "record_risk.parquet"))
    return wd, cfg, exp


@pytest.mark.slow
def test_an_experiment_folder_of_other_settings_stops_the_run_before_any_job(audited) -> None:
    wd, cfg, exp = audited
    before = digest_tree(wd / "results")
    other = deep_update(cfg, {"experiments": {"mlp": {"model": {"width": 64}, "train": {"epochs": 5}}}})
    proc = run_snakemake(wd, other, str(exp / "audit" / "record_risk.parquet"), check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1 and "Traceback" not in out and "Job stats" not in out, out[-3000:]
    assert (
        f"ConfigError: config key experiments.mlp: {exp} holds the outputs of experiment 'mlp' made with other " in out
    )
    assert "experiment.model.width: 16 → 64; experiment.train.epochs: 3 → 5" in out
    assert digest_tree(wd / "results") == before  # every earlier result intact (no log written either)
    # the same settings under another name are a new experiment beside it
    renamed = deep_update(other, {})
    renamed["experiments"] = {"mlp_w64": renamed["experiments"].pop("mlp")}
    dry = run_snakemake(wd, renamed, "-n", str(wd / "results" / "pbc" / "mlp_w64" / "models" / "metrics.tsv"))
    assert "record_experiment_settings" in dry.stdout + dry.stderr


@pytest.mark.slow
def test_a_deleted_record_id_chunk_stops_the_audit_naming_the_cube(audited) -> None:
    """The issue's case: deleting the record_id chunk of a finished cube and forcing the audit gave
    rc 0 with every record_id ''. Now one line names the coordinate and the command that
    rebuilds the cube, and running that command gives the original audit back."""
    wd, cfg, exp = audited
    risk = exp / "audit" / "record_risk.parquet"
    original = pd.read_parquet(risk)
    for f in (exp / "cube.zarr" / "record_id" / "c").rglob("*"):
        if f.is_file():
            f.unlink()
    proc = run_snakemake(wd, cfg, "--force", str(risk), check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "Traceback" not in out, out[-3000:]
    line = next(x for x in out.splitlines() if "IntegrityError" in x)
    assert (
        f"{exp / 'cube.zarr'}/record_id (the cube's record_id coordinate) differs from what create_cube wrote" in line
    )
    command = line.split("rebuild it with: ", 1)[1].split(" (add your usual", 1)[0]
    assert command == f"snakemake --force {exp / 'cube.zarr'}"
    run_snakemake(wd, cfg, *command.split()[1:], str(risk))  # the named command, then the audit again
    rebuilt = pd.read_parquet(risk)
    assert (rebuilt["record_id"] != "").all()
    pd.testing.assert_frame_equal(rebuilt, original)
