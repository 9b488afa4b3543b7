"""Snakemake script: distribution of record AUC with the mean patient AUC marked."""

import pandas as pd

from mia_audit.plots import risk, style
from mia_audit.runtime import run_script


def main(log):
    sm = snakemake
    fig = risk.record_auc(
        pd.read_parquet(sm.input.records),
        pd.read_parquet(sm.input.patients),
        title=f"{sm.wildcards.dataset} / {sm.wildcards.experiment}: record MIA AUC",
    )
    style.save(fig, sm.output.png, sm.output.pdf)
    log.info("wrote %s and %s", sm.output.png, sm.output.pdf)


run_script(main, snakemake.log[0])
