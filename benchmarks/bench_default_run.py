"""Wall time of the default audit (config/config.yaml: 200 MLPs on the bundled cohort).

Runs the whole workflow in a scratch directory (nothing in results/ is touched) with
`--cores N`, repeats, and prints the median wall time and each rule's share from the
job logs' timestamps.

    .venv/bin/python benchmarks/bench_default_run.py [--cores 2] [--repeats 1]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args()
    snakemake = str(Path(sys.executable).with_name("snakemake"))
    times = []
    for r in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            cfg = yaml.safe_load((ROOT / "config/config.yaml").read_text())
            cfg["datasets"]["pbc"]["path"] = str(ROOT / cfg["datasets"]["pbc"]["path"])
            (Path(tmp) / "config.yaml").write_text(yaml.safe_dump(cfg))
            t0 = time.perf_counter()
            subprocess.run(
                [
                    snakemake,
                    "--snakefile",
                    str(ROOT / "Snakefile"),
                    "--directory",
                    tmp,
                    "--configfile",
                    str(Path(tmp) / "config.yaml"),
                    "--cores",
                    str(args.cores),
                    "--quiet",
                    "all",
                ],
                check=True,
            )
            times.append(time.perf_counter() - t0)
            trained = [
                line
                for p in sorted(Path(tmp, "results/logs/pbc/mlp").glob("train_models_*.log"))
                for line in p.read_text().splitlines()
                if "trained" in line
            ]
        print(f"repeat {r + 1}: {times[-1]:.1f} s; " + "; ".join(t.split("INFO ")[-1] for t in trained))
    print(
        f"\ndefault audit (200 models, {args.cores} cores): median wall time {statistics.median(times):.1f} s "
        f"({statistics.median(times) / 60:.2f} min) over {len(times)} run(s)"
    )


if __name__ == "__main__":
    main()
