# validate_dataset runs every check of the data set (the adapter's own reading and preparation
# code, writing nothing) before prepare_dataset starts: Snakemake deletes a job's outputs when
# the job starts, so a bad input must stop the run one step earlier, while the good
# records.parquet and inputs.zarr of an earlier run are still intact. Its report is named by a
# digest of the data set's config block and of its files' content (plan.validation_report):
# a changed table is validated and prepared again even with an older modification time, and
# a configuration that passed keeps its report, so going back to it after a failed check of
# another one finds everything up to date instead of preparing the data set again. It is a
# local rule so that a cluster
# run never submits it in one job group with prepare_dataset (a group's outputs are all
# removed when the group is submitted).


localrules:
    validate_dataset,


rule validate_dataset:
    """Check a data set (file, columns, values, label, split, leaks) and report what preparing it will do."""
    input:
        table=R.dataset_source,
    output:
        report=f"{RESULTS}/{{dataset}}/validation/{{digest}}.json",
        flags=f"{RESULTS}/{{dataset}}/validation/{{digest}}_range_flags.tsv",
    params:
        spec=R.dataset_config,
    log:
        f"{LOGS}/{{dataset}}/validate_dataset_{{digest}}.log",
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/validate_dataset.py"


rule prepare_dataset:
    """Read a data set by its adapter and write the records table and model inputs."""
    input:
        table=R.dataset_source,
        validation=R.dataset_validation,
    output:
        records=f"{RESULTS}/{{dataset}}/records.parquet",
        inputs=directory(f"{RESULTS}/{{dataset}}/inputs.zarr"),
    params:
        spec=R.dataset_config,
    threads: R.prepare_threads
    resources:
        mem_mb=R.prepare_mem_mb,
        runtime=R.prepare_runtime,
        group_slot=1,
    log:
        f"{LOGS}/{{dataset}}/prepare_dataset.log",
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/prepare_dataset.py"
