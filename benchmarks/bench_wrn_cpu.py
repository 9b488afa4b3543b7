"""CPU training throughput of a WRN-28-2 ensemble at 32 px: batched vmap vs naive per-model loops.

(a) batched: images stay uint8 in one tensor; each step draws an (M, B) index batch, crops
    and flips every image of every model with one batched call (mia_audit.train.augment),
    normalises on the fly, and runs one ``torch.func.vmap(functional_call)`` forward over
    the M stacked models; the summed loss is backpropagated to the stacked parameters
    (models are independent, so each slice gets its own model's gradient) and one SGD
    step updates all models.
(b) naive: per image, torchvision transforms on PIL images (RandomCrop with reflect
    padding, RandomHorizontalFlip, ToTensor, Normalize) through a DataLoader, training the
    M models one after another with their own optimisers.
(c) hybrid: the batched input path of (a), then a plain loop over the M models (separates
    the input-pipeline gain from the vmap gain).

All modes use the same models, batch size and optimiser settings. Prints images/s (median
over repeats, the modes interleaved) for each and their ratio. On a CPU the convolutions
dominate, so the ratio is modest; on a GPU, where per-image Python transforms and
per-model launches become the bottleneck, the batched path is expected to gain more
(bench_gpu.py measures that side). Runs in
about a minute or two on two idle cores (much longer, and noisy, when they are shared):

    PYTHONPATH=workflow python benchmarks/bench_wrn_cpu.py [--models 3 --batch 16 --steps 2 --repeats 3]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.func import functional_call, stack_module_state, vmap
from torchvision import transforms

from mia_audit.data.synthetic import make_synthetic_cohort
from mia_audit.train.augment import normalize_uint8, random_crop_flip
from mia_audit.train.vision import wide_resnet

MEAN, STD = (0.45, 0.42, 0.40), (0.2, 0.2, 0.2)


def batched_runner(models, images_u8, labels, batch, lr, gen):
    """One-ensemble-step closure for the vmap path; returns images processed per call."""
    params, buffers = stack_module_state(models)  # leaf tensors, requires_grad=True
    base = copy.deepcopy(models[0]).to("meta")
    opt = torch.optim.SGD(list(params.values()), lr=lr, momentum=0.9, weight_decay=5e-4)
    m = len(models)

    def fmodel(p, b, x):
        return functional_call(base, (p, b), (x,))

    ens_forward = vmap(fmodel, randomness="different")

    def step():
        idx = torch.randint(0, len(images_u8), (m, batch), generator=gen)
        x = random_crop_flip(images_u8[idx], pad=4, generator=gen)  # (M, B, C, H, W) uint8
        x = normalize_uint8(x, MEAN, STD)
        logits = ens_forward(params, buffers, x)  # (M, B, K)
        loss = F.cross_entropy(logits.flatten(0, 1), labels[idx].flatten(), reduction="none")
        loss = loss.view(m, batch).mean(1).sum()  # sum of per-model mean losses
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return m * batch

    return step


def hybrid_runner(models, images_u8, labels, batch, lr, gen):
    """Batched uint8 augmentation for all models at once, then a plain loop over the models."""
    opts = [torch.optim.SGD(mm.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4) for mm in models]
    m = len(models)

    def step():
        idx = torch.randint(0, len(images_u8), (m, batch), generator=gen)
        x = normalize_uint8(random_crop_flip(images_u8[idx], pad=4, generator=gen), MEAN, STD)
        for k, (mm, opt) in enumerate(zip(models, opts, strict=True)):
            loss = F.cross_entropy(mm(x[k]), labels[idx[k]])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return m * batch

    return step


class PILDataset(torch.utils.data.Dataset):
    def __init__(self, images_u8: np.ndarray, labels: np.ndarray, tf):
        self.pil = [Image.fromarray(np.ascontiguousarray(a.transpose(1, 2, 0))) for a in images_u8]
        self.labels = labels
        self.tf = tf

    def __len__(self):
        return len(self.pil)

    def __getitem__(self, i):
        return self.tf(self.pil[i]), int(self.labels[i])


def naive_runner(models, images_np, labels_np, batch, lr, seed):
    tf = transforms.Compose(
        [
            transforms.RandomCrop(32, padding=4, padding_mode="reflect"),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize(MEAN, STD),
        ]
    )
    ds = PILDataset(images_np, labels_np, tf)
    loaders = [
        torch.utils.data.DataLoader(
            ds,
            batch_size=batch,
            shuffle=True,
            drop_last=True,
            num_workers=0,
            generator=torch.Generator().manual_seed(seed + k),
        )
        for k in range(len(models))
    ]
    opts = [torch.optim.SGD(mm.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4) for mm in models]
    iters = [iter(dl) for dl in loaders]

    def next_batch(k):
        try:
            return next(iters[k])
        except StopIteration:
            iters[k] = iter(loaders[k])
            return next(iters[k])

    def step():  # one step of every model, one model after another
        for k, (mm, opt) in enumerate(zip(models, opts, strict=True)):
            x, y = next_batch(k)
            loss = F.cross_entropy(mm(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return len(models) * batch

    return step


def data_path_rates(
    images_u8: torch.Tensor, images_np: np.ndarray, labels_np, m: int, batch: int, repeats: int, seed: int
) -> tuple[float, float]:
    """images/s of the input pipeline alone (augment + normalise), batched vs per-image."""
    gen = torch.Generator().manual_seed(seed)
    n = m * batch
    ds = PILDataset(
        images_np,
        labels_np,
        transforms.Compose(
            [
                transforms.RandomCrop(32, padding=4, padding_mode="reflect"),
                transforms.RandomHorizontalFlip(),
                transforms.ToTensor(),
                transforms.Normalize(MEAN, STD),
            ]
        ),
    )
    dl = torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=True, drop_last=True, num_workers=0)
    fast, slow = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        idx = torch.randint(0, len(images_u8), (m, batch), generator=gen)
        normalize_uint8(random_crop_flip(images_u8[idx], pad=4, generator=gen), MEAN, STD)
        fast.append(n / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        it = iter(dl)
        for _ in range(m):
            next(it)
        slow.append(n / (time.perf_counter() - t0))
    return statistics.median(fast), statistics.median(slow)


def measure(steppers: dict, steps: int, repeats: int) -> dict:
    """images/s per mode; repeats alternate between modes so background load hits both alike."""
    for step in steppers.values():
        step()  # warm-up
    rates = {name: [] for name in steppers}
    for _ in range(repeats):
        for name, step in steppers.items():
            t0 = time.perf_counter()
            n = sum(step() for _ in range(steps))
            rates[name].append(n / (time.perf_counter() - t0))
    return rates


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", type=int, default=3)
    ap.add_argument("--batch", type=int, default=16, help="images per model per step")
    ap.add_argument("--steps", type=int, default=2, help="timed steps per repeat")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    torch.manual_seed(args.seed)
    records, images = make_synthetic_cohort(n_patients=300, size=32, channels=3, seed=args.seed)
    labels_np = records["label"].to_numpy()
    images_u8 = torch.from_numpy(images.copy())
    labels = torch.from_numpy(labels_np.copy())
    models = [wide_resnet(28, 2, num_outputs=2).train() for _ in range(args.models)]

    print(
        f"WRN-28-2, 32 px, {args.models} models x batch {args.batch}, {len(images)} images, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    gen = torch.Generator().manual_seed(args.seed)
    rates = measure(
        {
            "batched": batched_runner([copy.deepcopy(m) for m in models], images_u8, labels, args.batch, 0.05, gen),
            "hybrid": hybrid_runner([copy.deepcopy(m) for m in models], images_u8, labels, args.batch, 0.05, gen),
            "naive": naive_runner([copy.deepcopy(m) for m in models], images, labels_np, args.batch, 0.05, args.seed),
        },
        args.steps,
        args.repeats,
    )
    print(f"{'mode':<10}{'images/s median':>16}{'best':>8}   repeats")
    for mode, rs in rates.items():
        print(f"{mode:<10}{statistics.median(rs):>16.1f}{max(rs):>8.1f}   {', '.join(f'{r:.1f}' for r in rs)}")
    b, n = rates["batched"], rates["naive"]
    print(f"ratio batched/naive: median {statistics.median(b) / statistics.median(n):.2f}, best {max(b) / max(n):.2f}")
    f_rate, s_rate = data_path_rates(images_u8, images, labels_np, args.models, 256, 5, args.seed)
    print(
        f"input pipeline only (crop+flip+normalise), images/s: batched {f_rate:.0f}, "
        f"per-image torchvision {s_rate:.0f}, ratio {f_rate / s_rate:.1f}"
    )


if __name__ == "__main__":
    main()
