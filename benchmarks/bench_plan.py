"""SLURM submissions and planning time: the default run and a 10-experiment audit.

Dry-runs two configurations with the SLURM site profile (profiles/slurm, placeholders
replaced on the command line) and the workflow profile (profiles/default, loaded by
Snakemake itself): the bundled default (200 MLPs, 50 per shard) and 10 MLP experiments of
different widths/depths × 200 models, 2 models per shard (100 shards per experiment). For
each it prints the jobs per rule, the SLURM submissions they become (group jobs + ungrouped
jobs; local rules run where Snakemake runs and are counted apart) and the planning time
(median of --repeats dry runs; target < 20 s).

    PYTHONPATH=workflow .venv/bin/python benchmarks/bench_plan.py [--repeats 3]
        [--models-per-job 2] [--group-components 4] [--configfile MY.yaml]

With --configfile only the given configuration is planned: a quick way to see how many
SLURM jobs a real run will submit.
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


def local_rules(snakefile: Path = REPO / "Snakefile") -> set[str]:
    """The rule names of the Snakefile's ``localrules:`` directive."""
    m = re.search(r"^localrules:\s*\n((?:[ \t]+\w+,?[ \t]*\n?)+)", snakefile.read_text(), flags=re.M)
    return set(re.findall(r"\w+", m.group(1))) if m else set()


def parse_dry_run(text: str, local: set[str] | frozenset = frozenset()) -> dict:
    """Jobs per rule (Snakemake's "Job stats" table) and the SLURM submissions they become.

    Submissions = group jobs ("Group job NAME" lines) + ungrouped jobs (unindented
    "rule NAME:" entries), less jobs of rules that run no code (e.g. the target rule all)
    and jobs of the ``local`` rules, which run where Snakemake runs.
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
    marked_local: set[str] = set()  # "localrule NAME:", e.g. rules that say `localrule: True`
    for m in re.finditer(r"^(local)?rule (\w+):$", text, flags=re.M):
        ungrouped[m.group(2)] = ungrouped.get(m.group(2), 0) + 1
        if m.group(1):
            marked_local.add(m.group(2))
    ungrouped.pop("all", None)
    local_jobs = {r: ungrouped.pop(r) for r in sorted(set(ungrouped) & (set(local) | marked_local))}
    return {
        "per_rule": per_rule,
        "groups": groups,
        "ungrouped": ungrouped,
        "local": local_jobs,
        "submissions": sum(groups.values()) + sum(ungrouped.values()),
    }


def group_components(shards: int) -> list[str]:
    """The workflow profile's group-components with ``shards`` replaced (a command-line
    --group-components replaces the profile's whole list)."""
    profile = yaml.safe_load((REPO / "profiles" / "default" / "config.yaml").read_text())
    comps = {**profile.get("group-components", {}), "shards": shards}
    return [f"{k}={v}" for k, v in comps.items()]


def dry_run(configfile: Path | None, workdir: Path, profile: Path, group_components: int | None) -> tuple[float, str]:
    cmd = [
        sys.executable, "-m", "snakemake", "--dry-run", "--forceall",
        "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
        "--profile", str(profile),
        # the profile's placeholders replaced, as a user would on the command line
        "--default-resources", "slurm_partition=bench", "slurm_account=bench", "mem_mb=4000", "runtime=60",
    ]  # fmt: skip
    if group_components is not None:
        cmd += ["--group-components", *group_components(group_components)]
    if configfile is not None:
        cmd += ["--configfile", str(configfile)]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    seconds = time.perf_counter() - t0
    if res.returncode != 0:
        raise RuntimeError(f"dry run failed ({res.returncode}):\n{res.stderr[-4000:]}")
    return seconds, res.stdout + res.stderr


def plan_config(
    label: str, configfile: Path | None, cfg: dict | None, args, local: set[str]
) -> dict:  # one configuration: write it (or link the user's), dry-run it --repeats times, print
    with tempfile.TemporaryDirectory(prefix="bench_plan_") as tmp:
        workdir = Path(tmp)
        (workdir / "data").symlink_to(REPO / "data")
        if cfg is not None:
            # replaces config/config.yaml (the Snakefile's configfile, read relative to the
            # working directory), so no default experiment is merged in
            (workdir / "config").mkdir()
            (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(cfg))
        else:
            (workdir / "config").symlink_to(REPO / "config")
        times, text = [], ""
        for _ in range(args.repeats):
            seconds, text = dry_run(configfile, workdir, args.profile, args.group_components)
            times.append(seconds)
    plan = parse_dry_run(text, local)
    total = sum(plan["per_rule"].values())
    print(f"\n== {label}")
    print(f"jobs: {total}")
    for rule, n in plan["per_rule"].items():
        print(f"  {rule:<24} {n:>6}")
    print(f"SLURM submissions: {plan['submissions']} (group jobs {plan['groups']}, ungrouped jobs {plan['ungrouped']})")
    print(f"local jobs (no submission): {sum(plan['local'].values())}")
    print(
        f"planning time (dry run, incl. start-up): median {statistics.median(times):.1f} s "
        f"over {len(times)} runs: {', '.join(f'{t:.1f}' for t in times)}"
    )
    return plan


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
        help="shards per SLURM job (default: the workflow profile's group-components)",
    )
    ap.add_argument("--profile", type=Path, default=REPO / "profiles" / "slurm")
    ap.add_argument("--configfile", type=Path, default=None, help="plan only this configuration")
    args = ap.parse_args(argv)
    local = local_rules()
    if args.configfile is not None:
        plan_config(str(args.configfile), args.configfile.resolve(), None, args, local)
        return
    plan_config("default configuration (config/config.yaml)", None, None, args, local)
    cfg = benchmark_config("results", args.experiments, args.models, args.models_per_job)
    label = f"{args.experiments} experiments × {args.models} models, {args.models_per_job} models per shard"
    plan_config(label, None, cfg, args, local)


if __name__ == "__main__":
    main()
