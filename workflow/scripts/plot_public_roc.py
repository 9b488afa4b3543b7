"""Snakemake script: ROC figure of the public-model attacks."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821

import pandas as pd  # noqa: E402

from mia_audit import plots, public_models as pm  # noqa: E402
from mia_audit.runtime import run_script  # noqa: E402


def main(log):
    sm = snakemake  # noqa: F821
    fig = pm.roc_figure(pd.read_parquet(sm.input.scores), pd.read_csv(sm.input.summary, sep="\t"),
                        title=sm.wildcards.public)
    plots.save(fig, sm.output.png, sm.output.pdf)
    log.info("wrote %s", sm.output.png)


run_script(main, snakemake.log[0])  # noqa: F821
