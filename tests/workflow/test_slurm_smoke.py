"""End-to-end check that Snakemake can run jobs on the local SLURM cluster.

Needs a running cluster with accounting (.ci/slurm/up.sh, as root); skipped
with the reason otherwise. Uses snakemake-executor-plugin-slurm with its
default, sacct-based job status checks.
"""

from __future__ import annotations

import os
import sys
import textwrap
import time
from datetime import datetime
from importlib import metadata
from pathlib import Path

import pytest
from slurm_cluster import default_partition, run_bounded, slurm_available

# a real cluster and minutes of wall time: outside the fast tier (-m "not slow")
pytestmark = [pytest.mark.slurm, pytest.mark.slow]

SNAKEMAKE_TIMEOUT_S = 240

SNAKEFILE = textwrap.dedent(
    """
    rule all:
        input: "results/second.txt"

    rule smoke_first:
        output: "results/first.txt"
        shell: "hostname > {output}; echo first >> {output}"

    rule smoke_second:
        input: "results/first.txt"
        output: "results/second.txt"
        shell: "cat {input} > {output}; echo second >> {output}"
    """
)


@pytest.fixture(scope="module")
def slurm_ready() -> str:
    ok, reason = slurm_available()
    if not ok:
        pytest.skip(f"SLURM not available: {reason}")
    try:
        version = metadata.version("snakemake-executor-plugin-slurm")
    except metadata.PackageNotFoundError:
        pytest.skip("snakemake-executor-plugin-slurm is not installed")
    return version


def test_two_rule_workflow_runs_through_slurm(slurm_ready: str, tmp_path: Path) -> None:
    partition = default_partition()
    (tmp_path / "Snakefile").write_text(SNAKEFILE)
    env = dict(os.environ)
    # Jobs inherit the submitting environment: the interpreter's bin directory
    # (the virtual environment) must be on PATH for the job step's snakemake.
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    # sacct -S takes local time; a little slack for clock granularity.
    start = datetime.fromtimestamp(time.time() - 5).strftime("%Y-%m-%dT%H:%M:%S")
    cmd = [
        sys.executable, "-m", "snakemake",
        "--executor", "slurm",
        "--jobs", "2",
        "--default-resources", f"slurm_partition={partition}", "mem_mb=500", "runtime=5",
        "--slurm-logdir", str(tmp_path / "slurm_logs"),
        "--slurm-keep-successful-logs",
        "--slurm-init-seconds-before-status-checks", "2",
        "--latency-wait", "10",
        "--directory", str(tmp_path),
    ]  # fmt: skip
    t0 = time.monotonic()
    res = run_bounded(cmd, SNAKEMAKE_TIMEOUT_S, env=env, cwd=tmp_path)
    elapsed = time.monotonic() - t0
    assert res.returncode == 0, (
        f"snakemake exited {res.returncode} after {elapsed:.0f} s (plugin {slurm_ready}):\n{res.stderr[-6000:]}"
    )
    second = (tmp_path / "results" / "second.txt").read_text().split()
    assert second[-2:] == ["first", "second"], second

    # Both rules ran as SLURM jobs and the accounting database knows them.
    sacct = run_bounded(
        ["sacct", "-X", "-n", "-P", "-S", start, "-o", "JobIDRaw,JobName,State,Partition"],
        30,
    )
    assert sacct.returncode == 0, sacct.stderr
    rows = [line.split("|") for line in sacct.stdout.splitlines() if line.strip()]
    logdir = tmp_path / "slurm_logs"
    logs = sorted(p.relative_to(logdir) for p in logdir.rglob("*.log"))
    rule_dirs = {p.parts[0] for p in logs}
    assert rule_dirs == {"rule_smoke_first", "rule_smoke_second"}, logs
    job_ids = {p.stem for p in logs}
    ours = {r[0]: r for r in rows if r[0] in job_ids}
    assert set(ours) == job_ids, f"sacct rows {rows} lack jobs {job_ids}"
    assert all(r[2] == "COMPLETED" and r[3] == partition for r in ours.values()), ours
    print(f"plugin {slurm_ready}: snakemake via SLURM took {elapsed:.1f} s; jobs {sorted(ours)}")


def test_run_bounded_kills_process_group_on_timeout(tmp_path: Path) -> None:
    """The timeout kills grandchildren too and reports the captured output."""
    from slurm_cluster import BoundedCommandError

    marker = tmp_path / "grandchild.pid"
    script = f"echo started; sleep 30 & echo $! > {marker}; wait"
    t0 = time.monotonic()
    with pytest.raises(BoundedCommandError) as info:
        run_bounded(["bash", "-c", script], 1.5)
    assert time.monotonic() - t0 < 10
    assert "started" in info.value.stdout
    assert "1.5 s" in str(info.value)
    pid = int(marker.read_text())
    for _ in range(50):  # reaped by init shortly after SIGKILL
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        stat = Path(f"/proc/{pid}/stat")
        if stat.exists() and stat.read_text().split()[2] == "Z":  # zombie: dead
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"grandchild sleep (pid {pid}) survived the timeout")


def test_run_bounded_returns_completed_process(tmp_path: Path) -> None:
    res = run_bounded(["bash", "-c", "pwd; echo oops >&2; exit 3"], 10, cwd=tmp_path)
    assert res.returncode == 3
    assert res.stdout.strip() == str(tmp_path)
    assert res.stderr.strip() == "oops"
