"""Training throughput of the workflow's own image path: ``train_ensemble`` + ``InputTransform``.

What it times is exactly what ``train_models`` runs for an image data set: one uint8
(N, C, H, W) tensor on the device, per step an (M, B) index gather, batched random crop +
flip, per-channel normalisation, a ``vmap`` forward/backward over M stacked models and one
optimiser step; on CUDA with and without bf16 autocast + channels-last (``train.amp``).
Prints images/s (models × batch × steps / s) per setting, after one warm-up epoch.

    PYTHONPATH=workflow python benchmarks/bench_train_throughput.py                 # CPU: tiny
    PYTHONPATH=workflow python benchmarks/bench_train_throughput.py --arch wrn-28-2 --size 64 \
        --models 16 --batch 128 --steps 20                                          # GPU
"""

from __future__ import annotations

import argparse
import time
from functools import partial

import numpy as np
import torch

from mia_audit.device import resolve_device
from mia_audit.train.ensemble import InputTransform, TrainConfig, channel_stats, model_seed, train_ensemble
from mia_audit.train.families import build_model


def run(args, amp: bool, dev: torch.device) -> float:
    g = torch.Generator().manual_seed(0)
    N = max(args.models * args.batch * 2, 256)
    X = torch.randint(0, 256, (N, args.channels, args.size, args.size), dtype=torch.uint8, generator=g).to(dev)
    y = torch.randint(0, 2, (N,), generator=g).to(dev)
    mean, std = channel_stats(X, np.arange(N), "image")
    spec = {"arch": args.arch} if args.arch != "wrn" else {"arch": "wrn", "depth": args.depth, "widen": args.widen}
    build = partial(build_model, spec, (args.channels, args.size, args.size), 2)
    seeds = [model_seed(0, m) for m in range(args.models)]
    rows = [np.arange(N)] * args.models
    gen = torch.Generator(device=dev).manual_seed(1)
    tf = InputTransform("image", mean, std, augment=True, generator=gen, channels_last=amp and dev.type == "cuda")
    cfg = TrainConfig(epochs=1, batch_size=args.batch, optimizer="sgd", lr=0.05)
    train_ensemble(build, X, y, rows, cfg, seeds, 1, dev, transform=tf, amp=amp)  # warm-up
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    train_ensemble(build, X, y, rows, cfg, seeds, args.steps, dev, transform=tf, amp=amp)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    return args.models * args.batch * args.steps / (time.perf_counter() - t0)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", default="wrn", help="model.arch (wrn uses --depth/--widen)")
    p.add_argument("--depth", type=int, default=10)
    p.add_argument("--widen", type=int, default=1)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--channels", type=int, default=1)
    p.add_argument("--models", type=int, default=4)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--device", default="auto")
    args = p.parse_args()
    dev = resolve_device(args.device)
    torch.manual_seed(0)
    print(
        f"{args.arch} {args.size}px ×{args.channels}, {args.models} models × batch {args.batch}, "
        f"{args.steps} steps on {dev}"
    )
    for amp in [False, True] if dev.type == "cuda" else [False]:
        ips = run(args, amp, dev)
        print(f"  amp={'bf16+channels-last' if amp else 'off (fp32)'}: {ips:,.0f} images/s")


if __name__ == "__main__":
    main()
