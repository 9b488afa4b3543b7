"""Benchmark: the cost of the cube's integrity checks (workflow/mia_audit/integrity.py).

Builds a cube with the workflow's own functions — ``cube.create_cube`` (with the member
digests), then one ``write_confidence`` + ``integrity.cube_region`` per shard, as the query
jobs do — of ``--models`` × ``--records`` (default 200 × 500,000, shards of 50, the
default record chunk of 65,536), and times:

* the query side: the digests of a shard's rows against writing them;
* the record-risk stage (``audit.write_record_risk``) without and with the streaming
  check (:meth:`integrity.CubeCheck.check_slab`): the overhead of verifying every region
  as it is read;
* the separate full pass of :meth:`integrity.CubeCheck.verify` (what ``attack_aggregate``
  does before it reads the pool records).

    PYTHONPATH=workflow python benchmarks/bench_integrity.py
    PYTHONPATH=workflow python benchmarks/bench_integrity.py --records 2000000

It prints seconds, MB/s and the overhead ratios (median of ``--repeats``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from mia_audit import integrity
from mia_audit.audit import cube_audit
from mia_audit.query import cube


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", type=int, default=200)
    ap.add_argument("--records", type=int, default=500_000)
    ap.add_argument("--per-shard", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    tmp = Path(tempfile.mkdtemp(prefix="bench_integrity_"))
    try:
        n, m, k = args.records, args.models, args.per_shard
        records = pd.DataFrame(
            {
                "record_id": np.arange(n).astype(str),
                "patient_id": (np.arange(n) // 4).astype(str),
                "split": np.where(np.arange(n) % 5 == 0, "test", "pool"),
            }
        )
        member = rng.random((m, n)) < 0.5
        path = tmp / "cube.zarr"
        t0 = time.perf_counter()
        cube.create_cube(path, records, member, models_per_shard=k)
        print(f"create_cube (with member digests): {time.perf_counter() - t0:.2f} s")
        summaries, write_s, digest_s = [], 0.0, 0.0
        for s, m0 in enumerate(range(0, m, k)):
            block = (rng.standard_normal((k, n)) + member[m0 : m0 + k]).astype(np.float32)
            t0 = time.perf_counter()
            cube.write_confidence(path, m0, block)
            write_s += time.perf_counter() - t0
            t0 = time.perf_counter()
            region = integrity.cube_region(path, m0, block)
            digest_s += time.perf_counter() - t0
            f = tmp / f"shard_{s}.json"
            f.write_text(json.dumps({"cube_regions": {"full": region}}))
            summaries.append(f)
        mb = m * n * 4 / 1e6
        print(f"query side: writing {mb:.0f} MB of confidences {write_s:.2f} s, their digests {digest_s:.2f} s")

        out = tmp / "record_risk.parquet"
        check = integrity.CubeCheck(path, summaries)
        plain_t, checked_t, full_t = [], [], []
        for _ in range(args.repeats):  # interleaved, so that a busy spell of the machine hits both
            for times, fn in (
                (plain_t, lambda: cube_audit.write_record_risk(path, out)),
                (checked_t, lambda: cube_audit.write_record_risk(path, out, check=check.check_slab)),
                (full_t, check.verify),
            ):
                t0 = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t0)
        plain, checked, full = (float(np.median(t)) for t in (plain_t, checked_t, full_t))
        # the checks alone, on slabs already read (the stage's reads are noisy on a shared machine)
        import zarr

        root = zarr.open_group(str(path), mode="r")
        conf, mem = root["confidence"], root["member"]
        chunk, pure = conf.chunks[1], 0.0
        for start in range(0, n, chunk):
            stop = min(n, start + chunk)
            c_slab, m_slab = conf[:, start:stop], mem[:, start:stop]
            t0 = time.perf_counter()
            check.check_slab(start, stop, c_slab, m_slab)
            pure += time.perf_counter() - t0
        print(
            f"record risk without check: {plain:.2f} s; with the streaming check: {checked:.2f} s "
            f"(median of {args.repeats}; {100 * (checked / plain - 1):+.0f} %)"
        )
        print(
            f"the streaming checks alone: {pure:.2f} s = {100 * pure / plain:.0f} % of the record-risk stage "
            f"({(mb + m * n / 1e6) / pure:.0f} MB/s of confidences and membership)"
        )
        print(
            f"separate verify pass (attack_aggregate): {full:.2f} s = {mb / full:.0f} MB/s of confidences "
            f"({100 * full / plain:.0f} % of the record-risk stage)"
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
