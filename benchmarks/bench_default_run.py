"""Wall time of the default audit (config/config.yaml: every experiment, table and figure).

Runs the whole workflow from a clean results folder in a scratch directory (nothing in
results/ is touched) with `--cores N`, repeats, and prints the median wall time, the load
average, and the seconds of each rule (summed over its jobs, from the start and finish
time stamps of Snakemake's own log, so process start-up is included), largest first.

    .venv/bin/python benchmarks/bench_default_run.py [--cores 2] [--repeats 1] [--keep DIR]
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
_STAMP = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]$")
_START = re.compile(r"^\s*(?:local)?(?:rule|checkpoint) (\w+):$")
_JOBID = re.compile(r"^\s*jobid: (\d+)$")
_DONE = re.compile(r"^Finished jobid: (\d+)")


def rule_seconds(log_text: str) -> tuple[dict[str, float], dict[str, int]]:
    """Seconds per rule (sum over its jobs, start to finish) and job counts, from Snakemake's log.

    Snakemake writes a time stamp line before each job's block (``rule X:`` … ``jobid: N``)
    and before each ``Finished jobid: N``; the stamps have one-second resolution.
    """
    stamp, pending, started, rule_of = None, None, {}, {}
    seconds, jobs = collections.defaultdict(float), collections.Counter()
    for line in log_text.splitlines():
        if m := _STAMP.match(line.strip()):
            stamp = dt.datetime.strptime(" ".join(m.group(1).split()), "%a %b %d %H:%M:%S %Y")
        elif m := _START.match(line):
            pending = m.group(1)
        elif (m := _JOBID.match(line)) and pending:
            started[m.group(1)], rule_of[m.group(1)] = stamp, pending
            pending = None
        elif (m := _DONE.match(line.strip())) and m.group(1) in started:
            rule = rule_of[m.group(1)]
            seconds[rule] += (stamp - started.pop(m.group(1))).total_seconds()
            jobs[rule] += 1
    return dict(seconds), dict(jobs)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--keep", help="run in this folder (kept) instead of a scratch folder")
    args = ap.parse_args()
    snakemake = str(Path(sys.executable).with_name("snakemake"))
    times, per_rule = [], collections.defaultdict(list)
    for r in range(args.repeats):
        with tempfile.TemporaryDirectory() as scratch:
            tmp = Path(args.keep or scratch)
            tmp.mkdir(parents=True, exist_ok=True)
            cfg = yaml.safe_load((ROOT / "config/config.yaml").read_text())
            for spec in cfg["datasets"].values():
                if "path" in spec:
                    spec["path"] = str(ROOT / spec["path"])
            (tmp / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
            load = os.getloadavg()[0]
            t0 = time.perf_counter()
            with open(tmp / "snakemake_output.txt", "w") as out:  # not --quiet: its log has the time stamps
                subprocess.run(
                    [snakemake, "--snakefile", str(ROOT / "Snakefile"), "--directory", str(tmp),
                     "--configfile", str(tmp / "config.yaml"), "--cores", str(args.cores), "all"],
                    check=True, stdout=out, stderr=subprocess.STDOUT,
                )  # fmt: skip
            times.append(time.perf_counter() - t0)
            logs = sorted((tmp / ".snakemake/log").glob("*.snakemake.log"))
            seconds, jobs = rule_seconds(logs[-1].read_text()) if logs else ({}, {})
            for rule, s in seconds.items():
                per_rule[rule].append(s)
            trained = [
                line.split("INFO ")[-1]
                for p in sorted((tmp / "results/logs").glob("*/*/train_models_*.log"))
                for line in p.read_text().splitlines()
                if "trained" in line
            ]
        print(f"repeat {r + 1}: {times[-1]:.1f} s (load average at start {load:.2f}); " + "; ".join(trained))
    print(f"\nseconds per rule (job start to finish, summed over jobs; median of {len(times)} run(s)):")
    total = 0.0
    for rule, s in sorted(per_rule.items(), key=lambda kv: -statistics.median(kv[1])):
        med = statistics.median(s)
        total += med
        print(f"  {rule:28s} {med:7.1f} s  ({jobs.get(rule, 0)} job(s))")
    print(f"  {'(sum; jobs overlap on ' + str(args.cores) + ' cores)':28s} {total:7.1f} s")
    print(
        f"\ndefault audit ({args.cores} cores): median wall time {statistics.median(times):.1f} s "
        f"({statistics.median(times) / 60:.2f} min) over {len(times)} run(s); load now {os.getloadavg()[0]:.2f}"
    )


if __name__ == "__main__":
    main()
