"""Snakemake script: survival function of patient AUC, every experiment of one data set on one axis."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821

import pandas as pd  # noqa: E402

from mia_audit.plots import risk, style  # noqa: E402
from mia_audit.runtime import run_script  # noqa: E402


def main(log):
    sm = snakemake  # noqa: F821
    patients = {name: pd.read_parquet(path) for name, path in zip(sm.params.experiments, sm.input.patients)}
    fig = risk.esf_by_experiment(patients, title=f"{sm.wildcards.dataset}: patient risk by experiment")
    style.save(fig, sm.output.png, sm.output.pdf)
    log.info("wrote %s and %s", sm.output.png, sm.output.pdf)


run_script(main, snakemake.log[0])  # noqa: F821
