"""Snakemake script: the attack ROC comparison figure."""

import pandas as pd

from mia_audit.plots import attacks, style
from mia_audit.runtime import run_script


def main(log):
    sm = snakemake
    fig = attacks.attack_roc(
        pd.read_parquet(sm.input.roc),
        pd.read_csv(sm.input.attacks, sep="\t"),
        title=f"{sm.wildcards.dataset} / {sm.wildcards.experiment}",
    )
    style.save(fig, sm.output.png, sm.output.pdf)
    log.info("wrote %s", sm.output.png)


run_script(main, snakemake.log[0])
