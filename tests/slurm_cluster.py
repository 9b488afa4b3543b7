"""Helpers for tests that need a local SLURM cluster (see .ci/slurm/up.sh).

Not a test module: import it from tests, e.g. ``from slurm_cluster import
slurm_available, run_bounded`` (the tests directory is on ``sys.path`` under
pytest's default rootdir-based import mode).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Mapping, Sequence

# Seconds allowed for each query command used by slurm_available().
QUERY_TIMEOUT_S = 15


class BoundedCommandError(RuntimeError):
    """A command run by :func:`run_bounded` timed out.

    Attributes carry the command, the limit and whatever output was captured.
    """

    def __init__(self, cmd: Sequence[str], timeout_s: float, stdout: str, stderr: str):
        self.cmd = list(cmd)
        self.timeout_s = timeout_s
        self.stdout = stdout
        self.stderr = stderr
        super().__init__(
            f"command {self.cmd!r} did not finish within {timeout_s} s; its process "
            f"group was killed.\n--- stdout (last 4000 chars) ---\n{stdout[-4000:]}"
            f"\n--- stderr (last 4000 chars) ---\n{stderr[-4000:]}"
        )


def run_bounded(
    cmd: Sequence[str],
    timeout_s: float,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
) -> subprocess.CompletedProcess:
    """Run ``cmd`` in its own process group with a hard time limit.

    Returns the completed process (text stdout/stderr captured; the exit status
    is not checked). On timeout the whole process group gets SIGKILL, so
    children such as snakemake's status polling cannot outlive the call, and
    :class:`BoundedCommandError` is raised with the output captured so far.
    """
    if timeout_s <= 0:
        raise ValueError(f"timeout_s must be positive, got {timeout_s!r}")
    proc = subprocess.Popen(
        list(cmd),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=None if env is None else dict(env),
        cwd=cwd,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        stdout, stderr = proc.communicate()
        raise BoundedCommandError(cmd, timeout_s, stdout or "", stderr or "") from None
    except BaseException:
        # e.g. KeyboardInterrupt: never leave the group behind.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def _query(cmd: Sequence[str]) -> tuple[bool, str]:
    """Run a short SLURM query; (True, stdout) or (False, reason)."""
    try:
        res = run_bounded(cmd, QUERY_TIMEOUT_S)
    except (BoundedCommandError, OSError) as exc:
        return False, f"{' '.join(cmd)!r} failed: {exc}"
    if res.returncode != 0:
        return False, (f"{' '.join(cmd)!r} exited with {res.returncode}: {(res.stderr or res.stdout).strip()[-500:]}")
    return True, res.stdout


def slurm_available() -> tuple[bool, str]:
    """Whether a usable SLURM cluster answers on this machine.

    True when ``sinfo`` lists at least one node in state idle and ``sacct``
    (the accounting database, needed by the Snakemake SLURM executor's status
    checks) answers. Otherwise False with the reason.
    """
    for tool in ("sinfo", "sacct", "sbatch"):
        if shutil.which(tool) is None:
            return False, f"{tool} not found on PATH (run .ci/slurm/up.sh as root)"
    ok, out = _query(["sinfo", "-h", "-o", "%T"])
    if not ok:
        return False, out
    states = [s.strip() for s in out.split() if s.strip()]
    if not any(s.startswith("idle") for s in states):
        return False, f"no idle SLURM node (sinfo states: {states or 'none'})"
    ok, out = _query(["sacct", "-n", "-X", "-S", "now-1minute"])
    if not ok:
        return False, f"SLURM accounting not available: {out}"
    return True, f"idle node(s) and accounting available (states: {states})"


def default_partition() -> str:
    """Name of the default partition (the one ``sinfo`` marks with ``*``)."""
    res = run_bounded(["sinfo", "-h", "-o", "%P"], QUERY_TIMEOUT_S)
    if res.returncode != 0:
        raise RuntimeError(f"sinfo failed listing partitions: {res.stderr.strip()}")
    names = [p.strip() for p in res.stdout.split() if p.strip()]
    for name in names:
        if name.endswith("*"):
            return name[:-1]
    if not names:
        raise RuntimeError("sinfo lists no partitions")
    return names[0]
