"""Estimator families: 200 gradient-boosted target models of the bundled cohort, fitted and
queried in parallel threads (the workflow's way) against plain loops over the same models.

Prepares the bundled cohort (config/config.yaml, data set pbc) and its membership design of 200
models, then for each repeat fits the 200 target models of ``--arch`` (default: lightgbm with
the bundled gbm experiment's first candidate) three ways, each model fitted on its member records,
its logits computed on every record and the model serialised in its library's format:

* ``parallel``: :func:`mia_audit.train.estimators.fit_models` with ``--threads`` worker threads,
  one model per thread and one thread per model (what a train job does);
* ``loop, 1 thread``: the same models one after another, one thread each;
* ``loop, library threads``: one after another, each model fitted with the library's own
  ``--threads`` threads (``n_jobs``), as a plain script would.

Then the shard file is written (safetensors: every model's bytes and logits) and φ is computed
from the logits, as the query stage does. Prints, per repeat and as medians: wall seconds of
each way, the ratios, the shares of fit, predict and serialisation in the parallel run (summed
thread seconds) and the seconds of the file write; the CPU seconds of each way (the process's,
all threads: on a busy machine wall seconds stretch, CPU seconds much less); the mean test AUC of
the models; and the machine's load average (the shared 2-core machines are noisy: compare ratios
within one run).

    PYTHONPATH=workflow .venv/bin/python benchmarks/bench_families.py [--models 200] [--threads 2]
        [--repeats 3] [--arch lightgbm] [--params '{"max_depth": 2, ...}'] [--ways parallel,loop1,library]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from threadpoolctl import threadpool_limits

from mia_audit.data.adapters.table import prepare_table, read_table
from mia_audit.query.membership_signal import logit_confidence
from mia_audit.roc import roc_auc
from mia_audit.sampling import membership
from mia_audit.train import weights
from mia_audit.train.ensemble import model_seed
from mia_audit.train.estimators import Fitted, fit_models
from mia_audit.train.families import estimator_adapter

ROOT = Path(__file__).resolve().parents[1]


def library_loop(spec: dict, X, y, rows, seeds, n_classes: int, threads: int) -> list[Fitted]:
    """One model after another, each fitted with the library's own ``threads`` threads."""
    adapter = estimator_adapter(spec)
    out = []
    with threadpool_limits(threads):
        for r, seed in zip(rows, seeds, strict=True):
            t0 = time.perf_counter()
            est = adapter.new(spec, seed)
            if "n_jobs" in est.get_params():
                est.set_params(n_jobs=threads)
            est.fit(X[r], y[r])
            model = adapter.fitted(est)
            t1 = time.perf_counter()
            logits = adapter.logits(model, X, n_classes)
            t2 = time.perf_counter()
            data = adapter.dump(model)
            out.append(Fitted(data, logits, logits, t1 - t0, t2 - t1, time.perf_counter() - t2))
    return out


def finish(fitted: list[Fitted], y: np.ndarray, folder: Path) -> tuple[float, np.ndarray]:
    """Write the shard file and compute φ as the query stage does: (seconds, φ)."""
    t0 = time.perf_counter()
    logits = np.stack([f.logits for f in fitted])
    weights.save_estimator_shard(folder / "shard.safetensors", [f.data for f in fitted], logits, {"models": []})
    phi = logit_confidence(torch.as_tensor(logits), torch.as_tensor(y).expand(logits.shape[:2]))
    return time.perf_counter() - t0, phi.numpy()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", type=int, default=200)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--arch", default="lightgbm")
    ap.add_argument("--params", default=None, help="JSON; default: the bundled gbm experiment's params")
    ap.add_argument("--ways", default="parallel,loop1,library", help="which of parallel, loop1, library to time")
    args = ap.parse_args()
    torch.set_num_threads(1)

    cfg = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    spec = cfg["datasets"]["pbc"]
    params = json.loads(args.params) if args.params else cfg["experiments"]["gbm"]["model"]["params"]
    model = {"arch": args.arch, "params": params}
    prep = prepare_table(read_table(ROOT / spec["path"]), spec)
    rec = prep.records
    pool = (rec["split"] == "pool").to_numpy()
    patients = np.unique(rec.loc[pool, "patient_id"])
    pm = membership.balanced_membership(args.models, len(patients), 0)
    member = membership.record_membership(pm, np.where(pool, np.searchsorted(patients, rec["patient_id"]), -1))
    rows = [np.flatnonzero(member[m]) for m in range(args.models)]
    X = np.ascontiguousarray(prep.features, dtype=np.float32)
    y = rec["label"].to_numpy(dtype=np.int64, copy=True)
    seeds = [model_seed(0, m) for m in range(args.models)]
    n_classes = len(prep.label_names)
    fit_models(model, X, y, rows[:2], seeds[:2], n_classes, args.threads)  # imports, warm caches

    ways = {
        "parallel": lambda: fit_models(model, X, y, rows, seeds, n_classes, args.threads),
        "loop, 1 thread": lambda: fit_models(model, X, y, rows, seeds, n_classes, 1),
        "loop, library threads": lambda: library_loop(model, X, y, rows, seeds, n_classes, args.threads),
    }
    keys = dict(zip(("parallel", "loop1", "library"), ways, strict=True))
    ways = {keys[w]: ways[keys[w]] for w in args.ways.split(",")}
    wall: dict[str, list[float]] = {w: [] for w in ways}
    cpu: dict[str, list[float]] = {w: [] for w in ways}
    shares, io, aucs = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            line = []
            for name, run in ways.items():
                t0, c0 = time.perf_counter(), time.process_time()
                fitted = run()
                seconds_io, phi = finish(fitted, y, Path(tmp))
                wall[name].append(time.perf_counter() - t0)
                cpu[name].append(time.process_time() - c0)
                line.append(f"{name} {wall[name][-1]:.1f} s (CPU {cpu[name][-1]:.1f} s)")
                if name == "parallel":
                    parts = np.array([[f.fit_seconds, f.predict_seconds, f.dump_seconds] for f in fitted]).sum(0)
                    shares.append(parts / parts.sum())
                    io.append(seconds_io)
                    test = ~pool
                    aucs.append(np.mean([roc_auc(y[test] == 1, f.logits[test, 1] - f.logits[test, 0]) for f in fitted]))
                    assert np.isfinite(phi).all()
            print(f"repeat {r + 1}: " + ", ".join(line) + f"; load average {os.getloadavg()[0]:.1f}", flush=True)

    med = {w: statistics.median(v) for w, v in wall.items()}
    share = np.median(np.array(shares), axis=0)
    print(
        f"\n{args.models} {args.arch} targets {params} on {len(y)} records ({int(np.mean([len(r) for r in rows]))} "
        f"member records each), {args.threads} threads, {args.repeats} repeats; mean test AUC {np.mean(aucs):.3f}"
    )
    for name, m in med.items():
        ratio = "" if name == "parallel" else f"  ({m / med['parallel']:.2f}× the parallel run)"
        print(f"{name:22s}: median {m:6.1f} s, CPU {statistics.median(cpu[name]):6.1f} s{ratio}")
    print(
        f"parallel run's work (thread seconds): fit {share[0]:.0%}, predict {share[1]:.0%}, serialise {share[2]:.0%}; "
        f"writing the shard file and computing φ: median {statistics.median(io):.2f} s"
    )


if __name__ == "__main__":
    main()
