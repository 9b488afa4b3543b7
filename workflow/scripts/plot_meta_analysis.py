"""Snakemake script: scatter of tail residual against group share over the whole run."""

import pandas as pd

from mia_audit.pipeline.runtime import run_script
from mia_audit.plots import style, subgroups


def main(log):
    sm = snakemake
    pts = pd.read_csv(sm.input.points, sep="\t", keep_default_na=False, na_values=[""], dtype={"group": str})
    summ = pd.read_csv(sm.input.summary, sep="\t", keep_default_na=False, na_values=[""])
    fig = subgroups.meta_scatter(pts, summ, sm.params.large_residual, sm.params.small_group_share)
    style.save(fig, sm.output.png, sm.output.pdf)
    log.info("wrote %s and %s", sm.output.png, sm.output.pdf)


run_script(main, snakemake.log[0])
