"""What the workflow asks of a SLURM cluster, checked before anything is submitted, and the
submission errors sbatch gives, shown to the user.

:func:`partitions` reads the nodes of every partition from ``sinfo`` (CPUs, memory, GPUs, time
limit); :func:`check_requests` stops a run whose jobs ask for more than any node of their
partition offers, with one line naming the key to change (SLURM would accept such a job and
leave it PENDING for ever, or reject it at submission). :func:`show_sbatch_errors` makes the
sbatch error of a rejected group job reach the user and stops retries of rejected submissions.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from mia_audit.errors import ConfigError


@dataclass(frozen=True)
class Nodes:
    """One kind of node of a partition, as a line of ``sinfo -o '%P|%c|%m|%G|%l'`` gives it."""

    partition: str
    cpus: int
    mem_mb: int
    gpus: Mapping[str, int]  # GPU type ("" when untyped) → GPUs per node
    time_limit_min: float  # inf when the partition has none

    def gpu_count(self, model: str = "") -> int:
        return sum(n for t, n in self.gpus.items() if not model or t == model)


def parse_gres(text: str) -> dict[str, int]:
    """GPUs per node of a ``%G`` field: ``gpu:a100:4(S:0-1),gpu:2`` → {"a100": 4, "": 2}."""
    out: dict[str, int] = {}
    for item in text.split(","):
        parts = re.sub(r"\(.*?\)", "", item.strip()).split(":")
        if parts[0] != "gpu" or len(parts) < 2:
            continue
        kind, count = (parts[1], parts[2]) if len(parts) >= 3 else ("", parts[1])
        if count.isdigit():
            out[kind] = out.get(kind, 0) + int(count)
    return out


def parse_time_limit(text: str) -> float:
    """Minutes of a SLURM time limit (``infinite``, ``D-HH:MM:SS``, ``HH:MM:SS``, ``MM:SS``, ``MM``)."""
    text = text.strip()
    if text in ("infinite", "UNLIMITED", "n/a", ""):
        return float("inf")
    days = 0
    if "-" in text:
        d, text = text.split("-", 1)
        days = int(d)
    parts = [int(p) for p in text.split(":")]
    if len(parts) == 3:
        h, m, s = parts
    elif len(parts) == 2:
        h, (m, s) = 0, parts
    else:
        h, m, s = 0, parts[0], 0
    return days * 1440 + h * 60 + m + s / 60


SINFO_FORMAT = "%P|%c|%m|%G|%l"


def parse_sinfo(text: str) -> tuple[dict[str, list[Nodes]], str | None]:
    """({partition: its kinds of nodes}, the default partition) from ``sinfo -h -o SINFO_FORMAT``."""
    parts: dict[str, list[Nodes]] = {}
    default = None
    for line in text.splitlines():
        fields = line.strip().split("|")
        if len(fields) != 5:
            continue
        name, cpus, mem, gres, limit = fields
        if name.endswith("*"):
            name = name[:-1]
            default = name
        try:
            nodes = Nodes(name, int(cpus.rstrip("+")), int(mem.rstrip("+")), parse_gres(gres), parse_time_limit(limit))
        except ValueError:
            continue
        parts.setdefault(name, []).append(nodes)
    return parts, default


def partitions(run: Callable = subprocess.run) -> tuple[dict[str, list[Nodes]], str | None] | None:
    """The cluster's partitions from ``sinfo``, or None where sinfo is missing or fails."""
    if run is subprocess.run and shutil.which("sinfo") is None:
        return None
    try:
        res = run(["sinfo", "-h", "-o", SINFO_FORMAT], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if res.returncode != 0:
        return None
    parsed = parse_sinfo(res.stdout)
    return parsed if parsed[0] else None


@dataclass(frozen=True)
class Request:
    """What one kind of job (or group job) asks of a node, and the keys that set each figure."""

    what: str  # e.g. "train_models of experiment mlp"
    rule: str  # the rule whose partition it goes to
    cpus: int
    cpus_key: str
    mem_mb: int | None = None
    mem_key: str = ""
    runtime_min: int | None = None
    runtime_key: str = ""
    gpus: int = 0
    gpu_type: str = ""


def partition_of(rule: str, default_resources: Mapping | None, overwrite_resources: Mapping | None) -> str | None:
    """The ``slurm_partition`` a rule's jobs go to: the profile's set-resources of the rule, else
    its default-resources (None: the cluster's default partition)."""

    def value(mapping):
        raw = (mapping or {}).get("slurm_partition") if hasattr(mapping, "get") else None
        raw = getattr(raw, "raw", raw)
        return str(raw).strip("'\"") if raw not in (None, "") else None

    return value((overwrite_resources or {}).get(rule)) or value(default_resources)


def check_requests(
    requests: Iterable[Request],
    cluster: tuple[dict[str, list[Nodes]], str | None],
    default_resources: Mapping | None = None,
    overwrite_resources: Mapping | None = None,
) -> None:
    """Raise :class:`ConfigError` (one line, naming the key to change) for the first request no
    node of its partition can meet: CPUs, memory, GPUs (of the type asked for) or time."""
    parts, default = cluster
    for req in requests:
        name = partition_of(req.rule, default_resources, overwrite_resources) or default
        nodes = parts.get(name or "")
        if not nodes:
            raise ConfigError(
                f"{req.what} goes to SLURM partition {name!r}, which sinfo does not list "
                f"(partitions: {sorted(parts)}); set slurm_partition in the site profile's default-resources"
            )
        where = f"SLURM partition {name!r}"
        if req.gpus:
            fit = [n for n in nodes if n.gpu_count(req.gpu_type) >= req.gpus]
            if not fit:
                have = sorted({f"{t or 'gpu'}:{c}" for n in nodes for t, c in n.gpus.items()}) or ["none"]
                kind = f" of type {req.gpu_type}" if req.gpu_type else ""
                raise ConfigError(
                    f"config key cluster.gpu asks for {req.gpus} GPU(s){kind} per job of {req.what}, but {where} "
                    f"has no node with them (sinfo GRES: {', '.join(have)}); set cluster.gpu: auto (a GPU only "
                    "where sinfo lists one) or false, or give these rules a GPU partition (slurm_partition in "
                    "the site profile's set-resources)" + (", or change cluster.gpu_model" if req.gpu_type else "")
                )
            nodes = fit
        most = max(n.cpus for n in nodes)
        if req.cpus > most:
            raise ConfigError(
                f"{req.cpus_key} = {req.cpus} CPUs per job of {req.what}, but the nodes of {where} have at most "
                f"{most} (sinfo); lower it (or the site profile's cores, which caps every job's CPUs) to {most} or less"
            )
        if req.mem_mb is not None:
            most_mem = max(n.mem_mb for n in nodes)
            if req.mem_mb > most_mem:
                raise ConfigError(
                    f"{req.mem_key} makes each job of {req.what} ask for {req.mem_mb} MB, but the nodes of {where} "
                    f"have at most {most_mem} MB (sinfo); lower it"
                )
        if req.runtime_min is not None:
            longest = max(n.time_limit_min for n in nodes)
            if req.runtime_min > longest:
                raise ConfigError(
                    f"{req.runtime_key} makes each job of {req.what} ask for {req.runtime_min} minutes, beyond the "
                    f"time limit of {where} ({longest:g} minutes, sinfo); lower it"
                )


def fitting_cores(cluster: tuple[dict[str, list[Nodes]], str | None], partition: str | None, wanted: int) -> int:
    """``wanted`` CPUs, or fewer where the largest node of the partition (default: the cluster's
    default partition) has fewer."""
    parts, default = cluster
    nodes = parts.get(partition or default or "")
    if not nodes:
        return wanted
    return max(1, min(wanted, max(n.cpus for n in nodes)))


#: how snakemake-executor-plugin-slurm (2.x) begins the message of a submission sbatch rejected
SBATCH_FAILED = "SLURM sbatch failed"


def show_sbatch_errors(logger=None) -> bool:
    """Make a rejected submission fail once, with sbatch's error in the failure message.

    Two gaps of Snakemake 9.27 and snakemake-executor-plugin-slurm 2.8, worked around in the
    main Snakemake process (the Snakefile calls this for SLURM runs; returns whether it applied):

    - ``GroupJob.log_error`` (snakemake/jobs.py) drops the message the executor reports, so a
      group job that sbatch rejects fails showing only its rules' old logs. The wrapper logs the
      message first (single jobs show it already).
    - A rejected submission counts as a failed attempt and is resubmitted ``retries`` times,
      though sbatch rejects it again the same way. The executor's report of it marks the job
      as on its last attempt, so the scheduler does not restart it.
    """
    try:
        from snakemake.jobs import GroupJob
        from snakemake_executor_plugin_slurm import Executor
    except ImportError:
        return False
    if getattr(Executor.report_job_error, "_mia_audit", False):
        return True
    if logger is None:
        from snakemake.logging import logger

    Executor.report_job_error = reported_once(Executor.report_job_error)
    GroupJob.log_error = with_message(GroupJob.log_error, logger)
    return True


def reported_once(report_job_error: Callable) -> Callable:
    """The executor's ``report_job_error``, marking a job whose submission sbatch rejected as on
    its last attempt (the scheduler restarts a job while restart_times > attempt − 1)."""

    def report_rejected_once(self, job_info, msg=None, **kwargs):
        job = job_info.job
        if msg and str(msg).startswith(SBATCH_FAILED) and job.attempt <= job.restart_times:
            job.attempt = job.restart_times + 1
            msg = f"{str(msg).rstrip()}\n    (sbatch rejected the submission itself: not retried)\n"
        return report_job_error(self, job_info, msg=msg, **kwargs)

    report_rejected_once._mia_audit = True
    return report_rejected_once


def with_message(log_error: Callable, logger) -> Callable:
    """A group job's ``log_error`` that logs the executor's message before the group's report."""

    def log_error_with_message(self, msg=None, aux_logs=None, **kwargs):
        if msg:
            logger.error(f"Error in group {self.groupid}: {msg}")
        return log_error(self, msg=msg, aux_logs=aux_logs, **kwargs)

    return log_error_with_message


def default_logdir(executor_settings, logdir: str) -> bool:
    """Give the SLURM executor the log folder ``logdir`` (the results folder's
    ``logs/slurm``) unless the profile or the command line named one (``slurm-logdir``), so
    that runs on different results folders keep their SLURM logs apart. ``executor_settings``:
    the plugin's settings as Snakemake's command line built them, before any job is submitted.
    Returns whether it set the folder."""
    if executor_settings is None or not hasattr(executor_settings, "logdir") or executor_settings.logdir:
        return False
    from pathlib import Path

    executor_settings.logdir = Path(logdir)
    return True


# --------------------------------------------------------------------------- requested against used


def parse_size_mb(text: str) -> float:
    """MB of a sacct size (``981388K``, ``8000M``, ``1.5G``, ``0``); 0 for an empty field."""
    text = text.strip()
    if not text:
        return 0.0
    units = {"K": 1 / 1024, "M": 1.0, "G": 1024.0, "T": 1024.0**2}
    if text[-1] in units:
        return float(text[:-1]) * units[text[-1]]
    return float(text) / 2**20  # bytes


def parse_duration_s(text: str) -> float:
    """Seconds of a sacct duration (``[D-]HH:MM:SS[.fff]`` or ``MM:SS.fff``)."""
    text = text.strip()
    if not text or text in ("INVALID", "Partition_Limit", "UNLIMITED"):
        return 0.0
    days = 0
    if "-" in text:
        d, text = text.split("-", 1)
        days = int(d)
    parts = [float(p) for p in text.split(":")]
    while len(parts) < 3:
        parts.insert(0, 0.0)
    h, m, s = parts
    return days * 86400 + h * 3600 + m * 60 + s


SACCT_FIELDS = "JobIDRaw,JobID,State,ElapsedRaw,TimelimitRaw,ReqMem,AllocCPUS,ReqTRES,MaxRSS,TotalCPU"


@dataclass
class Usage:
    """One SLURM submission: what it asked for and what it used (sacct)."""

    job_id: str
    name: str  # the log folder: group_<group>_<rules> or rule_<rule>
    state: str
    steps: int  # job steps = the jobs of a group job, one srun each
    req_cpus: int
    req_mem_mb: float
    req_minutes: float
    req_gpus: int
    elapsed_s: float
    max_rss_mb: float  # the largest step's
    cpu_s: float

    @property
    def used_minutes(self) -> float:
        return self.elapsed_s / 60

    def within(self, factor: float = 2.0, mem_margin_mb: float = 500.0, minutes_margin: float = 5.0) -> list[str]:
        """What this submission asked for beyond ``factor`` × its use plus the margins (memory:
        ``mem_margin_mb``; time: ``minutes_margin`` and one whole minute per job step, since each
        job's request is rounded up to whole minutes), as readable lines; empty when within."""
        out = []
        if self.req_mem_mb > factor * self.max_rss_mb + mem_margin_mb:
            out.append(f"memory {self.req_mem_mb:.0f} MB > {factor:g} × {self.max_rss_mb:.0f} MB + {mem_margin_mb:g}")
        limit = factor * self.used_minutes + minutes_margin + self.steps
        if self.req_minutes > limit:
            out.append(
                f"time {self.req_minutes:.0f} min > {factor:g} × {self.used_minutes:.1f} min + {minutes_margin:g} "
                f"+ {self.steps} (one per job)"
            )
        return out


def sacct_usage(jobs: Mapping[str, str], run: Callable = subprocess.run) -> list[Usage]:
    """:class:`Usage` of SLURM jobs ({job id: name}) from ``sacct`` (their job and step rows)."""
    if not jobs:
        return []
    res = run(
        ["sacct", "-n", "-P", "-j", ",".join(jobs), "-o", SACCT_FIELDS],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if res.returncode != 0:
        raise RuntimeError(f"sacct failed: {res.stderr.strip()}")
    rows = [line.split("|") for line in res.stdout.splitlines() if line.count("|") == SACCT_FIELDS.count(",")]
    out = []
    for job_id, name in jobs.items():
        main = next((r for r in rows if r[1] == job_id), None)
        if main is None:
            continue
        steps = [r for r in rows if r[1].startswith(f"{job_id}.")]
        tres = dict(kv.split("=", 1) for kv in main[7].split(",") if "=" in kv)
        gpus = sum(int(v) for k, v in tres.items() if k.startswith("gres/gpu") and v.isdigit() and ":" not in k)
        out.append(
            Usage(
                job_id=job_id,
                name=name,
                state=main[2],
                steps=sum(1 for r in steps if r[1].split(".")[-1].isdigit()),
                req_cpus=int(main[6] or 0),
                req_mem_mb=parse_size_mb(main[5]),
                req_minutes=float(main[4] or 0),
                req_gpus=gpus,
                elapsed_s=float(main[3] or 0),
                max_rss_mb=max([parse_size_mb(r[8]) for r in steps] or [0.0]),
                cpu_s=parse_duration_s(main[9]),
            )
        )
    return out


def logged_jobs(logdir) -> dict[str, str]:
    """{SLURM job id: submission name} of the job logs under a SLURM log folder
    (``<group_… or rule_…>/<wildcards>/<jobid>.log``)."""
    from pathlib import Path

    root = Path(logdir)
    jobs = {}
    for path in sorted(root.rglob("*.log")):
        if path.stem.isdigit():
            jobs[path.stem] = path.relative_to(root).parts[0]
    return dict(sorted(jobs.items(), key=lambda kv: int(kv[0])))


def usage_table(usages: Iterable[Usage]) -> str:
    """Requested against used, one line per submission."""
    head = (
        f"{'job':>6} {'submission':<34} {'jobs':>4} {'CPUs':>4} {'GPUs':>4} {'mem req MB':>10} {'used MB':>8} "
        f"{'time req':>9} {'used':>7} {'ratio':>6}  state"
    )
    lines = [head]
    for u in usages:
        ratio = u.req_minutes / u.used_minutes if u.used_minutes else float("inf")
        lines.append(
            f"{u.job_id:>6} {u.name[:34]:<34} {u.steps:>4} {u.req_cpus:>4} {u.req_gpus:>4} {u.req_mem_mb:>10.0f} "
            f"{u.max_rss_mb:>8.0f} {u.req_minutes:>7.0f} m {u.used_minutes:>5.1f} m {ratio:>5.1f}×  {u.state}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``python -m mia_audit.pipeline.slurm usage LOGDIR``: requested against used of every
    SLURM job of a run (its SLURM log folder, e.g. results/logs/slurm)."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m mia_audit.pipeline.slurm", description=main.__doc__)
    ap.add_argument("command", choices=["usage"])
    ap.add_argument("logdir", help="the run's SLURM log folder")
    args = ap.parse_args(argv)
    usages = sacct_usage(logged_jobs(args.logdir))
    print(usage_table(usages))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
