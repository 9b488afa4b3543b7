rule prepare_dataset:
    """Read a data set by its adapter and write the records table and model inputs."""
    input:
        table=dataset_source,
    output:
        records=f"{RESULTS}/{{dataset}}/records.parquet",
        inputs=directory(f"{RESULTS}/{{dataset}}/inputs.zarr"),
    params:
        spec=dataset_config,
    threads: prepare_threads
    resources:
        mem_mb=prepare_mem_mb,
        runtime=prepare_runtime,
    log:
        f"{LOGS}/{{dataset}}/prepare_dataset.log",
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/prepare_dataset.py"
