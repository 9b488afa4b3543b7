"""Snakemake script: standard errors of record AUC, delta method against Hanley–McNeil."""

import pandas as pd

from mia_audit.plots import risk, style
from mia_audit.runtime import run_script


def main(log):
    sm = snakemake
    fig = risk.standard_errors(
        pd.read_parquet(sm.input.records), title=f"{sm.wildcards.dataset} / {sm.wildcards.experiment}"
    )
    style.save(fig, sm.output.png, sm.output.pdf)
    log.info("wrote %s and %s", sm.output.png, sm.output.pdf)


run_script(main, snakemake.log[0])
