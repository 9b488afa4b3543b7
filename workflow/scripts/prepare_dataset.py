"""Snakemake script: a data set, read by its adapter → records.parquet + inputs.zarr."""

from mia_audit.adapters.pipeline import prepare
from mia_audit.runtime import run_script


def main(log):
    # decoding processes = the job's threads (plan.prepare_threads; what the scheduler granted)
    prepare(
        dict(snakemake.params.spec),
        snakemake.output.records,
        snakemake.output.inputs,
        log=log,
        workers=snakemake.threads,
    )


run_script(main, snakemake.log[0])
