"""Snakemake script: the aggregate-vs-patient risk contrast figure."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821

import pandas as pd  # noqa: E402

from mia_audit.plots import risk, style  # noqa: E402
from mia_audit.runtime import run_script  # noqa: E402


def main(log):
    sm = snakemake  # noqa: F821
    fig = risk.risk_contrast(
        pd.read_parquet(sm.input.patients), pd.read_csv(sm.input.attacks, sep="\t"), pd.read_parquet(sm.input.roc),
        title=f"{sm.wildcards.dataset} / {sm.wildcards.experiment}",
    )
    style.save(fig, sm.output.png, sm.output.pdf)
    log.info("wrote %s and %s", sm.output.png, sm.output.pdf)


run_script(main, snakemake.log[0])  # noqa: F821
