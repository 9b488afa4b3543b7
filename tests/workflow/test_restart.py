"""Determinism and restart safety of the training stage (local runs on the CPU).

* The same config and seeds give a bit-identical confidence cube in two separate runs.
* A run killed (SIGTERM to its process group) after the first shard's weights are written
  but before all are, then restarted with --rerun-incomplete (no profile sets it: see
  profiles/local), trains only the missing shards and ends with the cube of an
  uninterrupted run.

All runs use one core, so every model trains with the same number of threads.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import yaml
from slurm_cluster import run_bounded
from workflow_config import deep_update, small_config

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
RUN_TIMEOUT_S = 240
# Three shards: Snakemake lets the job that runs when it is stopped finish, so with two the
# second shard's training could end after the stop and leave nothing to restart.
N_SHARDS = 3
EXP = "results/pbc/mlp"
# 6 models in 3 shards of 2; tiny MLPs, 3 epochs; the rest as in config/config.yaml.
CONFIG = deep_update(
    small_config(n_models=2 * N_SHARDS, per_job=2),
    {"device": "cpu", "experiments": {"mlp": {"model": {"depth": 1}, "seed": 3}}},
)
# The cube, assembled once every shard has been queried.
TARGETS = [f"{EXP}/cube.zarr"]
PREPARED = [
    "results/pbc/validation",
    "results/pbc/records.parquet",
    "results/pbc/inputs.zarr",
    "results/pbc/membership.zarr",
]


def make_workdir(path: Path) -> Path:
    path.mkdir(parents=True)
    for name in ("config", "data"):
        (path / name).symlink_to(REPO / name)
    (path / "test.yaml").write_text(yaml.safe_dump(CONFIG))
    return path


def cmd(workdir: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "snakemake", *TARGETS,
        "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
        "--profile", str(REPO / "profiles" / "local"), "--cores", "1", *extra,
        "--configfile", str(workdir / "test.yaml"),
    ]  # fmt: skip


def env() -> dict:
    e = dict(os.environ)
    e["PATH"] = str(Path(sys.executable).parent) + os.pathsep + e.get("PATH", "")
    return e


def run(workdir: Path, *extra: str) -> subprocess.CompletedProcess:
    res = run_bounded(cmd(workdir, *extra), RUN_TIMEOUT_S, env=env(), cwd=workdir)
    assert res.returncode == 0, f"snakemake failed in {workdir}:\n{res.stderr[-5000:]}"
    return res


def confidence(workdir: Path) -> np.ndarray:
    return xr.open_zarr(workdir / EXP / "cube.zarr")["confidence"].values


def job_counts(output: str) -> dict[str, int]:
    """Snakemake's 'Job stats' table: {rule: jobs}."""
    table = output.split("Job stats:", 1)[1]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M) if m.group(1) != "total"}


def copy_prepared(src: Path, dst: Path) -> None:
    """Reuse the data preparation of another run (inputs of training; mtimes kept)."""
    for rel in PREPARED:
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        if (src / rel).is_dir():
            shutil.copytree(src / rel, dst / rel, copy_function=shutil.copy2)
        else:
            shutil.copy2(src / rel, dst / rel)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """An uninterrupted run from scratch."""
    workdir = make_workdir(tmp_path_factory.mktemp("restart") / "reference")
    run(workdir)
    conf = confidence(workdir)
    assert conf.shape[0] == 2 * N_SHARDS and np.isfinite(conf).all()
    return workdir


def test_same_seed_gives_identical_cube(reference: Path, tmp_path: Path) -> None:
    again = make_workdir(tmp_path / "again")
    copy_prepared(reference, again)
    res = run(again)
    assert job_counts(res.stdout + res.stderr)["train_models"] == N_SHARDS
    np.testing.assert_array_equal(confidence(again), confidence(reference))


def test_killed_run_restarts_only_missing_shards(reference: Path, tmp_path: Path) -> None:
    workdir = make_workdir(tmp_path / "killed")
    copy_prepared(reference, workdir)
    weights = [workdir / EXP / f"models/shard_{i}.safetensors" for i in range(N_SHARDS)]
    proc = subprocess.Popen(
        cmd(workdir),
        cwd=workdir,
        env=env(),
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)
    reader.start()
    try:
        # Kill once Snakemake reports a finished train job while some weights are missing.
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while time.monotonic() < deadline and proc.poll() is None:
            trained = any("(Rule: train_models)" in line for line in list(lines))
            if trained and not all(w.exists() for w in weights):
                break
            time.sleep(0.05)
        else:
            pytest.fail(
                f"no moment with some but not all shards trained (exit {proc.poll()}):\n" + "".join(lines)[-3000:]
            )
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            # Snakemake lets running jobs end on SIGTERM; one that does not end in time is
            # killed outright, which leaves the working directory locked.
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
            run_bounded(cmd(workdir, "--unlock"), 60, env=env(), cwd=workdir)
        reader.join(timeout=10)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode != 0, "the killed run reported success"
    finished = [w for w in weights if w.exists()]
    assert 0 < len(finished) < N_SHARDS, f"{finished}\n" + "".join(lines)[-3000:]
    before = {w: w.stat().st_mtime_ns for w in finished}
    logs = {w: workdir / f"results/logs/pbc/mlp/train_models_{w.stem.split('_')[1]}.log" for w in finished}
    logs_before = {w: p.read_text() for w, p in logs.items()}

    res = run(workdir, "--rerun-incomplete")
    out = res.stdout + res.stderr
    # Only the missing shards were trained again; the finished ones are untouched.
    assert job_counts(out)["train_models"] == N_SHARDS - len(finished), out[-3000:]
    for w in finished:
        assert w.stat().st_mtime_ns == before[w], f"{w.name} was retrained"
        assert logs[w].read_text() == logs_before[w], f"{logs[w].name} was rewritten"
    assert all(w.exists() for w in weights)
    np.testing.assert_array_equal(confidence(workdir), confidence(reference))
