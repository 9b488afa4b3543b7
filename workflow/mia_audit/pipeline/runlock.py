"""One run per results folder: a lock file ``{results}/run.lock`` naming the run that holds it.

The main Snakemake process of a run that executes jobs takes the lock while the Snakefile is
parsed, before Snakemake looks at incomplete files; a second run stops naming the holder. The
lock records the run's process group, and the run counts as live while its process or any job
process of its group runs. A lock whose run is gone is cleared and reported with the exact
recovery commands (``--unlock``, then ``--rerun-incomplete``). Dry runs, ``--report``,
``--lint``, ``--unlock``, ``--nolock`` and Snakemake's own per-job processes are never blocked
(what a user sees: docs/hpc.md, "Integrity and one run per results folder").

Snakemake 9 does not tell a Snakefile, while it is parsed, whether the invocation is a dry
run or a report: the executor is set only after parsing. The command line it parsed (its
profiles applied) is the ``args`` of ``snakemake.cli.args_to_api`` on the call stack;
:func:`invocation` reads it there. When Snakemake is driven through its Python API instead,
the mode is unknown at parse time and the lock is taken by :func:`claim_at_start` from the
workflow's ``onstart`` handler, which Snakemake calls only for runs that execute jobs.
"""

from __future__ import annotations

import argparse
import atexit
import inspect
import json
import os
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mia_audit.errors import DataError

LOCK_FILE = "run.lock"

#: Snakemake command-line options (argparse names) that make an invocation read-only: it
#: lists, draws, reports or checks the workflow but runs no job and writes no result
READ_ONLY_OPTIONS = (
    "lint",
    "list_target_rules",
    "list_rules",
    "print_compilation",
    "generate_unit_tests",
    "dag",
    "rulegraph",
    "filegraph",
    "d3dag",
    "unlock",
    "cleanup_metadata",
    "conda_cleanup_envs",
    "conda_create_envs_only",
    "list_conda_envs",
    "cleanup_shadow",
    "container_cleanup_images",
    "list_changes",
    "list_input_changes",
    "list_params_changes",
    "list_untracked",
    "summary",
    "detailed_summary",
    "archive",
)


class RunLockHeld(DataError):
    """Another live run holds the results folder."""


@dataclass(frozen=True)
class Invocation:
    """What this Snakemake process is doing.

    ``mode``: ``run`` (executes jobs: locks), ``dry-run``, ``read-only`` (report, lint, …),
    ``job`` (one of Snakemake's per-job processes) or ``unknown`` (the Python API).
    """

    mode: str
    executor: str | None = None
    nolock: bool = False

    @property
    def checks_devices(self) -> bool:
        """Whether the device check belongs to this invocation (runs and dry runs, not reports)."""
        return self.mode in ("run", "dry-run")


def snakemake_cli_local(name: str):
    """A local variable of ``snakemake.cli.args_to_api`` on the call stack (``args``: the parsed
    command line, profiles applied; ``executor_settings``: the executor plugin's settings), or
    None when Snakemake was started through its Python API (module docstring)."""
    frame = inspect.currentframe()
    while frame is not None:
        if frame.f_code.co_name == "args_to_api" and frame.f_globals.get("__name__") == "snakemake.cli":
            return frame.f_locals.get(name)
        frame = frame.f_back
    return None


def snakemake_cli_args() -> argparse.Namespace | None:
    """The arguments Snakemake's command line parsed (profiles applied), or None when Snakemake
    was started through its Python API (module docstring)."""
    args = snakemake_cli_local("args")
    return args if isinstance(args, argparse.Namespace) else None


def classify(args: argparse.Namespace | None, main_process: bool = True) -> Invocation:
    """:class:`Invocation` of a Snakemake command line (``args`` as :func:`snakemake_cli_args`)."""
    if not main_process:
        return Invocation("job")
    if args is None:
        return Invocation("unknown")
    executor = getattr(args, "executor", None)
    nolock = bool(getattr(args, "nolock", False))
    if getattr(args, "dryrun", False):
        return Invocation("dry-run", executor, nolock)
    if any(getattr(args, name, None) for name in READ_ONLY_OPTIONS) or getattr(args, "containerize", None) is not None:
        return Invocation("read-only", executor, nolock)
    if getattr(args, "report", None) and not getattr(args, "report_after_run", False):
        return Invocation("read-only", executor, nolock)
    return Invocation("run", executor, nolock)


