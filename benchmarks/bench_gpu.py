"""GPU training throughput and model-FLOP utilisation of the image architectures.

Measures training images/s with bf16 autocast and channels_last for
  * WRN-28-2 at 64 px (one model, and an ensemble of M models trained with torch.func.vmap),
  * ViT-B/16 at 128 px,
counts the FLOPs of one training step (forward + backward) with
``torch.utils.flop_counter.FlopCounterMode``, and reports achieved TFLOP/s and its share of
the device's peak dense bf16 TFLOP/s (from a small table keyed by device name, or
``--peak-tflops``). Runs in a few minutes; on a machine without CUDA it prints a message
and exits with status 0 (``--allow-cpu`` runs a tiny version for checking the script).

    PYTHONPATH=workflow python benchmarks/bench_gpu.py [--steps 20] [--peak-tflops 989]
"""

from __future__ import annotations

import argparse
import copy
import sys
import time

import torch
import torch.nn.functional as F
from torch.func import functional_call, stack_module_state, vmap
from torch.utils.flop_counter import FlopCounterMode

from mia_audit.train.vision import vit, wide_resnet

# Peak dense (no sparsity) bf16 tensor-core TFLOP/s from vendor data sheets; the first
# key contained in torch.cuda.get_device_name() wins, so more specific names come first.
PEAK_BF16_TFLOPS = {
    "H200": 989.0,
    "H100 PCIe": 756.0,
    "H100": 989.0,
    "GH200": 989.0,
    "B200": 2250.0,
    "A100": 312.0,
    "A800": 312.0,
    "L40S": 362.0,
    "L40": 181.0,
    "A40": 150.0,
    "A10": 125.0,
    "L4": 121.0,
    "RTX 4090": 165.0,
    "RTX 3090": 71.0,
}


def peak_for(name: str, override: float | None) -> float | None:
    if override is not None:
        return override
    for key, val in PEAK_BF16_TFLOPS.items():
        if key.lower() in name.lower():
            return val
    return None


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def single_step_fn(model, batch, image_size, num_classes, device, lr, channels_last):
    model = model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    fused = device.type == "cuda"
    opt = (
        torch.optim.AdamW(model.parameters(), lr=lr, fused=fused)
        if fused
        else torch.optim.AdamW(model.parameters(), lr=lr)
    )
    x = torch.randint(0, 256, (batch, 3, image_size, image_size), dtype=torch.uint8, device=device)
    y = torch.randint(0, num_classes, (batch,), device=device)

    def step():
        xf = x.float().div_(255.0)
        if channels_last:
            xf = xf.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss = F.cross_entropy(model(xf), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return batch

    return step


def ensemble_step_fn(models, batch, image_size, num_classes, device, lr):
    models = [m.to(device) for m in models]
    params, buffers = stack_module_state(models)
    base = copy.deepcopy(models[0]).to("meta")
    fused = device.type == "cuda"
    opt = (
        torch.optim.AdamW(list(params.values()), lr=lr, fused=fused)
        if fused
        else torch.optim.AdamW(list(params.values()), lr=lr)
    )
    m = len(models)
    x = torch.randint(0, 256, (m, batch, 3, image_size, image_size), dtype=torch.uint8, device=device)
    y = torch.randint(0, num_classes, (m, batch), device=device)
    fwd = vmap(lambda p, b, xb: functional_call(base, (p, b), (xb,)), randomness="different")

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16):
            logits = fwd(params, buffers, x.float().div_(255.0))
            loss = (
                F.cross_entropy(logits.flatten(0, 1).float(), y.flatten(), reduction="none")
                .view(m, batch)
                .mean(1)
                .sum()
            )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return m * batch

    return step


def count_flops(step) -> tuple[int, int]:
    with FlopCounterMode(display=False) as counter:
        n_imgs = step()
    return counter.get_total_flops(), n_imgs


