"""Snakemake script: bi-normal against empirical record AUC, with the flagged records."""

import pandas as pd

from mia_audit.plots import risk, style
from mia_audit.runtime import run_script


def main(log):
    sm = snakemake
    records = pd.read_parquet(sm.input.records, columns=["auc", "auc_emp", "binormal_flag"])
    fig = risk.binormal_check(records, title=f"{sm.wildcards.dataset} / {sm.wildcards.experiment}")
    style.save(fig, sm.output.png, sm.output.pdf)
    log.info("%d records flagged; wrote %s and %s", int(records["binormal_flag"].sum()), sm.output.png, sm.output.pdf)


run_script(main, snakemake.log[0])
