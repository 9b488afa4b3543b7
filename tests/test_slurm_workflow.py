"""The audit workflow on a real SLURM cluster (profiles/slurm-local), against a local run.

Needs a running cluster with accounting (.ci/slurm/up.sh, as root); skipped with the
reason otherwise. A small audit of the bundled PBC cohort (8 models, 2 per shard, 2 shards
per SLURM job) runs once through SLURM and once locally, each in its own working
directory; same seeds → the confidence cubes and the record risk tables must be identical.
A second test checks that a failing SLURM job fails the run and names the job's log.
"""

from __future__ import annotations

import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
import yaml
from slurm_cluster import BoundedCommandError, run_bounded, slurm_available
from workflow_config import deep_update, small_config

pytestmark = pytest.mark.slurm

REPO = Path(__file__).resolve().parents[1]
RUN_TIMEOUT_S = 480
TARGET = "results/pbc/mlp/audit/record_risk.parquet"

# 8 models in 4 shards of 2; tiny MLPs, 3 epochs; the rest as in config/config.yaml.
TEST_CONFIG = deep_update(
    small_config(n_models=8, per_job=2),
    {"device": "cpu", "experiments": {"mlp": {"model": {"depth": 1}, "seed": 0}}},
)


@pytest.fixture(scope="module")
def slurm_ready() -> str:
    ok, reason = slurm_available()
    if not ok:
        pytest.skip(f"SLURM not available: {reason}")
    try:
        return metadata.version("snakemake-executor-plugin-slurm")
    except metadata.PackageNotFoundError:
        pytest.skip("snakemake-executor-plugin-slurm is not installed")


def make_workdir(path: Path, config: dict) -> Path:
    """A working directory that sees the repository's config/ and data/ (relative paths)."""
    path.mkdir(parents=True)
    for name in ("config", "data"):
        (path / name).symlink_to(REPO / name)
    (path / "test.yaml").write_text(yaml.safe_dump(config))
    return path


def snakemake_env() -> dict:
    env = dict(os.environ)
    # SLURM jobs inherit the submitting environment: the job step's snakemake and the
    # rules' scripts need the same interpreter (virtual environment) on PATH.
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    return env


def snakemake_cmd(workdir: Path, profile: str, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "snakemake", TARGET,
        "--snakefile", str(REPO / "Snakefile"),
        "--directory", str(workdir),
        "--profile", str(REPO / "profiles" / profile),
        *extra,
        "--configfile", str(workdir / "test.yaml"),
    ]  # fmt: skip


def slurm_logs(workdir: Path) -> list[Path]:
    return sorted((workdir / "logs" / "slurm").rglob("*.log"))


def describe_logs(workdir: Path, tail: int = 1500) -> str:
    parts = []
    for p in slurm_logs(workdir):
        parts.append(f"--- {p} ---\n{p.read_text(errors='replace')[-tail:]}")
    return "SLURM logs:\n" + ("\n".join(parts) if parts else "(none)")


def run_slurm(cmd: list[str], workdir: Path):
    """run_bounded, with the SLURM logs added to the error when the run times out."""
    try:
        return run_bounded(cmd, RUN_TIMEOUT_S, snakemake_env(), workdir)
    except BoundedCommandError as err:
        raise AssertionError(f"{err}\n{describe_logs(workdir)}") from None


