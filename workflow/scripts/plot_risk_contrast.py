"""Snakemake script: the aggregate-vs-patient risk contrast figure."""

import pandas as pd

from mia_audit import utility
from mia_audit.plots import risk, style
from mia_audit.runtime import run_script


def main(log):
    sm = snakemake
    fig = risk.risk_contrast(
        pd.read_parquet(sm.input.patients),
        pd.read_csv(sm.input.attacks, sep="\t"),
        pd.read_parquet(sm.input.roc),
        title=f"{sm.wildcards.dataset} / {sm.wildcards.experiment}",
        util=utility.read(sm.input.utility),
    )
    style.save(fig, sm.output.png, sm.output.pdf)
    log.info("wrote %s and %s", sm.output.png, sm.output.pdf)


run_script(main, snakemake.log[0])
