"""Image preprocessing at scale: N grey JPEGs → parallel decode/resize/crop → inputs.zarr.

Generates ``--n`` (default 20,000) noisy 256×256 grey JPEGs once into
benchmarks/out/preprocess/ (laid out as the Fitzpatrick 17k data set: a CSV and
images/<md5hash>.jpg, so the real adapter and pipeline are measured), then runs
``mia_audit.data.prepare.prepare`` and prints images/s and peak resident memory of
this process and of its worker processes (``resource.getrusage``, ru_maxrss in KiB).

    PYTHONPATH=workflow python benchmarks/bench_preprocess.py --n 20000 --workers 2 --size 64
"""

from __future__ import annotations

import argparse
import resource
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

OUT = Path(__file__).resolve().parent / "out" / "preprocess"


def _write(args):
    i, folder = args
    rng = np.random.default_rng(i)
    base = np.linspace(0, 200, 256, dtype=np.float32)[None, :] + rng.normal(0, 25, (256, 256))
    Image.fromarray(np.clip(base, 0, 255).astype(np.uint8)).save(Path(folder) / f"{i:032x}.jpg", quality=85)


def generate(n: int, workers: int) -> Path:
    root = OUT / f"n{n}"
    csv = root / "fitzpatrick17k.csv"
    if csv.exists():
        return root
    (root / "images").mkdir(parents=True, exist_ok=True)
    with ProcessPoolExecutor(workers) as ex:
        list(ex.map(_write, [(i, str(root / "images")) for i in range(n)], chunksize=256))
    pd.DataFrame(
        {
            "md5hash": [f"{i:032x}" for i in range(n)],
            "fitzpatrick_scale": np.arange(n) % 6 + 1,
            "three_partition_label": np.where(np.arange(n) % 3, "benign", "malignant"),
            "label": "x",
        }
    ).to_csv(csv, index=False)
    return root


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--block", type=int, default=1024)
    a = ap.parse_args(argv)
    from mia_audit.data.prepare import prepare

    t0 = time.perf_counter()
    root = generate(a.n, a.workers)
    t_gen = time.perf_counter() - t0
    dest = OUT / "result"
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    spec = {
        "adapter": "fitzpatrick17k",
        "root": str(root),
        "image_size": a.size,
        "channels": 1,
        "workers": a.workers,
        "block_records": a.block,
        "subgroups": {"skin": {"column": "skin_type"}},
    }
    t0 = time.perf_counter()
    rec = prepare(spec, dest / "records.parquet", dest / "inputs.zarr")
    dt = time.perf_counter() - t0
    me = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(
        f"images: {len(rec)} ({a.size} px grey, {a.workers} workers, blocks of {a.block}); "
        f"generation {t_gen:.1f} s (0 if reused)"
    )
    print(f"preprocess: {dt:.1f} s = {len(rec) / dt:.0f} images/s")
    print(
        f"peak RSS: main process {me:.0f} MiB, largest worker {kids:.0f} MiB; "
        f"output {sum(f.stat().st_size for f in (dest / 'inputs.zarr').rglob('*') if f.is_file()) / 2**20:.1f} MiB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
