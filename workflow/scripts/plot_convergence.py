"""Snakemake script: the convergence figure of one experiment."""

import pandas as pd

from mia_audit.plots import convergence, style
from mia_audit.runtime import run_script


def main(log):
    sm = snakemake
    table = pd.read_csv(sm.input.table, sep="\t", keep_default_na=False, na_values=[""], dtype={"key": str})
    summary = pd.read_csv(sm.input.summary, sep="\t", keep_default_na=False, na_values=[""], dtype={"key": str})
    fig = convergence.convergence(table, summary, title=f"{sm.wildcards.dataset} / {sm.wildcards.experiment}")
    style.save(fig, sm.output.png, sm.output.pdf)
    log.info("wrote %s and %s", sm.output.png, sm.output.pdf)


run_script(main, snakemake.log[0])
