"""Digest of every table of a results folder, to show that a change leaves the results alone.

Prints one line per table: a sha256 of its content and the file. TSVs are compared by content
without their timing columns (``seconds``: selection.tsv, baselines.tsv), Parquet by its
values, Zarr stores per array by values, dtype and shape; logs and figures are left out.
run/software.tsv names the git commit, so it differs between commits by design.

    .venv/bin/python benchmarks/results_digest.py RESULTS_A > a.txt
    .venv/bin/python benchmarks/results_digest.py RESULTS_B > b.txt && diff a.txt b.txt
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import zarr

TIMING_COLUMNS = {"seconds"}


def digests(root: Path) -> dict[str, str]:
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if rel.startswith("logs/"):
            continue
        if p.suffix == ".tsv":
            df = pd.read_csv(p, sep="\t", dtype=str, keep_default_na=False)
            df = df.drop(columns=[c for c in df.columns if c in TIMING_COLUMNS])
            out[rel] = hashlib.sha256(df.to_csv(sep="\t", index=False).encode()).hexdigest()
        elif p.suffix == ".parquet":
            df = pd.read_parquet(p)
            h = pd.util.hash_pandas_object(df, index=True).to_numpy().tobytes() + str(list(df.columns)).encode()
            out[rel] = hashlib.sha256(h).hexdigest()
        elif p.suffix == ".zarr" and p.is_dir():
            for name, arr in sorted(zarr.open_group(str(p), mode="r").arrays()):
                a = np.asarray(arr[...])
                out[f"{rel}/{name}"] = hashlib.sha256(a.tobytes() + f"{a.dtype}{a.shape}".encode()).hexdigest()
    return out


if __name__ == "__main__":
    for rel, h in digests(Path(sys.argv[1])).items():
        print(f"{h[:16]}  {rel}")
