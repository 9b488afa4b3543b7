"""Snakemake script: survival function of patient AUC, every experiment of one data set on one axis."""

import pandas as pd

from mia_audit.pipeline.runtime import run_script
from mia_audit.plots import risk, style
from mia_audit.train import model_utility


def main(log):
    sm = snakemake
    patients = {
        name: pd.read_parquet(path) for name, path in zip(sm.params.experiments, sm.input.patients, strict=True)
    }
    utilities = {
        name: model_utility.read(path) for name, path in zip(sm.params.experiments, sm.input.utilities, strict=True)
    }
    fig = risk.esf_by_experiment(
        patients, title=f"{sm.wildcards.dataset}: patient risk by experiment", utilities=utilities
    )
    style.save(fig, sm.output.png, sm.output.pdf)
    log.info("wrote %s and %s", sm.output.png, sm.output.pdf)


run_script(main, snakemake.log[0])
