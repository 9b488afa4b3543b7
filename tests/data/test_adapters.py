"""Each adapter on a tiny data set in its published layout: records/inputs contract and codings."""

import json

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from fixtures_datasets import write_all

from mia_audit.data.adapters import get_adapter
from mia_audit.data.adapters.imaging import load_image
from mia_audit.data.prepare import prepare
from mia_audit.data.store import read_model_inputs
from mia_audit.errors import DataError


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    base = tmp_path_factory.mktemp("raw")
    return base, write_all(base)


def run(raw, tmp_path, name, workers=1, **spec):
    base, facts = raw
    spec = {"adapter": name, "root": str(base / name), "workers": workers, "block_records": 4, **spec}
    prepare(spec, tmp_path / "records.parquet", tmp_path / "inputs.zarr")
    on_disk = pd.read_parquet(tmp_path / "records.parquet")
    ds = xr.open_zarr(tmp_path / "inputs.zarr", consolidated=True)
    # alignment and the shared contract
    assert list(on_disk["record_id"]) == list(ds["record_id"].values.astype(str))
    assert on_disk["record_id"].is_unique
    assert set(on_disk["split"].astype(str)) <= {"pool", "test"}
    # no patient is in both splits
    assert (on_disk.groupby("patient_id")["split"].nunique() == 1).all()
    assert ds.attrs["task"] in ("multiclass", "multilabel")
    names = json.loads(ds.attrs["label_names"])
    if ds.attrs["task"] == "multilabel":
        assert "label" not in on_disk
        cols = [f"label_{n}" for n in names]
        assert set(np.unique(on_disk[cols].to_numpy())) <= {0, 1}
    else:
        assert on_disk["label"].between(0, len(names) - 1).all()
    return on_disk, ds, facts[name]


def test_chexpert(raw, tmp_path):
    rec, ds, f = run(
        raw,
        tmp_path,
        "chexpert",
        workers=2,
        image_size=16,
        channels=1,
        subgroups={"race": {"column": "race"}, "sex": {"column": "sex"}},
    )
    assert len(rec) == f["n_frontal"] and rec["patient_id"].nunique() == f["patients"]
    assert set(rec.loc[rec["split"] == "test", "patient_id"]) == f["test_patients"]
    assert rec.groupby("patient_id")["race"].first().to_dict() == f["race"]
    assert ds["images"].shape == (10, 1, 16, 16) and ds["images"].dtype == np.uint8
    assert ds.attrs["modality"] == "image"
    # first record: finding j has raw value [1, 0, -1, blank][j % 4]; U-Ones → 1, 0, 1, 0
    row = rec.iloc[0]
    assert [
        row["label_No Finding"],
        row["label_Enlarged Cardiomediastinum"],
        row["label_Cardiomegaly"],
        row["label_Lung Opacity"],
    ] == [1, 0, 1, 0]
    # the stored pixels equal the decoding rule applied to the record's file
    path = raw[0] / "chexpert" / "CheXpert-v1.0-small" / rec["record_id"].iloc[0]
    np.testing.assert_array_equal(ds["images"][0].values, load_image(path, 16, 1))


def test_chexpert_u_zeros(raw, tmp_path):
    rec, _, _ = run(raw, tmp_path, "chexpert", image_size=8, options={"uncertain": "zeros"})
    assert rec.iloc[0]["label_Cardiomegaly"] == 0  # raw -1


def test_mimic_cxr(raw, tmp_path):
    rec, ds, f = run(
        raw,
        tmp_path,
        "mimic_cxr",
        image_size=16,
        subgroups={"race": {"column": "race"}, "insurance": {"column": "insurance"}},
    )
    assert len(rec) == f["n_frontal"]
    assert set(rec.loc[rec["split"] == "test", "patient_id"]) == f["test_patients"]
    assert rec.groupby("patient_id")["race"].first().to_dict() == f["race"]
    assert rec.loc[rec["patient_id"] == "10000032", "insurance"].iloc[0] == "Medicare"  # latest admission
    assert ds["images"].shape == (8, 1, 16, 16)


def test_embed_dicom_density(raw, tmp_path):
    rec, ds, f = run(raw, tmp_path, "embed", image_size=16, subgroups={"view": {"column": "view"}})
    assert len(rec) == f["n_records"] and set(rec["label"]) == f["labels"]
    assert set(rec["view"]) == {"CC", "MLO"}
    img = ds["images"].values
    assert img.shape == (12, 1, 16, 16) and img.dtype == np.uint8 and img.max() > 0


def test_dicom_monochrome1_is_inverted(tmp_path):
    from fixtures_datasets import _dicom

    _dicom(tmp_path / "m2.dcm", seed=5, monochrome1=False)
    _dicom(tmp_path / "m1.dcm", seed=5, monochrome1=True)
    a, b = load_image(tmp_path / "m2.dcm", 48, 1), load_image(tmp_path / "m1.dcm", 48, 1)
    # same pixel data; MONOCHROME1 shows it inverted: the dark band at the top becomes bright
    assert a[0, :3].mean() < 20 and b[0, :3].mean() > 235


def test_fitzpatrick_every_image_its_own_patient(raw, tmp_path):
    rec, ds, f = run(
        raw, tmp_path, "fitzpatrick17k", image_size=16, channels=3, subgroups={"skin_type": {"column": "skin_type"}}
    )
    assert len(rec) == f["n_records"] and rec["patient_id"].is_unique
    assert rec["skin_type"].value_counts().to_dict() == f["skin"]
    assert json.loads(ds.attrs["label_names"]) == ["benign", "malignant", "non-neoplastic"]
    assert ds["images"].shape == (9, 3, 16, 16)


