"""Benchmark: the record-risk stage over a large confidence cube on disk.

Builds (or reuses) a synthetic cube of ``--models`` × ``--records`` in Zarr under
``benchmarks/out/`` — ``confidence`` float32 and ``member`` bool, chunked by records —
writing it one record chunk at a time so that building never holds the cube in memory.
Then it times the record-risk stage reading the cube in record blocks and prints the wall
time, records/s and the peak resident memory (``resource.getrusage().ru_maxrss``), and
checks the peak stays under ``--max-rss-gib`` (default 2 GiB).

The synthetic cube: record r has an in-shift δ_r ~ Exponential(mean 0.5) and
φ = N(0, 1) + δ_r · member, so its true bi-normal AUC is Φ(δ_r/√2); the benchmark reports
the mean absolute error of the estimated AUC against it as a sanity check. Membership
is balanced per pseudo-patient (4 consecutive records, which share the patient's
membership): every record is IN for exactly half of the models.

    PYTHONPATH=workflow python benchmarks/bench_record_risk.py                 # 10 M records
    PYTHONPATH=workflow python benchmarks/bench_record_risk.py --records 1000000
    PYTHONPATH=workflow python benchmarks/bench_record_risk.py --records 200000 --engine audit-full --boot 500

``--engine audit-full`` runs the whole audit stage (:func:`mia_audit.audit.cube_audit.write_audit`):
the record table plus the per-patient bootstrap of the maximum (``--boot`` replicates) and
the direct patient attack, with the pseudo-patients of the synthetic cube (4 consecutive
records each, so patients close within a block).

Full size is 200 × 10 M × 5 bytes ≈ 10 GB before compression: check the free disk first.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import zarr
from scipy import stats as sps

from mia_audit.audit import stats

OUT = Path(__file__).resolve().parent / "out"
N_PATIENT_PATTERNS = 4096  # distinct balanced membership columns, reused across patients
RECORDS_PER_PATIENT = 4  # consecutive records of one pseudo-patient share its membership
LAYOUT = 2  # version of the synthetic cube's layout (1: membership per record, not per patient)


def _rss_gib() -> float:
    # Linux reports ru_maxrss in KiB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _shift(record_index: np.ndarray, seed: int) -> np.ndarray:
    """Per-record in-shift δ_r, a deterministic function of the record index."""
    # a counter-based generator keyed by the block start keeps blocks independent
    rng = np.random.default_rng([seed, 1, int(record_index[0])])
    return rng.exponential(0.5, size=record_index.size)


def build_cube(path: Path, n_models: int, n_records: int, chunk: int, seed: int) -> zarr.Group:
    """Write the synthetic cube block by block; reuse it if a complete one is there."""
    if path.exists():
        g = zarr.open_group(path, mode="r")
        a = g.attrs.asdict()
        if (
            a.get("complete")
            and a.get("shape") == [n_models, n_records]
            and a.get("seed") == seed
            and a.get("layout") == LAYOUT
        ):
            print(f"reusing {path}")
            if "record_id" not in g or "patient_id" not in g:
                g = zarr.open_group(path, mode="a")
                _add_record_coords(g, n_records, g["confidence"].chunks[1])
            return g
        print(f"{path} is incomplete or has another shape: rebuilding")
        shutil.rmtree(path)
    free = shutil.disk_usage(path.parent).free
    need = n_models * n_records * 5
    if need > 0.8 * free:
        sys.exit(f"cube needs ≈{need / 2**30:.1f} GiB but only {free / 2**30:.1f} GiB is free; use --records")
    g = zarr.open_group(path, mode="w")
    conf = g.create_array(
        "confidence",
        shape=(n_models, n_records),
        chunks=(n_models, chunk),
        dtype="float32",
        dimension_names=("model", "record"),
    )
    member = g.create_array(
        "member",
        shape=(n_models, n_records),
        chunks=(n_models, chunk),
        dtype="bool",
        dimension_names=("model", "record"),
    )
    # balanced membership: each pattern column is IN for exactly half of the models
    rng = np.random.default_rng([seed, 0])
    order = rng.random((n_models, N_PATIENT_PATTERNS)).argsort(axis=0).argsort(axis=0)
    patterns = order < n_models // 2
    t0 = time.perf_counter()
    for start in range(0, n_records, chunk):
        stop = min(start + chunk, n_records)
        idx = np.arange(start, stop)
        m = patterns[:, (idx // RECORDS_PER_PATIENT) % N_PATIENT_PATTERNS]  # a patient's records share membership
        brng = np.random.default_rng([seed, 2, start])
        x = brng.standard_normal((n_models, stop - start), dtype=np.float32)
        x += m * _shift(idx, seed).astype(np.float32)
        conf[:, start:stop] = x
        member[:, start:stop] = m
        print(f"  wrote records {start:>10,}–{stop:>10,}  ({time.perf_counter() - t0:6.1f} s)", flush=True)
    _add_record_coords(g, n_records, chunk)
    g.attrs.update({"complete": True, "shape": [n_models, n_records], "seed": seed, "layout": LAYOUT})
    print(f"built {path} in {time.perf_counter() - t0:.1f} s")
    return g


def _add_record_coords(g: zarr.Group, n_records: int, chunk: int) -> None:
    """``record_id`` and ``patient_id`` record coordinates (the audit stage reads them)."""
    for name, values in (
        ("record_id", np.arange(n_records, dtype=np.int64)),
        ("patient_id", np.arange(n_records, dtype=np.int64) // RECORDS_PER_PATIENT),
    ):
        if name not in g:
            arr = g.create_array(
                name, shape=(n_records,), chunks=(chunk * 4,), dtype="int64", dimension_names=("record",)
            )
            arr[:] = values


def record_risk_blocked(g: zarr.Group, block: int, sub_block: int, seed: int):
    """Record risk over the cube in record blocks: read one block, compute in sub-blocks.

    Returns the estimated AUC (float32) per record and the count per status.
    """
    conf, member = g["confidence"], g["member"]
    n_records = conf.shape[1]
    auc = np.empty(n_records, dtype=np.float32)
    status_counts: dict[str, int] = {}
    abs_err = 0.0
    for start in range(0, n_records, block):
        stop = min(start + block, n_records)
        c = conf[:, start:stop]
        m = member[:, start:stop]
        for s in range(0, stop - start, sub_block):
            e = min(s + sub_block, stop - start)
            rr = stats.record_risk(c[:, s:e], m[:, s:e])
            auc[start + s : start + e] = rr["auc"].to_numpy(dtype=np.float32)
            for k, v in rr["status"].value_counts().items():
                status_counts[k] = status_counts.get(k, 0) + int(v)
            truth = sps.norm.cdf(_shift(np.arange(start, stop), seed)[s:e] / np.sqrt(2))
            abs_err += float(np.nansum(np.abs(rr["auc"].to_numpy() - truth)))
        print(f"  record risk {stop:>10,}/{n_records:,}  RSS {_rss_gib():.2f} GiB", flush=True)
    return auc, status_counts, abs_err / n_records


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", type=int, default=200)
    ap.add_argument("--records", type=int, default=10_000_000)
    ap.add_argument("--chunk", type=int, default=262_144, help="records per Zarr chunk (and read block)")
    ap.add_argument("--sub-block", type=int, default=65_536, help="records per record_risk call")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-rss-gib", type=float, default=2.0)
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument(
        "--engine",
        choices=("loop", "audit", "audit-full"),
        default="audit",
        help="audit: the workflow's record-risk stage (mia_audit.audit.cube_audit.write_record_risk, streaming to "
        "Parquet; block = --sub-block); audit-full: the whole stage with the patient statistics "
        "(mia_audit.audit.cube_audit.write_audit); loop: a minimal blocked loop, for comparison",
    )
    ap.add_argument("--boot", type=int, default=500, help="bootstrap replicates of --engine audit-full")
    a = ap.parse_args(argv)

    a.out.mkdir(parents=True, exist_ok=True)
    path = a.out / f"cube_{a.models}x{a.records}.zarr"
    g = build_cube(path, a.models, a.records, a.chunk, a.seed)
    rss_build = _rss_gib()

    t0 = time.perf_counter()
    if a.engine in ("audit", "audit-full"):
        from mia_audit.audit import cube_audit

        out_pq = a.out / f"record_risk_{a.models}x{a.records}.parquet"
        if a.engine == "audit":
            cube_audit.write_record_risk(path, out_pq, block_records=a.sub_block)
        else:
            _, extra, _ = cube_audit.write_audit(path, out_pq, block_records=a.sub_block, n_boot=a.boot, log=print)
            print(f"  {len(extra):,} patients; median attack AUC {extra['attack_auc'].median():.3f}")
        wall_stage = time.perf_counter() - t0
        rr = pd.read_parquet(out_pq, columns=["auc", "status"])
        counts = rr["status"].astype(str).value_counts().to_dict()
        truth = np.concatenate(
            [
                sps.norm.cdf(_shift(np.arange(s, min(s + a.chunk, a.records)), a.seed) / np.sqrt(2))
                for s in range(0, a.records, a.chunk)
            ]
        )
        mae = float(np.nanmean(np.abs(rr["auc"].to_numpy() - truth)))
        del rr, truth
    else:
        auc, counts, mae = record_risk_blocked(g, a.chunk, a.sub_block, a.seed)
    wall = wall_stage if a.engine != "loop" else time.perf_counter() - t0
    rss = _rss_gib()
    print(
        f"record risk ({a.engine}): {a.models} models × {a.records:,} records in {wall:.1f} s "
        f"= {a.records / wall:,.0f} records/s; peak RSS {rss:.2f} GiB "
        f"(after build {rss_build:.2f} GiB); statuses {counts}; "
        f"mean |AUC − true AUC| = {mae:.4f}"
    )
    if rss >= a.max_rss_gib:
        print(f"FAIL: peak RSS {rss:.2f} GiB ≥ {a.max_rss_gib} GiB")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