def invocation(workflow) -> Invocation:
    """This process's :class:`Invocation`, from Snakemake's ``workflow`` object and command line."""
    return classify(snakemake_cli_args(), bool(workflow.is_main_process))


# --------------------------------------------------------------------------- the lock file


def lock_path(results) -> Path:
    return Path(results) / LOCK_FILE


def _start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (Linux /proc), or None."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            stat = fh.read()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])  # field 22; the name (field 2) may hold spaces


def _stat_fields(pid: int | str) -> list[str] | None:
    """Fields 3… of /proc/<pid>/stat (state, ppid, pgrp, …), or None."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _ancestors() -> set[int]:
    """This process and its ancestors (Linux; else this process only)."""
    out, pid = {os.getpid()}, os.getpid()
    while pid > 1:
        fields = _stat_fields(pid)
        if fields is None:
            break
        pid = int(fields[1])
        out.add(pid)
    return out


def group_jobs(holder: dict) -> list[int]:
    """Processes other than the holder's own still running in its process group that started
    with or after it (its jobs; this process and its ancestors excluded), sorted; [] where
    /proc is missing."""
    pgid, since = holder.get("pgid"), holder.get("start_ticks")
    if not isinstance(pgid, int) or not isinstance(since, int) or not os.path.isdir("/proc"):
        return []
    mine = _ancestors() | {holder["pid"]}
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in mine:
            continue
        fields = _stat_fields(entry)
        if fields is None or fields[0] == "Z":  # gone, or a zombie waiting for its parent
            continue
        if int(fields[2]) == pgid and int(fields[19]) >= since:
            out.append(int(entry))
    return sorted(out)


def _this_run(command: str | None = None) -> dict:
    pid = os.getpid()
    return {
        "pid": pid,
        "pgid": os.getpgid(0),
        "host": socket.gethostname(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "start_ticks": _start_ticks(pid),
        "command": (command if command is not None else " ".join(sys.argv))[:300],
        "workdir": os.getcwd(),
    }


def read_holder(path) -> dict | None:
    """The holder recorded in a lock file; None when there is none or it cannot be read."""
    try:
        holder = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return holder if isinstance(holder, dict) and isinstance(holder.get("pid"), int) else None


def process_alive(holder: dict) -> bool:
    """Whether the holder's own process runs (same host; a reused pid does not count)."""
    pid = holder["pid"]
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        pass
    recorded, now = holder.get("start_ticks"), _start_ticks(pid)
    return not (recorded is not None and now is not None and recorded != now)  # else the pid was reused


def holder_alive(holder: dict) -> bool | None:
    """True if the holder's process or one of its jobs (:func:`group_jobs`) runs, False if all
    are gone, None if it runs on another host."""
    if holder.get("host") != socket.gethostname():
        return None
    return process_alive(holder) or bool(group_jobs(holder))


def recovery(holder: dict | None, workdir=None) -> str:
    """The commands that resume after a killed run: ``--unlock`` when Snakemake's own lock is
    still in ``{workdir}/.snakemake/locks``, then ``--rerun-incomplete``, on the run's command."""
    command = (holder or {}).get("command") or "snakemake <your options>"
    locks = Path(workdir or os.getcwd()) / ".snakemake" / "locks"
    locked = locks.is_dir() and any(locks.iterdir())
    if locked:
        return (
            f"Snakemake's lock files are still in {locks} (the killed run's, unless another run works in this "
            f"directory), and Snakemake stops on them: run `{command} --unlock`, then `{command} --rerun-incomplete`"
        )
    return f"rerun what it left unfinished with `{command} --rerun-incomplete`"


