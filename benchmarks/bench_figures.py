"""Seconds to draw and save each figure of one experiment, from a finished run's tables.

Draws every figure of rule plot_experiment (mia_audit.plots.experiment) into a scratch folder,
alternating two ways of saving, and prints the median CPU and wall seconds per figure:

* ``now``: style.save measures the tight box once, at the PNG's resolution, for both files;
* ``before``: savefig measures each file's tight box itself (what the workflow did before;
  the PNGs are identical, the PDFs' boxes differ by a fraction of a point).

Both save a 300-dpi PNG and a PDF with TrueType fonts, under the figures' style.

Tables are read once, outside the timings.

    .venv/bin/python benchmarks/bench_figures.py RESULTS [--dataset pbc] [--experiment mlp] [--repeats 3]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import tempfile
import time
from pathlib import Path

from mia_audit.pipeline import plan
from mia_audit.plots import experiment, style


@contextlib.contextmanager
def before():
    """The previous style.save: savefig measures the tight box of each file itself."""
    new_save = style.save

    def save(fig, png, pdf):
        with style.plt.rc_context(style.STYLE):
            fig.savefig(png, bbox_inches="tight")
            fig.savefig(pdf, bbox_inches="tight")
        style.plt.close(fig)

    style.save = save
    try:
        yield
    finally:
        style.save = new_save


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", type=Path, help="a finished run's results folder")
    ap.add_argument("--dataset", default="pbc")
    ap.add_argument("--experiment", default="mlp")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    base = args.results / args.dataset / args.experiment
    attributes = sorted(p.stem for p in (base / "subgroups").glob("*.tsv") if p.stem not in plan.RESERVED_ATTRIBUTES)
    paths = {
        "patients": base / "audit/patient_risk.parquet",
        "records": base / "audit/record_risk.parquet",
        "attacks": base / "audit/aggregate_attacks.tsv",
        "roc": base / "audit/aggregate_roc.parquet",
        "utility": base / "models/utility.tsv",
        "convergence": base / "audit/convergence.tsv",
        "convergence_summary": base / "audit/convergence_summary.tsv",
        **{f"subgroups_{a}": base / f"subgroups/{a}.tsv" for a in attributes},
    }
    tables = {k: experiment.read_table(k, str(p)) for k, p in paths.items()}
    drawers = experiment.figure_drawers(f"{args.dataset} / {args.experiment}", attributes)
    needs = experiment.figure_tables(attributes)
    times: dict[tuple[str, str], list[tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.repeats + 1):  # the first round warms caches (fonts, imports)
            for mode in ("before", "now"):
                with before() if mode == "before" else contextlib.nullcontext():
                    for name, keys in needs.items():
                        c0, w0 = time.process_time(), time.perf_counter()
                        fig = drawers[name](*(tables[k] for k in keys))
                        style.save(fig, f"{tmp}/{name}.png", f"{tmp}/{name}.pdf")
                        if rep:
                            times.setdefault((mode, name), []).append(
                                (time.process_time() - c0, time.perf_counter() - w0)
                            )
    print(f"load average {os.getloadavg()[0]:.2f}; median seconds over {args.repeats} repeats")
    print(f"{'figure':22s} {'before cpu':>10s} {'now cpu':>8s} {'before wall':>11s} {'now wall':>9s}")
    total = {"before": [0.0, 0.0], "now": [0.0, 0.0]}
    for name in needs:
        row = []
        for mode in ("before", "now"):
            cpu = statistics.median(t[0] for t in times[(mode, name)])
            wall = statistics.median(t[1] for t in times[(mode, name)])
            total[mode][0] += cpu
            total[mode][1] += wall
            row.append((cpu, wall))
        print(f"{name:22s} {row[0][0]:10.3f} {row[1][0]:8.3f} {row[0][1]:11.3f} {row[1][1]:9.3f}")
    n = len(needs)
    print(
        f"{'mean per figure':22s} {total['before'][0] / n:10.3f} {total['now'][0] / n:8.3f} "
        f"{total['before'][1] / n:11.3f} {total['now'][1] / n:9.3f}"
    )


if __name__ == "__main__":
    main()
