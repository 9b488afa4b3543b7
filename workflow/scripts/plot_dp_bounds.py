"""Snakemake script: upper and lower bounds on the privacy loss per ε (AUC and ε)."""

import pandas as pd

from mia_audit.pipeline.runtime import run_script
from mia_audit.plots import dp as dp_plots
from mia_audit.plots import style


def main(log):
    sm = snakemake
    table = pd.read_csv(sm.input.table, sep="\t")
    fig = dp_plots.bounds_by_epsilon(table, title=f"{sm.wildcards.dataset}: DP bounds from both sides")
    style.save(fig, sm.output.png, sm.output.pdf)
    log.info("wrote %s and %s (%d rows)", sm.output.png, sm.output.pdf, len(table))


run_script(main, snakemake.log[0])