def _describe(holder: dict) -> str:
    return (
        f"pid {holder['pid']} on {holder.get('host', '?')}, started {holder.get('started', '?')} "
        f"({holder.get('command', '?')})"
    )


def _is_me(holder: dict) -> bool:
    return holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname()


def acquire(results, log: Callable[[str], None] = print, command: str | None = None) -> Path:
    """Take ``{results}/run.lock`` for this process, or raise :class:`RunLockHeld` naming the live holder.

    A stale lock (its process gone) is removed with a message through ``log``. The lock is
    written whole (a temporary file hard-linked into place), so a reader never sees half of
    it; it is released at exit (:func:`release`).
    """
    path = lock_path(results)
    path.parent.mkdir(parents=True, exist_ok=True)
    me = _this_run(command)
    tmp = path.with_name(f".{LOCK_FILE}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(me, indent=1) + "\n")
    try:
        for _ in range(5):
            try:
                os.link(tmp, path)
            except FileExistsError:
                holder = read_holder(path)
                if holder is not None and _is_me(holder):
                    return path
                alive = holder_alive(holder) if holder is not None else False
                if alive is False:
                    _remove_stale(path, holder, results, log)
                    continue
                if alive and not process_alive(holder):
                    raise RunLockHeld(_orphans_message(results, holder)) from None
                elsewhere = (
                    "" if alive else f"; it runs on another host: if that run is gone, delete {path} and start again"
                )
                raise RunLockHeld(
                    f"results folder {str(results)!r} is in use by another run: {_describe(holder)}; "
                    f"wait for it to end or stop it, then start again (dry runs -n and --report work "
                    f"meanwhile){elsewhere}"
                ) from None
            else:
                atexit.register(release, path)
                return path
        raise RunLockHeld(f"could not take the lock {path}: other runs keep starting on results folder {results!r}")
    finally:
        tmp.unlink(missing_ok=True)


def _orphans_message(results, holder: dict) -> str:
    """A run whose Snakemake process is gone while its jobs still write: who, and how to stop them."""
    jobs = group_jobs(holder)
    pgid = holder.get("pgid")
    stop = (
        f"kill -- -{pgid}" if pgid == holder["pid"] else f"kill {' '.join(map(str, jobs[:20]))}"
    )  # the whole group only when Snakemake led it (else it may hold the shell that started it)
    return (
        f"results folder {str(results)!r} is in use: the Snakemake process of run {_describe(holder)} has ended, "
        f"but {len(jobs)} of its job processes still run and write results (pids {jobs[:10]}, process group "
        f"{pgid}); wait for them to end, or stop them with `{stop}`; then {recovery(holder, holder.get('workdir'))}"
    )


def _remove_stale(path: Path, holder: dict | None, results, log) -> None:
    try:
        path.unlink()
    except FileNotFoundError:  # another starting run removed it first
        return
    what = f"run {_describe(holder)}" if holder else "an unreadable lock"
    log(
        f"cleared the lock of results folder {str(results)!r}: {what} is no longer running, nor is any job of it; "
        f"jobs it left unfinished are reported as incomplete: {recovery(holder, (holder or {}).get('workdir'))}"
    )


def release(path) -> None:
    """Remove the lock if this process holds it."""
    holder = read_holder(path)
    if holder is not None and _is_me(holder):
        Path(path).unlink(missing_ok=True)


def claim(results, inv: Invocation, log: Callable[[str], None] = print) -> None:
    """At parse time: lock for a run that executes jobs; tell a dry run that another run is going."""
    if inv.nolock:
        return
    if inv.mode == "run":
        acquire(results, log)
    elif inv.mode == "dry-run":
        holder = read_holder(lock_path(results))
        if holder is not None and not _is_me(holder) and holder_alive(holder) is not False:
            log(f"note: results folder {str(results)!r} is in use by run {_describe(holder)}; outputs may change")


def claim_at_start(results, inv: Invocation, log: Callable[[str], None] = print) -> None:
    """From ``onstart`` (real runs only): lock when the mode was unknown at parse time (Python API)."""
    if inv.mode == "unknown" and not inv.nolock:
        acquire(results, log)
