"""Vectorised ensemble training vs a loop over the same models (the default MLP on PBC).

Trains the same 50 models (same seeds, member sets, epochs, batch order) twice: once as
one torch.func ensemble (training.train_ensemble) and once one by one with an ordinary
PyTorch loop (training.train_one). Prints seconds for each, the speed-up, and the largest
weight difference between the two (they compute the same thing). Repeats and reports
medians, since shared machines are noisy.

    PYTHONPATH=workflow .venv/bin/python benchmarks/bench_ensemble.py [--models 50] [--epochs 10]
"""

from __future__ import annotations

import argparse
import statistics
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch
import yaml

from mia_audit.data.adapters.table import prepare_table, read_table
from mia_audit.sampling import membership
from mia_audit.train.ensemble import TrainConfig, model_seed, steps_per_epoch, train_ensemble, train_one
from mia_audit.train.families import build_model

ROOT = Path(__file__).resolve().parents[1]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", type=int, default=50)
    ap.add_argument("--epochs", type=int, default=10, help="epochs per model (the default config trains 100)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    cfg = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    spec, exp = cfg["datasets"]["pbc"], cfg["experiments"]["mlp"]
    prep = prepare_table(read_table(ROOT / spec["path"]), spec)
    rec = prep.records
    pool = (rec["split"] == "pool").to_numpy()
    patients = np.unique(rec.loc[pool, "patient_id"])
    pm = membership.balanced_membership(args.models, len(patients), 0)
    idx = np.where(pool, np.searchsorted(patients, rec["patient_id"]), -1)
    member = membership.record_membership(pm, idx)
    rows = [np.flatnonzero(member[m]) for m in range(args.models)]
    X = torch.as_tensor(prep.features)
    y = torch.as_tensor(rec["label"].to_numpy(copy=True))
    tc = TrainConfig.from_config({**exp.get("train", {}), "epochs": args.epochs})
    build = partial(build_model, exp["model"], (X.shape[1],), len(prep.label_names))
    seeds = [model_seed(exp.get("seed", 0), m) for m in range(args.models)]
    spe = steps_per_epoch(pool.sum() / 2, tc.batch_size)
    dev = torch.device("cpu")

    t_ens, t_loop, diffs = [], [], []
    for r in range(args.repeats):
        t0 = time.perf_counter()
        _, params, _, _ = train_ensemble(build, X, y, rows, tc, seeds, spe, dev)
        t_ens.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        loop = [train_one(build, X, y, rows[m], tc, seeds[m], spe, dev) for m in range(args.models)]
        t_loop.append(time.perf_counter() - t0)
        diffs.append(
            max((params[k][m] - mod.state_dict()[k]).abs().max().item() for m, mod in enumerate(loop) for k in params)
        )
        print(
            f"repeat {r + 1}: ensemble {t_ens[-1]:.2f} s, loop {t_loop[-1]:.2f} s, ratio {t_loop[-1] / t_ens[-1]:.1f}×"
        )

    me, ml = statistics.median(t_ens), statistics.median(t_loop)
    print(
        f"\n{args.models} models × {args.epochs} epochs × {spe} steps of {tc.batch_size} "
        f"({exp['model']}), {args.threads} threads"
    )
    print(f"ensemble (torch.func vmap): median {me:.2f} s  ({me / args.models * 1e3:.1f} ms per model)")
    print(f"loop over models          : median {ml:.2f} s  ({ml / args.models * 1e3:.1f} ms per model)")
    print(f"speed-up (median ratio)   : {ml / me:.1f}×")
    print(f"max |weight difference|   : {max(diffs):.2e}")


if __name__ == "__main__":
    main()
