"""Snakemake script: ROC figure of the public-model attacks."""

import pandas as pd

from mia_audit.pipeline.runtime import run_script
from mia_audit.plots import attacks, style


def main(log):
    sm = snakemake
    fig = attacks.public_roc(
        pd.read_parquet(sm.input.scores), pd.read_csv(sm.input.summary, sep="\t"), title=sm.wildcards.public
    )
    style.save(fig, sm.output.png, sm.output.pdf)
    log.info("wrote %s", sm.output.png)


run_script(main, snakemake.log[0])
