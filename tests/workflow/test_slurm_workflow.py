"""The audit workflow on a real SLURM cluster, the cluster user's way, against a local run.

Needs a running cluster with accounting (.ci/slurm/up.sh, as root); skipped with the
reason otherwise. The site profile is installed by the documented command
(`python -m mia_audit.pipeline.site_profile --partition debug --account mia`) into a temporary
config home (XDG_CONFIG_HOME); it writes the `cores` the test node has (2).

1. The workflow deployed as a module with snakedeploy (tests/deployment.py), its library
   installed from the deployed source, runs a small audit of the bundled PBC cohort (8 models,
   2 per shard) as typed in the deployed folder: `snakemake --profile slurm`, nothing else.
   The same audit runs locally from the checkout; same seeds → identical confidence cubes and
   record risk tables. The SLURM run makes three submissions (setup, the 4 shards, the audit),
   and sacct shows that none asked for more than twice what it used plus the stated margins
   (slurm.Usage.within: 500 MB; 5 minutes and one minute per job of the group).
2. A failing job is retried with more memory and time (the template's `retries: 2`), then
   fails the run naming its SLURM log.
3. A GPU request on this cluster without GPUs stops before any submission with the one line
   docs/hpc.md shows; a submission sbatch rejects (an unknown reservation) fails at once, not retried,
   with sbatch's own error in the group job's failure message.
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
from deployment import deploy, install_library, source_copy, write_config
from slurm_cluster import BoundedCommandError, run_bounded, slurm_available
from workflow_config import deep_update, small_config

from mia_audit.pipeline import slurm

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
#: quicker status checks for the tests that check failures (the main run is as typed)
QUICK_STATUS = [
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


def slurm_logdir(workdir: Path) -> Path:
    """SLURM's job logs of a run: {results}/logs/slurm (the test configs' results: results/)."""
    return workdir / "results" / "logs" / "slurm"


def slurm_logs(workdir: Path) -> list[Path]:
    return sorted(p for p in slurm_logdir(workdir).rglob("*.log") if p.stem.isdigit())


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


def deployed_workdir(tmp_path: Path, config: dict) -> tuple[Path, dict]:
    """A snakedeploy deployment of the workflow with ``config`` (results/ inside it), and the
    environment whose PYTHONPATH holds the library installed from the deployed source."""
    source = source_copy(tmp_path / "source")
    dest = tmp_path / "deployed"
    deploy(source, dest)
    write_config(dest, config)
    site = install_library(source, tmp_path / "site")
    return dest, {"PYTHONPATH": str(site)}


def test_deployed_slurm_run_as_typed_equals_local_run(slurm_ready: str, config_home: Path, tmp_path: Path) -> None:
    slurm_dir, extra_env = deployed_workdir(tmp_path / "slurm", TEST_CONFIG)
    local_dir = make_workdir(tmp_path / "local", TEST_CONFIG)
    env = snakemake_env()
    slurm_env = {**snakemake_env(config_home), **extra_env}
    as_typed = [sys.executable, "-m", "snakemake", "--profile", "slurm"]  # `snakemake --profile slurm`
    t0 = time.monotonic()
    # Both runs at once: the SLURM run mostly waits on the scheduler.
    with ThreadPoolExecutor(2) as pool:
        slurm_future = pool.submit(run_bounded, as_typed, RUN_TIMEOUT_S, slurm_env, slurm_dir)
        local_future = pool.submit(
            run_bounded,
            snakemake_cmd(local_dir, str(REPO / "profiles" / "local"), "--cores", "1"),
            RUN_TIMEOUT_S,
            env,
            local_dir,
        )
        try:
            slurm_res, local_res = slurm_future.result(), local_future.result()
        except BoundedCommandError as err:
            raise AssertionError(f"{err}\n{describe_logs(slurm_dir)}") from None
    elapsed = time.monotonic() - t0
    assert slurm_res.returncode == 0, (
        f"SLURM run exited {slurm_res.returncode} after {elapsed:.0f} s (plugin {slurm_ready}):\n"
        f"{slurm_res.stderr[-6000:]}\n{describe_logs(slurm_dir)}"
    )
    assert local_res.returncode == 0, f"local run failed:\n{local_res.stderr[-6000:]}"
    out = slurm_res.stdout + slurm_res.stderr
    assert re.search(r"Using profiles? slurm and workflow specific profile profiles/default", out), out[-3000:]
    assert "Shell command: None" not in out

    # Few submissions: the setup group, one job for the 4 shards (group-components 4) and the
    # audit group; the light job (model metrics) ran locally, no rule ran on its own.
    logs = slurm_logs(slurm_dir)
    kinds = [p.relative_to(slurm_logdir(slurm_dir)).parts[0] for p in logs]
    groups = sorted(set(kinds))
    # log folders are named group_<group>_<rules of the group job>
    prefixes = ("group_setup_", "group_shards_", "group_audit_")
    matched = sorted(p for k in kinds for p in prefixes if k.startswith(p))
    assert len(kinds) == 3 and matched == sorted(prefixes), f"SLURM jobs: {logs}"
    assert "collect_model_metrics" in out and (slurm_dir / "results/pbc/mlp/models/metrics.tsv").exists()

    # Every SLURM job completed, and asked for what it used: at least its use, at most twice its
    # use plus the margins (slurm.Usage.within); a group job asks for one job's CPUs.
    usages = slurm.sacct_usage(slurm.logged_jobs(slurm_logdir(slurm_dir)))
    table = slurm.usage_table(usages)
    print(f"requested against used (sacct), plugin {slurm_ready}:\n{table}")
    assert [u.state for u in usages] == ["COMPLETED"] * 3, f"{table}\n{describe_logs(slurm_dir)}"
    for u in usages:
        assert not u.within(), f"{u.name} asked for too much: {u.within()}\n{table}"
        assert u.req_minutes >= u.used_minutes and u.req_mem_mb >= u.max_rss_mb, table
        assert u.req_cpus == 1 and u.req_gpus == 0, table  # one-thread MLP jobs, no GPU asked for
    assert {u.steps for u in usages if u.name.startswith("group_shards_")} == {8}, table  # 4 × (train + query)

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

    cmd = snakemake_cmd(workdir, "slurm", *QUICK_STATUS, target=target)
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


def test_gpu_request_without_gpus_stops_before_submitting(slurm_ready: str, config_home: Path, tmp_path: Path) -> None:
    """cluster.gpu: true on this cluster without GPUs: the one line of docs/hpc.md, nothing submitted."""
    workdir = make_workdir(tmp_path / "gpu", TEST_CONFIG)
    cmd = snakemake_cmd(workdir, "slurm", "--config", "cluster={gpu: true}")
    res = run_slurm(cmd, workdir, config_home)
    out = res.stdout + res.stderr
    assert res.returncode != 0 and "submitted" not in out, out[-3000:]
    line = next((ln for ln in out.splitlines() if "config key cluster.gpu asks for" in ln), None)
    assert line is not None, out[-3000:]
    assert line.startswith("ConfigError: ") and "SLURM partition 'debug' has no node with them" in line, line
    assert line.removeprefix("ConfigError: ") in (REPO / "docs" / "hpc.md").read_text(), f"not as documented: {line}"
    assert not slurm_logs(workdir)


def test_rejected_group_submission_fails_once_with_sbatch_error(
    slurm_ready: str, config_home: Path, tmp_path: Path
) -> None:
    """A reservation that does not exist: sbatch rejects the setup group's submission. The failure message
    holds sbatch's error, the group is not resubmitted (the profile's retries: 2 are for jobs that
    ran), and no SLURM job exists."""
    workdir = make_workdir(tmp_path / "reservation", TEST_CONFIG)
    cmd = snakemake_cmd(
        workdir, "slurm", "--slurm-reservation", "no_such", *QUICK_STATUS, target="results/pbc/records.parquet"
    )
    res = run_slurm(cmd, workdir, config_home)
    out = res.stdout + res.stderr
    assert res.returncode != 0, out[-3000:]
    line = next((ln for ln in out.splitlines() if ln.startswith("Error in group setup: ")), None)
    assert (
        line is not None and "sbatch: error: Batch job submission failed: Requested reservation is invalid" in line
    ), out[-4000:]
    assert "not retried" in out and "Trying to restart" not in out, out[-4000:]
    assert out.count("Error in group setup: SLURM sbatch failed") == 1, out[-4000:]  # one submission
    assert not slurm_logs(workdir)
