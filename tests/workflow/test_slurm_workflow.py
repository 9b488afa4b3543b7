"""The audit workflow on a real SLURM cluster, the cluster user's way, against a local run.

Needs a running cluster with accounting (.ci/slurm/up.sh, as root); skipped with the
reason otherwise. The site profile is installed by the documented command
(`python -m mia_audit.pipeline.site_profile --partition debug --account mia`) into a temporary
config home (XDG_CONFIG_HOME) and every run says `snakemake --profile slurm`, so the
workflow profile (profiles/default: job groups) is loaded by Snakemake itself. Added on the
command line only what this 2-CPU test node needs: `--cores 2` and short status-check waits.

A small audit of the bundled PBC cohort (8 models, 2 per shard, one CPU per job) runs once
through SLURM and once locally; same seeds → the confidence cubes and the record risk tables
must be identical, and the SLURM run makes three submissions (setup, the 4 shards, the
audit). A second test checks that a failing job is retried with more memory and time (the
template's `retries: 2`), then fails the run naming its SLURM log.
"""

from __future__ import annotations

import os
import re
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

# a real cluster and minutes of wall time: outside the fast tier (-m "not slow")
pytestmark = [pytest.mark.slurm, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
RUN_TIMEOUT_S = 900
TARGET = "results/pbc/mlp/audit/record_risk.parquet"

# 8 models in 4 shards of 2; tiny MLPs, 3 epochs, one CPU per job; the rest as in config/config.yaml.
TEST_CONFIG = deep_update(
    small_config(n_models=8, per_job=2),
    {
        "device": "cpu",
        "experiments": {"mlp": {"model": {"depth": 1}, "seed": 0}},
        "cluster": {"cpus_per_job": 1, "retry_growth": 2.0},
    },
)
#: what this small test node needs besides the installed profile: at most its 2 CPUs per
#: (group) job, so that the shard group runs two one-CPU shards side by side; quick status checks
TEST_NODE_ARGS = [
    "--cores", "2",
    "--slurm-init-seconds-before-status-checks", "2",
    "--seconds-between-status-checks", "3",
    "--latency-wait", "10",
]  # fmt: skip


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


@pytest.fixture(scope="module")
def config_home(tmp_path_factory) -> Path:
    """A config home with the site profile `slurm`, installed by the documented command."""
    home = tmp_path_factory.mktemp("xdg")
    cmd = [sys.executable, "-m", "mia_audit.pipeline.site_profile", "--partition", "debug", "--account", "mia"]
    res = run_bounded(cmd, 60, env={**os.environ, "XDG_CONFIG_HOME": str(home)})
    assert res.returncode == 0, res.stderr
    return home


def snakemake_env(config_home: Path | None = None) -> dict:
    env = dict(os.environ)
    # SLURM jobs inherit the submitting environment: the job step's snakemake and the
    # rules' scripts need the same interpreter (virtual environment) on PATH.
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    if config_home is not None:
        env["XDG_CONFIG_HOME"] = str(config_home)
    return env


def snakemake_cmd(workdir: Path, profile: str, *extra: str, target: str = TARGET) -> list[str]:
    """`snakemake --profile PROFILE` (a name, as a user types it) in ``workdir``."""
    return [
        sys.executable, "-m", "snakemake", target,
        "--snakefile", str(REPO / "Snakefile"),
        "--directory", str(workdir),
        "--profile", profile,
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


def run_slurm(cmd: list[str], workdir: Path, config_home: Path):
    """run_bounded, with the SLURM logs added to the error when the run times out."""
    try:
        return run_bounded(cmd, RUN_TIMEOUT_S, snakemake_env(config_home), workdir)
    except BoundedCommandError as err:
        raise AssertionError(f"{err}\n{describe_logs(workdir)}") from None


def test_slurm_run_equals_local_run(slurm_ready: str, config_home: Path, tmp_path: Path) -> None:
    slurm_dir = make_workdir(tmp_path / "slurm", TEST_CONFIG)
    local_dir = make_workdir(tmp_path / "local", TEST_CONFIG)
    env = snakemake_env()
    t0 = time.monotonic()
    # Both runs at once: the SLURM run mostly waits on the scheduler.
    with ThreadPoolExecutor(2) as pool:
        slurm_future = pool.submit(
            run_slurm, snakemake_cmd(slurm_dir, "slurm", *TEST_NODE_ARGS), slurm_dir, config_home
        )
        local_future = pool.submit(
            run_bounded,
            snakemake_cmd(local_dir, str(REPO / "profiles" / "local"), "--cores", "1"),
            RUN_TIMEOUT_S,
            env,
            local_dir,
        )
        slurm_res, local_res = slurm_future.result(), local_future.result()
    elapsed = time.monotonic() - t0
    assert slurm_res.returncode == 0, (
        f"SLURM run exited {slurm_res.returncode} after {elapsed:.0f} s (plugin {slurm_ready}):\n"
        f"{slurm_res.stderr[-6000:]}\n{describe_logs(slurm_dir)}"
    )
    assert local_res.returncode == 0, f"local run failed:\n{local_res.stderr[-6000:]}"
    out = slurm_res.stdout + slurm_res.stderr
    assert re.search(r"Using profiles? slurm and workflow specific profile", out), out[-3000:]

    # Few submissions: the setup group, one job for the 4 shards (group-components 4) and the
    # audit group; the light job (model metrics) ran locally, no rule ran on its own.
    logs = slurm_logs(slurm_dir)
    kinds = [p.relative_to(slurm_dir / "logs" / "slurm").parts[0] for p in logs]
    groups = sorted(set(kinds))
    # log folders are named group_<group>_<rules of the group job>
    prefixes = ("group_setup_", "group_shards_", "group_audit_")
    matched = sorted(p for k in kinds for p in prefixes if k.startswith(p))
    assert len(kinds) == 3 and matched == sorted(prefixes), f"SLURM jobs: {logs}"
    assert "collect_model_metrics" in out and (slurm_dir / "results/pbc/mlp/models/metrics.tsv").exists()

    # Every SLURM job completed according to the accounting database.
    job_ids = [p.stem for p in logs]
    sacct = run_bounded(["sacct", "-X", "-n", "-P", "-j", ",".join(job_ids), "-o", "JobIDRaw,State"], 30)
    states = dict(line.split("|") for line in sacct.stdout.splitlines() if line.strip())
    assert states == {j: "COMPLETED" for j in job_ids}, f"{states}\n{describe_logs(slurm_dir)}"

    # Same seeds → identical confidences and record risk.
    cube_s = xr.open_zarr(slurm_dir / "results/pbc/mlp/cube.zarr")
    cube_l = xr.open_zarr(local_dir / "results/pbc/mlp/cube.zarr")
    conf_s, conf_l = cube_s["confidence"].values, cube_l["confidence"].values
    assert conf_s.shape == (8, cube_l.sizes["record_id"])
    assert np.isfinite(conf_s).all(), "some confidences were never written"
    np.testing.assert_array_equal(conf_s, conf_l)
    np.testing.assert_array_equal(cube_s["member"].values, cube_l["member"].values)
    risk_s = pd.read_parquet(slurm_dir / TARGET)
    risk_l = pd.read_parquet(local_dir / TARGET)
    pd.testing.assert_frame_equal(risk_s, risk_l, check_exact=True)
    print(f"plugin {slurm_ready}: SLURM and local runs took {elapsed:.1f} s together; SLURM jobs {groups}")


def test_failed_job_is_retried_with_more_resources_then_fails_naming_its_log(
    slurm_ready: str, config_home: Path, tmp_path: Path
) -> None:
    """prepare_dataset fails inside its SLURM job: it is retried with more memory and time, then
    the run fails naming the job's SLURM log.

    Every check of the data runs before any submission (validate_dataset, a local rule), so the
    failure is made the way it reaches a cluster job: the data file is validated, then replaced by
    a copy without a used column that keeps the validated file's modification time (as `cp -p` or
    `rsync -a` of an older copy would), so Snakemake does not validate again and the adapter's own
    column check fails in the job."""
    import shutil

    config = yaml.safe_load(yaml.safe_dump(TEST_CONFIG))
    config["datasets"]["pbc"]["path"] = "cohort.csv"
    workdir = make_workdir(tmp_path / "failing", config)
    cohort = workdir / "cohort.csv"
    shutil.copyfile(REPO / "data" / "pbcseq.csv", cohort)
    target = "results/pbc/records.parquet"
    validate = [
        sys.executable, "-m", "snakemake", target, "--until", "validate_dataset", "--cores", "1",
        "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
        "--configfile", str(workdir / "test.yaml"),
    ]  # fmt: skip
    res = run_bounded(validate, 300, snakemake_env(), workdir)
    assert res.returncode == 0, (res.stdout + res.stderr)[-4000:]
    assert list((workdir / "results/pbc/validation").glob("*.json")), "validation report not written"
    stat = cohort.stat()
    pd.read_csv(cohort).drop(columns=["albumin"]).to_csv(cohort, index=False)
    os.utime(cohort, ns=(stat.st_atime_ns, stat.st_mtime_ns))

    cmd = snakemake_cmd(workdir, "slurm", *TEST_NODE_ARGS, target=target)
    res = run_slurm(cmd, workdir, config_home)
    out = res.stdout + res.stderr
    assert res.returncode != 0, f"run with a failing job exited 0:\n{out[-4000:]}"
    assert "validate_dataset" not in out.split("Job stats:")[-1], "the data set was validated again"
    logs = slurm_logs(workdir)
    assert len(logs) == 3, f"expected the first attempt and 2 retries (template retries: 2), got {logs}"
    # The failure report names the SLURM log, which holds the job's own error message.
    last = max(logs, key=lambda p: int(p.stem))
    assert str(last) in out, f"SLURM log {last} not named in the output:\n{out[-4000:]}"
    assert "albumin" in last.read_text(), describe_logs(workdir)
    ids = ",".join(sorted((p.stem for p in logs), key=int))
    sacct = run_bounded(["sacct", "-X", "-n", "-P", "-j", ids, "-o", "JobIDRaw,State,ReqMem,TimelimitRaw"], 30)
    rows = [line.split("|") for line in sacct.stdout.splitlines() if line.strip()]
    assert [r[1] for r in rows] == ["FAILED"] * 3, sacct.stdout
    mem = [int(re.sub(r"\D", "", r[2])) for r in rows]
    minutes = [int(r[3]) for r in rows]
    # cluster.retry_growth 2: each attempt asks for twice the memory and time of the one before
    assert mem[1] == pytest.approx(2 * mem[0], rel=0.01) and mem[2] == pytest.approx(4 * mem[0], rel=0.01), rows
    assert minutes[0] < minutes[1] < minutes[2], rows