def test_fairvision_official_test_folder(raw, tmp_path):
    rec, ds, f = run(raw, tmp_path, "fairvision", image_size=16, subgroups={"race": {"column": "race"}})
    assert len(rec) == f["n_records"] and (rec["split"] == "test").sum() == f["n_test"]
    assert set(rec["race"]) == {"Asian", "Black", "White"}
    assert ds["images"].shape == (9, 1, 16, 16)


def test_ptbxl_superclasses_and_leads(raw, tmp_path):
    rec, ds, f = run(raw, tmp_path, "ptbxl", subgroups={"sex": {"column": "sex"}, "extra": {"column": "extra_beats"}})
    assert len(rec) == f["n_records"]
    cols = ["NORM", "MI", "STTC", "CD", "HYP"]
    got = {r: {c for c in cols if row[f"label_{c}"]} for r, row in rec.set_index("record_id").iterrows()}
    assert got == f["labels"]
    # fold 10 is test; patient 15709 has a fold-10 ECG so both of its ECGs are held out
    assert set(rec.loc[rec["split"] == "test", "record_id"]) == {"1", "2", "3", "4"}
    assert rec.set_index("record_id").loc["1", "sex"] == "female"  # coded 1 = female
    assert rec.set_index("record_id").loc["2", "extra"] == "yes"
    sig = ds["signals"]
    assert sig.shape == (6, 12, 1000) and sig.dtype == np.float32
    assert list(ds["lead"].values) == ["I", "II", "III", "AVR", "AVL", "AVF", "V1", "V2", "V3", "V4", "V5", "V6"]
    # lead I of ECG n holds the constant n - 1 (checks lead order and record alignment)
    np.testing.assert_allclose(sig.values[:, 0, :].mean(axis=1), rec["record_id"].astype(int) - 1, atol=1e-3)


@pytest.mark.parametrize("source", ["benchmark", "raw"])
def test_mimic_iv_ed(raw, tmp_path, source):
    rec, ds, f = run(
        raw,
        tmp_path,
        "mimic_iv_ed",
        options={"source": source},
        subgroups={"race": {"column": "race"}, "insurance": {"column": "insurance"}},
    )
    assert len(rec) == f["n_records"] and rec["patient_id"].nunique() == f["n_patients"]
    assert rec["label"].sum() == f["hospitalised"]
    feats = list(ds["feature"].values)
    assert "triage_heartrate" in feats and "gender=F" in feats and "chiefcom_chest_pain" in feats
    pool = (rec["split"] == "pool").to_numpy()
    np.testing.assert_allclose(ds["features"].values[pool].mean(axis=0), 0, atol=1e-5)


def test_table_adapter_reads_parquet(tmp_path):
    df = pd.DataFrame({"pid": np.repeat(np.arange(10), 2), "x": np.arange(20.0), "y": np.arange(20) % 2})
    df.to_parquet(tmp_path / "t.parquet")
    spec = {
        "adapter": "table",
        "path": "t.parquet",
        "root": str(tmp_path),
        "patient_id": "pid",
        "label": {"column": "y"},
        "features": ["x"],
        "test_fraction": 0.2,
    }
    rec = prepare(spec, tmp_path / "r.parquet", tmp_path / "i.zarr")
    assert len(rec) == 20
    ds = xr.open_zarr(tmp_path / "i.zarr")
    assert ds["features"].shape == (20, 1) and read_model_inputs(tmp_path / "i.zarr")[2] == "table"
    assert get_adapter("table").modality == "table"


def test_clear_errors(raw, tmp_path):
    with pytest.raises(DataError, match="unknown adapter 'chexpurt'"):
        get_adapter("chexpurt")
    with pytest.raises(DataError, match="train.csv"):
        prepare({"adapter": "chexpert", "root": str(tmp_path)}, tmp_path / "r.parquet", tmp_path / "i.zarr")
    with pytest.raises(DataError, match="options.uncertain"):
        run(raw, tmp_path, "chexpert", options={"uncertain": "maybe"})
    with pytest.raises(DataError, match="subgroups.race.column = 'ethnic'"):
        run(raw, tmp_path, "mimic_cxr", image_size=8, subgroups={"race": {"column": "ethnic"}})
    (tmp_path / "t.xlsx").write_text("x")
    with pytest.raises(DataError, match="xlsx"):
        get_adapter("table").read_index({"path": str(tmp_path / "t.xlsx")})


def test_table_errors_name_the_file(tmp_path):
    from mia_audit.data.adapters.table import read_table

    with pytest.raises(DataError, match="does not exist"):
        read_table(tmp_path / "missing.parquet")
    (tmp_path / "bad.parquet").write_bytes(b"not parquet")
    with pytest.raises(DataError, match="bad.parquet is not a readable Parquet file"):
        read_table(tmp_path / "bad.parquet")


@pytest.mark.parametrize(
    "name, extra",
    [
        ("chexpert", {}),
        ("mimic_cxr", {}),
        ("embed", {}),
        ("fitzpatrick17k", {"test_fraction": 0.3}),
        ("fairvision", {}),
        ("ptbxl", {}),
        ("mimic_iv_ed", {}),
    ],
)
def test_validation_passes_every_published_layout(raw, name, extra) -> None:
    """The checks run before prepare (rule validate_dataset) accept each adapter's good data:
    the split, and every raw file the index names (WFDB records by their .hea/.dat)."""
    from mia_audit.data.prepare import validate

    base, _ = raw
    report, flags = validate({"adapter": name, "root": str(base / name), **extra}, dataset=name)
    assert report["pool_patients"] >= 2 and report["test_patients"] >= 1 and flags.empty
