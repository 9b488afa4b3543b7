"""One run per results folder (workflow/mia_audit/pipeline/runlock.py), in-process: which invocations
lock, a live holder stops a second run with its pid and start time, a dead one is cleared."""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys

import pytest

from mia_audit.pipeline import runlock


def args(**kw) -> argparse.Namespace:
    base = {"dryrun": False, "report": None, "report_after_run": False, "lint": None, "executor": "local"}
    return argparse.Namespace(**{**base, **kw})


@pytest.mark.parametrize(
    "namespace, main, mode",
    [
        (args(), True, "run"),
        (args(touch=True), True, "run"),
        (args(dryrun=True), True, "dry-run"),
        (args(report="report.html"), True, "read-only"),
        (args(report="report.html", report_after_run=True), True, "run"),
        (args(lint="text"), True, "read-only"),
        (args(unlock=True), True, "read-only"),
        (args(summary=True), True, "read-only"),
        (args(containerize="dockerfile"), True, "read-only"),
        (args(), False, "job"),  # SLURM and group jobs re-read the Snakefile in --mode remote
        (None, True, "unknown"),  # the Python API: decided in onstart
    ],
)
def test_which_invocations_lock(namespace, main, mode) -> None:
    assert runlock.classify(namespace, main).mode == mode


def test_the_command_line_is_read_from_snakemakes_frame() -> None:
    namespace = args(dryrun=True)
    scope = {"__name__": "snakemake.cli", "runlock": runlock}
    exec("def args_to_api(args, parser):\n    return runlock.snakemake_cli_args()\n", scope)
    assert scope["args_to_api"](namespace, None) is namespace
    assert runlock.snakemake_cli_args() is None  # not under Snakemake's command line


def holder_of(pid: int, **kw) -> dict:
    return {
        "pid": pid,
        "host": socket.gethostname(),
        "started": "2026-01-02 03:04:05 UTC",
        "start_ticks": runlock._start_ticks(pid),
        "command": "snakemake --cores 8",
        **kw,
    }


def test_acquire_is_idempotent_and_released(tmp_path) -> None:
    path = runlock.acquire(tmp_path / "results")
    holder = json.loads(path.read_text())
    assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
    assert runlock.acquire(tmp_path / "results") == path  # the same run again (checkpoints, API)
    runlock.release(path)
    assert not path.exists()


def test_a_live_run_stops_the_second_one_by_name(tmp_path) -> None:
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock = runlock.lock_path(tmp_path)
        lock.write_text(json.dumps(holder_of(other.pid)))
        with pytest.raises(
            runlock.RunLockHeld, match=rf"in use by another run: pid {other.pid} on .*2026-01-02 03:04:05"
        ):
            runlock.acquire(tmp_path)
        inv = runlock.Invocation("dry-run")
        notes: list[str] = []
        runlock.claim(tmp_path, inv, notes.append)  # a dry run is not blocked, only told
        assert notes and f"pid {other.pid}" in notes[0]
        assert json.loads(lock.read_text())["pid"] == other.pid
    finally:
        other.kill()
        other.wait()


def test_a_dead_or_reused_pid_is_cleared_with_a_message(tmp_path) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    lock = runlock.lock_path(tmp_path)
    lock.write_text(json.dumps(holder_of(gone.pid, start_ticks=1)))
    said: list[str] = []
    runlock.acquire(tmp_path, said.append)
    assert said and f"run pid {gone.pid}" in said[0] and "no longer running" in said[0]
    assert json.loads(lock.read_text())["pid"] == os.getpid()
    runlock.release(lock)
    if runlock._start_ticks(os.getppid()) is not None:  # Linux: a live pid started at another time
        lock.write_text(json.dumps(holder_of(os.getppid(), start_ticks=runlock._start_ticks(os.getppid()) + 1)))
        runlock.acquire(tmp_path, said.append)
        assert "no longer running" in said[-1]
        runlock.release(lock)


def test_a_lock_from_another_host_is_not_guessed_at(tmp_path) -> None:
    lock = runlock.lock_path(tmp_path)
    lock.write_text(json.dumps(holder_of(1, host="login-node-7")))
    with pytest.raises(runlock.RunLockHeld, match=r"on login-node-7.*another host: if that run is gone, delete"):
        runlock.acquire(tmp_path)
    runlock.claim(tmp_path, runlock.Invocation("run", nolock=True))  # --nolock: no lock taken
    assert json.loads(lock.read_text())["host"] == "login-node-7"


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="process groups are read from /proc (Linux)")
def test_jobs_of_a_killed_snakemake_keep_the_lock_live_and_are_named(tmp_path) -> None:
    """Killing only the Snakemake process leaves its jobs running in its process group: the run
    stays live (naming them and how to stop them) until they end; then the lock is cleared with
    the exact recovery commands (--unlock first while Snakemake's own lock files remain)."""
    import signal
    import time

    # a stand-in for Snakemake: a group leader that starts a job and is then killed on its own
    leader = subprocess.Popen(
        [sys.executable, "-c", "import subprocess, sys, time; subprocess.Popen(['sleep', '60']); time.sleep(60)"],
        start_new_session=True,
    )
    try:
        for _ in range(100):
            holder = holder_of(leader.pid, pgid=leader.pid, workdir=str(tmp_path), command="snakemake --cores 2")
            if runlock.group_jobs(holder):
                break
            time.sleep(0.05)
        (job,) = runlock.group_jobs(holder)
        lock = runlock.lock_path(tmp_path / "results")
        lock.parent.mkdir()
        lock.write_text(json.dumps(holder))
        os.kill(leader.pid, signal.SIGKILL)
        leader.wait()
        assert not runlock.process_alive(holder) and runlock.holder_alive(holder)
        with pytest.raises(runlock.RunLockHeld) as err:
            runlock.acquire(tmp_path / "results")
        msg = str(err.value)
        assert "\n" not in msg and f"pids [{job}], process group {leader.pid}" in msg
        assert f"stop them with `kill -- -{leader.pid}`" in msg
        os.kill(job, signal.SIGKILL)
        for _ in range(100):  # until the job is reaped (its parent, the leader, is gone)
            if not runlock.group_jobs(holder):
                break
            time.sleep(0.05)
        locks = tmp_path / ".snakemake" / "locks"
        locks.mkdir(parents=True)
        (locks / "0.input.lock").write_text("")
        said: list[str] = []
        runlock.acquire(tmp_path / "results", said.append)
        assert "nor is any job of it" in said[0]
        assert "run `snakemake --cores 2 --unlock`, then `snakemake --cores 2 --rerun-incomplete`" in said[0]
        runlock.release(lock)
    finally:
        try:
            os.killpg(leader.pid, signal.SIGKILL)  # whatever of the group still runs
        except ProcessLookupError:
            pass
        leader.poll()
