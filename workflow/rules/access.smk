# Partial-access attacks: one cube per access level (see workflow/mia_audit/query/cube.py) and its
# record and patient risk. The query_models jobs fill these cubes next to the full-access one.


rule create_access_cube:
    """The cube skeleton of one partial-access level (same layout as the full-access cube)."""
    input:
        unpack(R.selection_choice),
        records=f"{RESULTS}/{{dataset}}/records.parquet",
        inputs=f"{RESULTS}/{{dataset}}/inputs.zarr",  # label names
        membership=f"{RESULTS}/{{dataset}}/membership.zarr",
    output:
        cube=directory(f"{RESULTS}/{{dataset}}/{{experiment}}/access/{{access_level}}/cube.zarr"),
    params:
        experiment=R.experiment_config,
        dataset=R.dataset_config,
        views=R.query_views,
        access_level="{access_level}",
    resources:  # one light job of a group (pipeline/resources.py)
        mem_mb=R.light_mem_mb,
        runtime=R.light_runtime,
        group_slot=1,
    log:
        f"{LOGS}/{{dataset}}/{{experiment}}/create_access_cube_{{access_level}}.log",
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/create_cube.py"


rule audit_access_records:
    """Record-level AUC and patient risk when the attacker knows only part of each record."""
    input:
        cube=f"{RESULTS}/{{dataset}}/{{experiment}}/access/{{access_level}}/cube.zarr",
        queries=all_shard_queries,
    output:
        records=f"{RESULTS}/{{dataset}}/{{experiment}}/audit/access_{{access_level}}/record_risk.parquet",
        patients=f"{RESULTS}/{{dataset}}/{{experiment}}/audit/access_{{access_level}}/patient_risk.parquet",
    params:
        audit=R.audit_params("audit_access_records"),
    resources:  # one light job of a group (pipeline/resources.py)
        mem_mb=R.light_mem_mb,
        runtime=R.light_runtime,
        group_slot=1,
    log:
        f"{LOGS}/{{dataset}}/{{experiment}}/audit_access_records_{{access_level}}.log",
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/audit_access.py"
