"""Snakemake script: a data set, read by its adapter → records.parquet + inputs.zarr."""

from mia_audit.data.prepare import prepare
from mia_audit.pipeline import plan
from mia_audit.pipeline.runtime import run_script


def main(log):
    sm = snakemake
    # decoding processes = the job's threads (plan.prepare_threads; what the scheduler granted)
    prepare(
        plan.staged_dataset(sm.params.spec, sm.input.get("table")),  # the data as this job's input
        sm.output.records,
        sm.output.inputs,
        log=log,
        dataset=sm.wildcards.dataset,
        workers=sm.threads,
    )


run_script(main, snakemake.log[0])
