rule sample_membership:
    """Balanced (models × pool patients) membership matrix, deterministic from the seed."""
    input:
        records=f"{RESULTS}/{{dataset}}/records.parquet",
    output:
        membership=directory(f"{RESULTS}/{{dataset}}/membership.zarr"),
    params:
        spec=R.dataset_config,
    log:
        f"{LOGS}/{{dataset}}/sample_membership.log",
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/sample_membership.py"