def run_case(name, step, device, warmup, steps, flop_ref=None):
    """Time ``step``; FLOPs are counted on ``flop_ref`` = (single-model step, multiplier) when
    given, so that an ensemble is credited with M x the model FLOPs (its vmap backward runs
    some extra convolutions, e.g. the stem's input gradient, that are not model FLOPs)."""
    for _ in range(warmup):
        step()
    sync(device)
    if flop_ref is None:
        flops_per_step, n_imgs = count_flops(step)
    else:
        ref_step, mult = flop_ref
        f, n = count_flops(ref_step)
        flops_per_step, n_imgs = f * mult, n * mult
    sync(device)
    t0 = time.perf_counter()
    n = 0
    for _ in range(steps):
        n += step()
    sync(device)
    dt = time.perf_counter() - t0
    return {
        "case": name,
        "images_per_s": n / dt,
        "step_s": dt / steps,
        "tflop_per_step": flops_per_step / 1e12,
        "tflops": flops_per_step * steps / dt / 1e12,
        "imgs_per_step": n_imgs,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20, help="timed steps per case")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--batch-wrn", type=int, default=512)
    ap.add_argument("--batch-vit", type=int, default=256)
    ap.add_argument("--ensemble", type=int, default=4, help="models in the vmap WRN ensemble (0 to skip)")
    ap.add_argument("--peak-tflops", type=float, default=None, help="peak dense bf16 TFLOP/s of the device")
    ap.add_argument("--no-channels-last", action="store_true")
    ap.add_argument("--allow-cpu", action="store_true", help="tiny run on CPU to check the script")
    args = ap.parse_args(argv)

    if torch.cuda.is_available():
        device = torch.device("cuda")
        name = torch.cuda.get_device_name(device)
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    elif args.allow_cpu:
        device, name = torch.device("cpu"), "CPU"
        args.batch_wrn, args.batch_vit, args.steps, args.warmup = 4, 2, 1, 1
        args.ensemble = min(args.ensemble, 2)
    else:
        print("bench_gpu: no CUDA device found; this benchmark needs a GPU (use --allow-cpu for a smoke run).")
        return 0
    peak = peak_for(name, args.peak_tflops)
    cl = not args.no_channels_last
    torch.manual_seed(0)
    print(
        f"device: {name}; torch {torch.__version__}; bf16 autocast; channels_last={cl}; "
        f"peak bf16 dense: {peak if peak is not None else 'unknown (pass --peak-tflops)'} TFLOP/s"
    )

    cases = [
        ("WRN-28-2 64px", lambda: single_step_fn(wide_resnet(28, 2, 10), args.batch_wrn, 64, 10, device, 1e-3, cl)),
    ]
    if args.ensemble > 0:
        cases.append(
            (
                f"WRN-28-2 64px x{args.ensemble} vmap",
                lambda: ensemble_step_fn(
                    [wide_resnet(28, 2, 10) for _ in range(args.ensemble)],
                    max(1, args.batch_wrn // args.ensemble),
                    64,
                    10,
                    device,
                    1e-3,
                ),
            )
        )
    cases.append(
        ("ViT-B/16 128px", lambda: single_step_fn(vit("vit-b-16", 128, 10), args.batch_vit, 128, 10, device, 1e-4, cl))
    )
    rows = []
    for case, make in cases:
        try:
            flop_ref = None
            if "vmap" in case:  # model FLOPs of one member at the per-model batch, times M
                ref = single_step_fn(
                    wide_resnet(28, 2, 10), max(1, args.batch_wrn // args.ensemble), 64, 10, device, 1e-3, False
                )
                flop_ref = (ref, args.ensemble)
            rows.append(run_case(case, make(), device, args.warmup, args.steps, flop_ref))
        except Exception as exc:  # report and go on with the other cases
            print(f"{case}: failed with {type(exc).__name__}: {exc}")
        if device.type == "cuda":
            torch.cuda.empty_cache()

    print(f"{'case':<26}{'images/s':>10}{'step ms':>10}{'TFLOP/step':>12}{'TFLOP/s':>10}{'% peak':>8}")
    for r in rows:
        share = f"{100 * r['tflops'] / peak:.1f}" if peak else "n/a"
        print(
            f"{r['case']:<26}{r['images_per_s']:>10.1f}{1000 * r['step_s']:>10.1f}"
            f"{r['tflop_per_step']:>12.3f}{r['tflops']:>10.2f}{share:>8}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
