"""The workflow without a shared file system: every job sees only the files it declares.

Snakemake's storage plugin for local files (snakemake-storage-plugin-fs) stands in for remote
storage: with `--default-storage-provider fs --shared-fs-usage none` each job's inputs are
copied to a local copy before it runs and its outputs uploaded after it, and the local copies
are removed. A job that wrote into another job's output (the query jobs into the cube, before
the cube was assembled from the shards' own outputs) or read a file it did not declare (the
data set by its configured path) would fail or lose its writes. A small audit runs that way
and, at the same time, the conventional way; the cubes and record risk tables must be identical.
"""

from __future__ import annotations

import os
import shutil
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
import yaml
from slurm_cluster import run_bounded
from workflow_config import deep_update, small_config

pytestmark = pytest.mark.slow  # two small audits (minutes)

REPO = Path(__file__).resolve().parents[2]
TARGET = "results/pbc/mlp/audit/record_risk.parquet"


def test_audit_without_shared_file_system_equals_the_shared_one(tmp_path: Path) -> None:
    pytest.importorskip("snakemake_storage_plugin_fs")
    config = deep_update(small_config(results="results", n_models=8, per_job=4), {"device": "cpu"})
    config["datasets"]["pbc"]["path"] = "data/pbcseq.csv"  # relative: inside the storage
    runs = {}
    for name in ("storage", "shared"):
        wd = tmp_path / name
        (wd / "data").mkdir(parents=True)
        (wd / "config.yaml").write_text(yaml.safe_dump(config))
        runs[name] = wd
    remote = tmp_path / "remote"
    (remote / "data").mkdir(parents=True)
    shutil.copyfile(REPO / "data" / "pbcseq.csv", remote / "data" / "pbcseq.csv")
    shutil.copyfile(REPO / "data" / "pbcseq.csv", runs["shared"] / "data" / "pbcseq.csv")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}

    def snakemake(wd: Path, *extra: str):
        cmd = [sys.executable, "-m", "snakemake", TARGET, "--snakefile", str(REPO / "Snakefile"),
               "--configfile", "config.yaml", "--cores", "1", *extra]  # fmt: skip
        return run_bounded(cmd, 900, env=env, cwd=wd)

    storage = ["--default-storage-provider", "fs", "--default-storage-prefix", str(remote), "--shared-fs-usage", "none"]
    with ThreadPoolExecutor(2) as pool:
        futures = {
            "storage": pool.submit(snakemake, runs["storage"], *storage),
            "shared": pool.submit(snakemake, runs["shared"]),
        }
        results = {name: f.result() for name, f in futures.items()}
    for name, res in results.items():
        assert res.returncode == 0, f"{name} run failed:\n{(res.stdout + res.stderr)[-6000:]}"
    out = results["storage"].stdout + results["storage"].stderr
    assert "(retrieve from storage)" in out and "(send to storage)" in out  # the jobs went through the storage
    assert "rule assemble_cube:" in out or "localrule assemble_cube:" in out
    # the results exist in the storage only; the working directory holds no cube
    assert (remote / TARGET).is_file() and not (runs["storage"] / "results/pbc/mlp/cube.zarr").exists()
    cube_s = xr.open_zarr(remote / "results/pbc/mlp/cube.zarr")["confidence"].values
    cube_l = xr.open_zarr(runs["shared"] / "results/pbc/mlp/cube.zarr")["confidence"].values
    assert cube_s.shape == (8, 1945) and np.isfinite(cube_s).all()
    np.testing.assert_array_equal(cube_s, cube_l)
    pd.testing.assert_frame_equal(
        pd.read_parquet(remote / TARGET), pd.read_parquet(runs["shared"] / TARGET), check_exact=True
    )
