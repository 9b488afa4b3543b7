"""Planning time of a large audit: 10 experiments × 200 models on the bundled PBC cohort.

Writes a configuration (10 MLP experiments of different widths/depths, 200 models each, 2
models per shard → 100 shards per experiment) and dry-runs it with the SLURM profile's job
groups, printing the jobs per rule, the SLURM submissions they become and the planning
time (median of --repeats dry runs; target < 20 s).

    PYTHONPATH=workflow .venv/bin/python benchmarks/bench_plan.py [--repeats 3]
        [--models-per-job 2] [--group-components 4] [--configfile MY.yaml]

With --configfile the given configuration is planned instead (no benchmark config is
written): a quick way to see how many SLURM jobs a real run will submit.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]

WIDTHS = [16, 32, 64, 128, 256]
DEPTHS = [1, 2]


def benchmark_config(results: str, n_experiments: int = 10, n_models: int = 200, models_per_job: int = 2) -> dict:
    """config/config.yaml with its experiments replaced by n_experiments MLP experiments."""
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    experiments = {}
    for i in range(n_experiments):
        width, depth = WIDTHS[i % len(WIDTHS)], DEPTHS[(i // len(WIDTHS)) % len(DEPTHS)]
        experiments[f"mlp_w{width}_d{depth}_{i}"] = {
            "dataset": "pbc",
            "model": {"arch": "mlp", "depth": depth, "width": width},
            "train": {"epochs": 100},
            "models_per_job": models_per_job,
            "seed": i,
        }
    cfg["results"] = results
    cfg["datasets"]["pbc"]["n_models"] = n_models
    cfg["experiments"] = experiments
    return cfg


_STATS_ROW = re.compile(r"^(\w+)\s+(\d+)$")


def parse_dry_run(text: str) -> dict:
    """Jobs per rule (Snakemake's "Job stats" table) and the SLURM submissions they become.

    Submissions = group jobs ("Group job NAME" lines) + ungrouped jobs (unindented
    "rule NAME:" entries), less jobs of rules that run no code (e.g. the target rule all).
    """
    per_rule: dict[str, int] = {}
    in_stats = False
    for line in text.splitlines():
        if line.startswith("Job stats:"):
            in_stats = True
            continue
        if in_stats:
            m = _STATS_ROW.match(line.strip())
            if m and m.group(1) != "total":
                per_rule[m.group(1)] = int(m.group(2))
            elif m:
                break
    groups: dict[str, int] = {}
    for m in re.finditer(r"Group job (\S+) \(", text):
        groups[m.group(1)] = groups.get(m.group(1), 0) + 1
    ungrouped: dict[str, int] = {}
    for m in re.finditer(r"^(?:local)?rule (\w+):$", text, flags=re.M):
        ungrouped[m.group(1)] = ungrouped.get(m.group(1), 0) + 1
    ungrouped.pop("all", None)
    return {
        "per_rule": per_rule,
        "groups": groups,
        "ungrouped": ungrouped,
        "submissions": sum(groups.values()) + sum(ungrouped.values()),
    }


def dry_run(configfile: Path | None, workdir: Path, profile: Path, group_components: int | None) -> tuple[float, str]:
    cmd = [
        sys.executable, "-m", "snakemake", "--dry-run", "--forceall",
        "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
        "--profile", str(profile),
        # the profile's placeholders replaced, as a user would on the command line
        "--default-resources", "slurm_partition=bench", "slurm_account=bench", "mem_mb=4000", "runtime=60",
    ]  # fmt: skip
    if group_components is not None:
        cmd += ["--group-components", f"shards={group_components}", "setup=1"]
    if configfile is not None:
        cmd += ["--configfile", str(configfile)]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    seconds = time.perf_counter() - t0
    if res.returncode != 0:
        raise RuntimeError(f"dry run failed ({res.returncode}):\n{res.stderr[-4000:]}")
    return seconds, res.stdout + res.stderr


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--experiments", type=int, default=10)
    ap.add_argument("--models", type=int, default=200)
    ap.add_argument("--models-per-job", type=int, default=2)
    ap.add_argument(
        "--group-components",
        type=int,
        default=None,
        help="shards per SLURM job (default: the profile's group-components)",
    )
    ap.add_argument("--profile", type=Path, default=REPO / "profiles" / "slurm")
    ap.add_argument("--configfile", type=Path, default=None, help="plan this configuration instead")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench_plan_") as tmp:
        workdir = Path(tmp)
        (workdir / "data").symlink_to(REPO / "data")
        if args.configfile is None:
            # The benchmark config replaces config/config.yaml (the Snakefile's configfile,
            # read relative to the working directory), so no default experiment is merged in.
            configfile = None
            (workdir / "config").mkdir()
            cfg = benchmark_config("results", args.experiments, args.models, args.models_per_job)
            (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(cfg))
            print(
                f"config: {args.experiments} experiments × {args.models} models, {args.models_per_job} models per shard"
            )
        else:
            (workdir / "config").symlink_to(REPO / "config")
            configfile = args.configfile.resolve()
        times, text = [], ""
        for _ in range(args.repeats):
            seconds, text = dry_run(configfile, workdir, args.profile, args.group_components)
            times.append(seconds)
    plan = parse_dry_run(text)
    total = sum(plan["per_rule"].values())
    print(f"jobs: {total}")
    for rule, n in plan["per_rule"].items():
        print(f"  {rule:<24} {n:>6}")
    print(f"SLURM submissions: {plan['submissions']} (group jobs {plan['groups']}, ungrouped jobs {plan['ungrouped']})")
    print(
        f"planning time (dry run, incl. start-up): median {statistics.median(times):.1f} s "
        f"over {len(times)} runs: {', '.join(f'{t:.1f}' for t in times)}"
    )


if __name__ == "__main__":
    main()
