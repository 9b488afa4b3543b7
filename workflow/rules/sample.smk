rule sample_membership:
    """Balanced (models × pool patients) membership matrix, deterministic from the seed."""
    input:
        records=f"{RESULTS}/{{dataset}}/records.parquet",
    output:
        membership=directory(f"{RESULTS}/{{dataset}}/membership.zarr"),
    params:
        spec=R.dataset_config,
    resources:  # one light job of a group (pipeline/resources.py)
        mem_mb=R.light_mem_mb,
        runtime=R.light_runtime,
        group_slot=1,
    log:
        f"{LOGS}/{{dataset}}/sample_membership.log",
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/sample_membership.py"
