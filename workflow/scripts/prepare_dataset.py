"""Snakemake script: a data set, read by its adapter → records.parquet + inputs.zarr."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821 (the workflow's library)

from mia_audit.adapters.pipeline import prepare  # noqa: E402
from mia_audit.runtime import run_script  # noqa: E402


def main(log):
    prepare(dict(snakemake.params.spec), snakemake.output.records, snakemake.output.inputs, log=log)  # noqa: F821


run_script(main, snakemake.log[0])  # noqa: F821
