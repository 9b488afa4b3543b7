"""Each data set's preset validates and dry-runs against a fixture in the published layout."""

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import xarray as xr
import yaml
from fixtures_datasets import WRITERS

REPO = Path(__file__).resolve().parents[2]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    base = tmp_path_factory.mktemp("presets")
    out = {}
    for name, write in WRITERS.items():
        (base / name).mkdir()
        write(base / name)
        out[name] = base / name
    return out


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_preset_dry_run(name, roots, tmp_path):
    preset = REPO / "config" / "presets" / f"{name}.yaml"
    cmd = SNAKEMAKE + [
        "-n",
        "--configfile",
        str(preset),
        "--config",
        f"datasets={{{name}: {{root: {roots[name]}}}}}",
        f"results={tmp_path}/results",
    ]
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert str(roots[name]) in r.stdout  # the prepare job reads the overridden root
    assert f"{tmp_path}/results/{name}/records.parquet" in r.stdout


def test_prepare_rule_dispatches_on_adapter(roots, tmp_path):
    """The prepare_dataset rule runs the PTB-XL adapter end to end (records + signals).

    The fixture has two pool patients: validation (run first) refuses a sampling in which a
    target model trains on no patient, so 4 models and a membership seed that gives each one."""
    res = tmp_path / "results"
    small = tmp_path / "small.yaml"
    small.write_text(
        yaml.safe_dump(
            {
                "results": str(res),
                "datasets": {"ptbxl": {"root": str(roots["ptbxl"]), "n_models": 4, "membership_seed": 8}},
                "experiments": {"ptbxl_resnet1d": {"models_per_job": 4}},
                "audit": {"n_targets": 2},
            }
        )
    )
    cmd = SNAKEMAKE + [
        "--cores",
        "1",
        "--configfile",
        str(REPO / "config/presets/ptbxl.yaml"),
        str(small),
        "--",
        f"{res}/ptbxl/records.parquet",
    ]
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    rec = pd.read_parquet(res / "ptbxl/records.parquet")
    ds = xr.open_zarr(res / "ptbxl/inputs.zarr")
    assert ds["signals"].shape == (len(rec), 12, 1000) and ds.attrs["modality"] == "signal"
    assert {"label_NORM", "sex", "extra_beats", "age", "split"} <= set(rec.columns)
