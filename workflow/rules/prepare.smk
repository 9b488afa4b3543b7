rule prepare_dataset:
    """Validate the raw table and write the records table and standardised model inputs."""
    input:
        table=dataset_table,
    output:
        records=f"{RESULTS}/{{dataset}}/records.parquet",
        inputs=directory(f"{RESULTS}/{{dataset}}/inputs.zarr"),
    params:
        spec=dataset_config,
    log:
        "logs/{dataset}/prepare_dataset.log",
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/prepare_dataset.py"
