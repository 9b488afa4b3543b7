"""Snakemake script: patient AUC with the interval of the maximum, and the direct patient attack."""

import pandas as pd

from mia_audit.plots import risk, style
from mia_audit.runtime import run_script


def main(log):
    sm = snakemake
    fig = risk.patient_intervals(
        pd.read_parquet(sm.input.patients), title=f"{sm.wildcards.dataset} / {sm.wildcards.experiment}"
    )
    style.save(fig, sm.output.png, sm.output.pdf)
    log.info("wrote %s and %s", sm.output.png, sm.output.pdf)


run_script(main, snakemake.log[0])