def test_slurm_run_equals_local_run(slurm_ready: str, tmp_path: Path) -> None:
    slurm_dir = make_workdir(tmp_path / "slurm", TEST_CONFIG)
    local_dir = make_workdir(tmp_path / "local", TEST_CONFIG)
    env = snakemake_env()
    t0 = time.monotonic()
    # Both runs at once: the SLURM run mostly waits on the scheduler.
    with ThreadPoolExecutor(2) as pool:
        slurm_future = pool.submit(run_slurm, snakemake_cmd(slurm_dir, "slurm-local"), slurm_dir)
        local_future = pool.submit(
            run_bounded, snakemake_cmd(local_dir, "local", "--cores", "1"), RUN_TIMEOUT_S, env, local_dir
        )
        slurm_res, local_res = slurm_future.result(), local_future.result()
    elapsed = time.monotonic() - t0
    assert slurm_res.returncode == 0, (
        f"SLURM run exited {slurm_res.returncode} after {elapsed:.0f} s (plugin {slurm_ready}):\n"
        f"{slurm_res.stderr[-6000:]}\n{describe_logs(slurm_dir)}"
    )
    assert local_res.returncode == 0, f"local run failed:\n{local_res.stderr[-6000:]}"

    # Few submissions: ceil(4 shards / 2) shard jobs, one setup job; no shard job on its own.
    logs = slurm_logs(slurm_dir)
    kinds = [p.relative_to(slurm_dir / "logs" / "slurm").parts[0] for p in logs]
    groups = sorted(set(kinds))
    assert sum(k.startswith("group_shards") for k in kinds) == 2, f"expected 2 shard SLURM jobs: {logs}"
    assert sum(k.startswith("group_setup") for k in kinds) == 1, f"expected 1 setup SLURM job: {logs}"
    assert not {"rule_train_models", "rule_query_models", "rule_prepare_dataset"} & set(kinds), logs

    # Every SLURM job completed according to the accounting database.
    job_ids = [p.stem for p in logs]
    sacct = run_bounded(["sacct", "-X", "-n", "-P", "-j", ",".join(job_ids), "-o", "JobIDRaw,State"], 30)
    states = dict(line.split("|") for line in sacct.stdout.splitlines() if line.strip())
    assert states == {j: "COMPLETED" for j in job_ids}, f"{states}\n{describe_logs(slurm_dir)}"

    # Same seeds → identical confidences and record risk.
    cube_s = xr.open_zarr(slurm_dir / "results/pbc/mlp/cube.zarr")
    cube_l = xr.open_zarr(local_dir / "results/pbc/mlp/cube.zarr")
    conf_s, conf_l = cube_s["confidence"].values, cube_l["confidence"].values
    assert conf_s.shape == (8, cube_l.sizes["record"])
    assert np.isfinite(conf_s).all(), "some confidences were never written"
    np.testing.assert_array_equal(conf_s, conf_l)
    np.testing.assert_array_equal(cube_s["member"].values, cube_l["member"].values)
    risk_s = pd.read_parquet(slurm_dir / TARGET)
    risk_l = pd.read_parquet(local_dir / TARGET)
    pd.testing.assert_frame_equal(risk_s, risk_l, check_exact=True)
    print(f"plugin {slurm_ready}: SLURM and local runs took {elapsed:.1f} s together; SLURM jobs {groups}")


def test_failed_slurm_job_fails_run_and_names_its_log(slurm_ready: str, tmp_path: Path) -> None:
    """A data set column that does not exist makes prepare_dataset fail inside its SLURM job."""
    config = yaml.safe_load(yaml.safe_dump(TEST_CONFIG))
    features = ["age", "sex", "no_such_column"]
    config["datasets"]["pbc"]["features"] = features
    workdir = make_workdir(tmp_path / "failing", config)
    cmd = snakemake_cmd(workdir, "slurm-local")
    cmd[3] = "results/pbc/records.parquet"  # only the failing job
    res = run_slurm(cmd, workdir)
    out = res.stdout + res.stderr
    assert res.returncode != 0, f"run with a failing job exited 0:\n{out[-4000:]}"
    logs = slurm_logs(workdir)
    assert len(logs) == 1, f"expected the one failed job's SLURM log, got {logs}"
    # The failure report names the SLURM log, which holds the job's own error message.
    assert str(logs[0]) in out, f"SLURM log {logs[0]} not named in the output:\n{out[-4000:]}"
    assert "no_such_column" in logs[0].read_text(), describe_logs(workdir)
    sacct = run_bounded(["sacct", "-X", "-n", "-P", "-j", logs[0].stem, "-o", "State"], 30)
    assert sacct.stdout.split()[0] == "FAILED", sacct.stdout
