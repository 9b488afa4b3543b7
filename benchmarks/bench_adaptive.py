"""Adaptive audits against the fixed design: models and training time needed for a stated precision.

Replay (default). On a finished fixed-design audit, an adaptive run is replayed: models are
taken in a random order and wave w holds the first (w + 1)·wave_models of them, balanced per
patient (:func:`mia_audit.sampling.subsets.nested_subsets`; models are exchangeable, so these are
the models an adaptive run with this wave size could have trained). After each wave the
adaptive audit's own assessment runs (:func:`mia_audit.analysis.adaptive.share_precision`,
:func:`mia_audit.analysis.adaptive.decide`); for every target precision the replay records the
models at the stop. Repeated over random orders. Training time = models × the seconds per
model measured in the run's train logs (``--logs``, "trained N models in S s"), or given
with ``--seconds-per-model``.

End to end (``--run``). The workflow on the bundled cohort twice in scratch directories:
the fixed design (200 models) and the adaptive one (waves of ``--wave`` models, target
``--target``); prints wall times and the models each trained.

    .venv/bin/python benchmarks/bench_adaptive.py --audit results/pbc/mlp [--logs results/logs/pbc/mlp] \
        [--wave 40] [--min-models 80] [--targets 0.04 0.03 0.02] [--orders 10] [--splits 20]
    .venv/bin/python benchmarks/bench_adaptive.py --run [--wave 40] [--target 0.03] [--cores 2]
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

import numpy as np
import pandas as pd
import yaml

from mia_audit.analysis import adaptive, convergence
from mia_audit.sampling import subsets

ROOT = Path(__file__).resolve().parents[1]


def seconds_per_model(logs: Path | None) -> float | None:
    """Training seconds per model from train_models_*.log ("trained N models in S s")."""
    if logs is None:
        return None
    models = seconds = 0.0
    for path in sorted(Path(logs).glob("train_models_*.log")):
        for m in re.finditer(r"trained (\d+) models in ([\d.]+) s", path.read_text()):
            models += int(m.group(1))
            seconds += float(m.group(2))
    return seconds / models if models else None


def replay(
    audit: Path,
    wave: int,
    min_models: int,
    targets,
    orders: int,
    splits: int,
    estimators,
    seed: int,
    beta: float,
    threshold: float = 0.9,
):
    cube = convergence.PoolCube.open(audit / "cube.zarr")
    conf, member = cube.pool_arrays()
    pool = convergence.PoolCube.from_arrays(conf, member, cube.record_id, cube.patient_id)
    m = pool.n_models
    sizes = list(range(wave, m + 1, wave))
    rng = np.random.default_rng(seed)
    rows = []
    for order_no in range(orders):
        order = rng.permutation(m)
        for k in sizes:
            mask = subsets.nested_subsets(pool.patient_member, k, order)
            for est in estimators:
                res = adaptive.share_precision(
                    pool, m, threshold, estimator=est, splits=splits, seed=order_no, subset=mask, bias_exponent=beta
                )
                rows.append({"order": order_no, "n_models": k, **res})
    waves = pd.DataFrame(rows)
    stops = []
    for (order_no, est), g in waves.groupby(["order", "estimator"]):
        g = g.sort_values("n_models")
        final = g.iloc[-1]
        for target in targets:
            for row in g.itertuples():
                decision = adaptive.decide(row.n_models, row.error_bound, target=target, min_models=min_models, cap=m)
                if decision != adaptive.CONTINUE:
                    break
            stops.append(
                {
                    "estimator": est,
                    "target": target,
                    "order": order_no,
                    "models": row.n_models,
                    "decision": decision,
                    "share": row.share,
                    "share_bc": row.share_bc,
                    "error_vs_all": abs(row.share_bc - final.share_bc),
                }
            )
    return waves, pd.DataFrame(stops), m


def main_replay(args) -> None:
    sec = args.seconds_per_model or seconds_per_model(args.logs)
    t0 = time.perf_counter()
    waves, stops, m = replay(
        args.audit,
        args.wave,
        args.min_models,
        args.targets,
        args.orders,
        args.splits,
        args.estimators,
        args.seed,
        args.bias_exponent,
        args.threshold,
    )
    print(f"# {args.audit}: replay of adaptive waves of {args.wave} (min {args.min_models}) against {m} fixed models")
    print(
        f"# {args.orders} random model orders, {args.splits} half-splits per assessment; threshold {args.threshold}; "
        f"bias_exponent {args.bias_exponent}"
    )
    print("\nper wave (mean over orders):")
    summary = waves.groupby(["estimator", "n_models"])[["share", "share_bc", "mc_sd", "bias", "error_bound"]].mean()
    print(summary.round(4).to_string())
    print("\nat the stop:")
    print("estimator  target  models median [min, max]  stopped on precision  saved vs fixed  |share_bc - all-model|")
    for (est, target), g in stops.groupby(["estimator", "target"], sort=False):
        med = statistics.median(g["models"])
        saved = 1 - g["models"].mean() / m
        line = (
            f"{est:<10} ±{target:<5g} {med:>6g} [{g['models'].min()}, {g['models'].max()}]"
            f"          {np.mean(g['decision'] == adaptive.STOP_PRECISION):>4.0%}"
            f"                  {saved:>4.0%}         {g['error_vs_all'].mean():.4f}"
        )
        if sec:
            line += f"   training {g['models'].mean() * sec / 60:.1f} min vs {m * sec / 60:.1f} min"
        print(line)
    if sec:
        print(f"\ntraining time per model {sec:.2f} s (from {args.logs or '--seconds-per-model'})")
    print(f"{time.perf_counter() - t0:.0f} s")


def main_run(args) -> None:
    snakemake = str(Path(sys.executable).with_name("snakemake"))
    base = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    base["datasets"]["pbc"]["path"] = str(ROOT / base["datasets"]["pbc"]["path"])
    adaptive_cfg = yaml.safe_load(yaml.safe_dump(base))
    adaptive_cfg["datasets"]["pbc"]["adaptive"] = {
        "wave_models": args.wave,
        "min_models": args.min_models,
        "half_width": args.target,
    }
    adaptive_cfg["experiments"]["mlp"]["models_per_job"] = args.wave // 2
    for name, cfg in (("fixed", base), ("adaptive", adaptive_cfg)):
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "config.yaml").write_text(yaml.safe_dump(cfg))
            t0 = time.perf_counter()
            cmd = [snakemake, "--snakefile", str(ROOT / "Snakefile"), "--directory", tmp]
            cmd += ["--configfile", str(Path(tmp) / "config.yaml"), "--cores", str(args.cores), "--quiet", "all"]
            subprocess.run(cmd, check=True)
            wall = time.perf_counter() - t0
            trained = len(list(Path(tmp, "results/pbc/mlp/models").glob("shard_*.safetensors")))
            per_job = cfg["experiments"]["mlp"]["models_per_job"]
            sec = seconds_per_model(Path(tmp, "results/logs/pbc/mlp"))
            extra = ""
            if name == "adaptive":
                extra = "\n" + pd.read_csv(Path(tmp, "results/pbc/mlp/audit/adaptive.tsv"), sep="\t").to_string()
            print(
                f"{name}: {trained * per_job} models trained, wall time {wall / 60:.1f} min, "
                f"training {sec or float('nan'):.2f} s per model{extra}"
            )


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--audit", type=Path, help="{results}/{dataset}/{experiment} of a finished fixed-design run")
    ap.add_argument("--logs", type=Path, help="its train logs folder ({results}/logs/{dataset}/{experiment})")
    ap.add_argument("--seconds-per-model", type=float)
    ap.add_argument("--wave", type=int, default=40)
    ap.add_argument("--min-models", type=int, default=80)
    ap.add_argument("--targets", type=float, nargs="+", default=[0.04, 0.03, 0.02])
    ap.add_argument("--estimators", nargs="+", default=["binormal", "moderated"])
    ap.add_argument("--orders", type=int, default=10)
    ap.add_argument("--splits", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bias-exponent", type=float, default=1.0)
    ap.add_argument("--threshold", type=float, default=0.9, help="the headline: share of patients with AUC >= this")
    ap.add_argument("--run", action="store_true", help="run the workflow end to end, fixed and adaptive")
    ap.add_argument("--target", type=float, default=0.03, help="the adaptive run's half_width (--run)")
    ap.add_argument("--cores", type=int, default=2)
    args = ap.parse_args()
    if args.run:
        main_run(args)
    elif args.audit:
        main_replay(args)
    else:
        ap.error("give --audit (replay) or --run")


if __name__ == "__main__":
    main()
