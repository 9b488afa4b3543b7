"""Snakemake script: scatter of tail residual against group share over the whole run."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821

import pandas as pd  # noqa: E402

from mia_audit.plots import style, subgroups  # noqa: E402
from mia_audit.runtime import run_script  # noqa: E402


def main(log):
    sm = snakemake  # noqa: F821
    pts = pd.read_csv(sm.input.points, sep="\t", keep_default_na=False, na_values=[""], dtype={"group": str})
    summ = pd.read_csv(sm.input.summary, sep="\t", keep_default_na=False, na_values=[""])
    fig = subgroups.meta_scatter(pts, summ, sm.params.large_residual, sm.params.small_group_share)
    style.save(fig, sm.output.png, sm.output.pdf)
    log.info("wrote %s and %s", sm.output.png, sm.output.pdf)


run_script(main, snakemake.log[0])  # noqa: F821
