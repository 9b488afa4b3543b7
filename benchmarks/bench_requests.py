"""What each SLURM submission asks for against what it uses: the default configuration, a
10-experiment and a 100-experiment plan (bench_plan.benchmark_config: MLPs × 200 models, 2 per
shard, 100 epochs).

Requested: each job's resources as the workflow computes them (mia_audit.pipeline.rules, the
data set's records estimated as at submission of the setup group), combined per group job by
Snakemake's own sizing (snakemake.resources.GroupResources.basic_layered) with the site
profile's group_slot = 1 (one job at a time: runtime summed, CPUs/memory/GPUs the largest) and,
for comparison, the same jobs sized without it (Snakemake's default: jobs side by side, up to
the profile's 4 cores). Used: each job's measured use on the single-node test cluster (sacct of the default
run: MEASURED below; a shard job's time scaled by its training work, the rest as measured),
summed over a group job (time) or the largest (memory).

The check: no request beyond 2 × use + the margins of mia_audit.pipeline.slurm.Usage.within
(500 MB; 5 min + 1 min per job, as each job's request is rounded up to whole minutes), none
below its use, and none beyond a 24-hour partition limit.

    PYTHONPATH=workflow .venv/bin/python benchmarks/bench_requests.py [--sacct results/logs/slurm]

With --sacct the measured table of a real run (its SLURM log folder) is printed as well.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_plan import REPO, benchmark_config  # noqa: E402

from mia_audit import settings  # noqa: E402
from mia_audit.pipeline import plan, slurm  # noqa: E402
from mia_audit.pipeline.rules import RuleFunctions  # noqa: E402

#: measured per job (seconds, MB) on the single-node test cluster (2 CPUs, busy), sacct of a
#: SLURM run of the default configuration (one step per job of its group jobs): elapsed, MaxRSS
MEASURED = {
    "prepare_dataset": (15, 324),
    "select_model": (68, 974),
    "sample_membership": (21, 321),
    "create_cube": (23, 333),
    "fit_baselines": (46, 409),
    "train_models": (66, 1093),  # 200 MLPs × 20 epochs on 1,945 records
    "query_models": (35, 916),
    "assemble_cube": (18, 303),  # from a later run: the cube assembled from its one shard
    "audit_records": (31, 446),
    "attack_aggregate": (32, 398),
    "analyse_convergence": (64, 415),
    "compare_subgroup_tails": (35, 379),
}
#: seconds of a job that are not training (Snakemake's job process, imports, I/O): the lightest
#: measured job's (sample_membership); the rest of a train job's time scales with its work
OVERHEAD_S = 21
DEFAULT_WORK = 200 * 20  # model-epochs of the default's train job
DAY_MIN = 24 * 60

SETUP = ("prepare_dataset", "sample_membership", "fit_baselines", "select_model", "create_cube")
AUDIT = ("audit_records", "attack_aggregate", "analyse_convergence", "compare_subgroup_tails")


def audit_layers(ds: str, experiments: list[str]) -> list[list]:
    """The audit group's layers: the cubes assembled, then every experiment's audits."""
    return [[("assemble_cube", ds, e) for e in experiments], [(rule, ds, e) for e in experiments for rule in AUDIT]]


def job_request(R: RuleFunctions, config: dict, rule: str, ds: str, exp: str | None) -> dict:
    """The resources the workflow gives one job (first attempt). A setup-group job is sized
    before its data set is prepared (records estimated from the table's size), the others after."""
    wc = SimpleNamespace(dataset=ds, experiment=exp, shard="0")
    prepared = f"{plan.results(config)}/{ds}/inputs.zarr"
    inputs = prepared if rule not in SETUP else f"{prepared}.not-yet"
    files = {"inputs": inputs, "table": plan.dataset_source(config, ds)}
    inp = SimpleNamespace(get=files.get, **files)
    if rule == "prepare_dataset":
        res = {"_cores": R.prepare_threads(wc), "mem_mb": R.prepare_mem_mb(wc, inp, 1)}
        res["runtime"] = R.prepare_runtime(wc, inp, 1)
    elif rule in ("train_models", "query_models", "select_model"):
        res = {"_cores": R.shard_cpus(wc), "mem_mb": R.shard_mem_mb(wc, inp, 1), "gpu": R.shard_gpus(wc)}
        res["runtime"] = (R.query_runtime if rule == "query_models" else R.train_runtime)(wc, inp, 1)
    elif rule in SETUP:  # light, sized before the data set is prepared
        light = RuleFunctions({**config, "results": f"{plan.results(config)}/not-yet"})
        res = {"_cores": 1, "mem_mb": light.light_mem_mb(wc, 1), "runtime": light.light_runtime(wc, 1)}
    else:
        res = {"_cores": 1, "mem_mb": R.light_mem_mb(wc, 1), "runtime": R.light_runtime(wc, 1)}
    return {**res, "group_slot": 1}


def prepare_inputs_metadata(config: dict) -> None:
    """The prepared inputs' metadata under the config's results folder, as prepare_dataset writes
    it for the bundled cohort (1,945 records × its features), which the resource functions read."""
    import pandas as pd

    for ds in config["datasets"]:
        spec = config["datasets"][ds]
        records = len(pd.read_csv(plan.dataset_source(config, ds)))
        meta = Path(plan.results(config)) / ds / "inputs.zarr" / "features" / "zarr.json"
        meta.parent.mkdir(parents=True, exist_ok=True)
        meta.write_text(json.dumps({"shape": [records, len(spec["features"])], "data_type": "float32"}))


def job_use(config: dict, rule: str, exp: str | None) -> tuple[float, float]:
    """(seconds, MB) a job uses: measured, a train job's time scaled by its model-epochs."""
    seconds, mb = MEASURED[rule]
    if rule == "train_models" and exp is not None:
        work = plan.models_per_job(config, exp) * plan.experiment(config, exp)["train"]["epochs"]
        seconds = OVERHEAD_S + (seconds - OVERHEAD_S) * work / DEFAULT_WORK
    return seconds, mb


def submissions(config: dict, shards_per_group: int = 4, experiments_per_audit: int = 100) -> list[tuple[str, list]]:
    """The group jobs of a configuration (name, [(rule, dataset, experiment), …] in layers as
    toposorted lists of members): one setup group per data set, shard groups of
    ``shards_per_group`` shards, audit groups of ``experiments_per_audit`` experiments."""
    out = []
    for ds in config["datasets"]:
        exps = plan.experiments_of(config, ds)
        if not exps:
            continue
        layers = [[("prepare_dataset", ds, None)], [("sample_membership", ds, None)]]
        third = [("select_model", ds, e) for e in exps if plan.selection(config, e)]
        if plan.baselines_table(config, ds):
            third.append(("fit_baselines", ds, None))
        layers += [third, [("create_cube", ds, e) for e in exps]]
        out.append(("setup", [layer for layer in layers if layer]))
        # shard groups take shards of any experiment (Snakemake merges connected components)
        shards = [e for e in exps for _ in range(plan.n_shards(config, e))]
        for start in range(0, len(shards), shards_per_group):
            chunk = shards[start : start + shards_per_group]
            out.append(("shards", [[("train_models", ds, e) for e in chunk], [("query_models", ds, e) for e in chunk]]))
        for start in range(0, len(exps), experiments_per_audit):
            chunk = exps[start : start + experiments_per_audit]
            out.append(("audit", audit_layers(ds, chunk)))
    return out


def size(layers, requests, slot: bool) -> dict:
    """Snakemake's request for a group job of these members."""
    from snakemake.resources import GroupResources, Resources

    jobs = [[SimpleNamespace(resources=dict(requests[m]), pipe_group=None) for m in layer] for layer in layers]
    constraints = {"_cores": 4, "_nodes": 100, **({"group_slot": 1} if slot else {})}
    if not slot:
        for layer in jobs:
            for j in layer:
                j.resources.pop("group_slot")
    return GroupResources.basic_layered(jobs, Resources.from_mapping(constraints), run_local=False)


def report(label: str, config: dict, results: Path) -> bool:
    config = settings.complete({**config, "results": str(results)}, "config")
    prepare_inputs_metadata(config)
    R = RuleFunctions(config)
    subs = submissions(config)
    requests, uses = {}, {}
    for _, layers in subs:
        for member in (m for layer in layers for m in layer):
            if member not in requests:
                requests[member] = job_request(R, config, *member)
                uses[member] = job_use(config, member[0], member[2])
    kinds: dict[str, list] = {}
    for kind, layers in subs:
        kinds.setdefault(kind, []).append(layers)
    print(f"\n== {label}: {len(subs)} submissions")
    print(
        f"{'group':<7} {'count':>5} {'jobs':>5} | {'asked (one at a time)':>26} | {'used':>17} | "
        f"{'ratio':>5} | {'same jobs side by side':>30}"
    )
    ok = True
    for kind, groups in kinds.items():
        layers = max(groups, key=lambda g: sum(map(len, g)))  # the largest group of its kind
        members = [m for layer in layers for m in layer]
        new, old = size(layers, requests, True), size(layers, requests, False)
        used_min = sum(uses[m][0] for m in members) / 60
        used_mb = max(uses[m][1] for m in members)
        usage = slurm.Usage("", kind, "", len(members), new["_cores"], new["mem_mb"], new["runtime"],
                            new.get("gpu", 0), used_min * 60, used_mb, 0.0)  # fmt: skip
        problems = usage.within()
        if new["runtime"] < used_min or new["mem_mb"] < used_mb:
            problems.append("asks for less than it uses")
        if new["runtime"] > DAY_MIN:
            problems.append(f"beyond 24 h ({new['runtime']} min)")
        ok &= not problems
        print(
            f"{kind:<7} {len(groups):>5} {len(members):>5} | {new['_cores']:>2} CPU {new['mem_mb']:>6} MB "
            f"{fmt_min(new['runtime']):>9} | {used_mb:>6.0f} MB {fmt_min(used_min):>7} | "
            f"{new['runtime'] / used_min:>4.1f}× | {old['_cores']:>2} CPU {old['mem_mb']:>7} MB "
            f"{fmt_min(old['runtime']):>9}" + (f"  ← {'; '.join(problems)}" if problems else "")
        )
    return ok


def fmt_min(minutes: float) -> str:
    return f"{minutes:.0f} m" if minutes < 120 else f"{minutes / 60:.1f} h"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sacct", type=Path, help="a run's SLURM log folder: print its sacct table too")
    args = ap.parse_args(argv)
    import yaml

    default = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    default["datasets"]["pbc"]["path"] = str(REPO / default["datasets"]["pbc"]["path"])
    with tempfile.TemporaryDirectory(prefix="bench_requests_") as tmp:
        ok = report("default configuration (config/config.yaml)", default, Path(tmp) / "default")
        for n in (10, 100):
            cfg = benchmark_config("results", n_experiments=n)
            cfg["datasets"]["pbc"]["path"] = str(REPO / cfg["datasets"]["pbc"]["path"])
            ok &= report(f"{n} experiments × 200 models, 2 per shard", cfg, Path(tmp) / str(n))
    print("\nevery request ≥ use, ≤ 2 × use + margins, ≤ 24 h:", "yes" if ok else "NO")
    if args.sacct:
        print(f"\nsacct of {args.sacct}:\n{slurm.usage_table(slurm.sacct_usage(slurm.logged_jobs(args.sacct)))}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
