"""The confidence cube describes itself: record_id is its index, every variable has attributes,
label names and the caller's provenance are stored, and xarray reads it as a user expects."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from mia_audit import provenance
from mia_audit.query import cube


def small_cube(tmp_path, views=None):
    records = pd.DataFrame(
        {
            "record_id": ["p1_0", "p1_1", "p2_0", "p3_0"],
            "patient_id": ["p1", "p1", "p2", "p3"],
            "label": [0, 1, 1, 0],
            "split": ["pool", "pool", "pool", "test"],
            "sex": ["f", "f", "m", "f"],
        }
    )
    member = np.array([[1, 1, 0, 0], [0, 0, 1, 0], [1, 1, 0, 0], [0, 0, 1, 0]], dtype=bool)
    path = tmp_path / "cube.zarr"
    cube.create_cube(
        path,
        records,
        member,
        models_per_shard=2,
        views=views,
        label_names=["alive", "death"],
        attrs={"dataset": "pbc", "seeds": {"membership_seed": 3}, "created": provenance.created_at()},
    )
    return path, records, member


def test_record_id_is_the_index_and_selection_works(tmp_path):
    path, records, member = small_cube(tmp_path)
    conf = np.arange(16, dtype=np.float32).reshape(4, 4)
    cube.write_confidence(path, 0, conf[:2])
    cube.write_confidence(path, 2, conf[2:])
    ds = xr.open_zarr(path)
    assert ds["confidence"].dims == ("model", "record_id")
    assert "record_id" in ds.indexes
    row = ds.sel(record_id="p2_0")
    np.testing.assert_array_equal(row["confidence"].values, conf[:, 2])
    np.testing.assert_array_equal(row["member"].values, member[:, 2])
    assert str(row["patient_id"].values) == "p2" and str(row["sex"].values) == "m"
    two = ds.sel(record_id=["p3_0", "p1_0"])
    np.testing.assert_array_equal(two["confidence"].values, conf[:, [3, 0]])
    # position-based readers (the audit) see the same arrays as before
    np.testing.assert_array_equal(ds["confidence"].values, conf)
    np.testing.assert_array_equal(ds["record_id"].values.astype(str), records["record_id"].to_numpy())


def test_every_variable_has_attributes_label_names_and_provenance(tmp_path):
    path, _, _ = small_cube(tmp_path, views=["original", "hflip"])
    ds = xr.open_zarr(path)
    names = list(ds.variables)
    assert {"confidence", "member", "model", "record_id", "patient_id", "label", "split", "sex", "view"} <= set(names)
    for name in names:
        assert ds[name].attrs.get("long_name"), f"{name} has no long_name"
        assert ds[name].attrs.get("description"), f"{name} has no description"
    assert ds["confidence"].dims == ("model", "record_id", "view")
    assert "subgroup attribute" in ds["sex"].attrs["long_name"]
    assert json.loads(ds["label"].attrs["label_names"]) == ["alive", "death"]
    assert json.loads(ds.attrs["label_names"]) == ["alive", "death"]
    assert ds.attrs["dataset"] == "pbc"
    assert json.loads(ds.attrs["seeds"]) == {"membership_seed": 3}  # non-scalars stored as JSON
    assert ds.attrs["created"].endswith("Z")


def test_duplicated_record_ids_are_refused(tmp_path):
    records = pd.DataFrame({"record_id": ["a", "a"], "patient_id": ["p", "q"], "split": ["pool", "pool"]})
    with pytest.raises(ValueError, match="record_id"):
        cube.create_cube(tmp_path / "c.zarr", records, np.zeros((2, 2), bool), models_per_shard=1)


def test_code_version_names_the_package_and_the_commit(tmp_path):
    v = provenance.code_version()
    assert v["package"] == "mia-audit" and v["version"]
    # outside a git checkout there is no commit, and no error
    assert provenance.code_version(tmp_path)["git_commit"] is None
    assert provenance.code_version_string(tmp_path).startswith("mia-audit ")
    rows = dict(provenance.software_versions())
    assert rows["python"].count(".") == 2 and rows["numpy"] == np.__version__
    env = provenance.job_environment()  # what a train job records for the report
    assert env["host"] and env["software"]["dp-accounting"] != "not installed"
    assert {"torch CUDA build", "cuDNN", "GPU", "NVIDIA driver"} <= set(env["software"])
