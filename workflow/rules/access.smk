# Partial-access attacks: one cube per access level (see workflow/mia_audit/query/cube.py) and its
# record and patient risk. The query_models jobs write their rows of these cubes beside the
# full-access ones; assemble_access_cube puts them into each level's cube.


rule create_access_cube:
    """The cube skeleton of one partial-access level (same layout as the full-access cube)."""
    input:
        unpack(R.selection_choice),
        records=f"{RESULTS}/{{dataset}}/records.parquet",
        inputs=f"{RESULTS}/{{dataset}}/inputs.zarr",  # label names
        membership=f"{RESULTS}/{{dataset}}/membership.zarr",
    output:
        cube=directory(f"{RESULTS}/{{dataset}}/{{experiment}}/access/{{access_level}}/cube_skeleton.zarr"),
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


rule assemble_access_cube:
    """One partial-access level's cube: its skeleton with every shard's rows of that level."""
    input:
        skeleton=f"{RESULTS}/{{dataset}}/{{experiment}}/access/{{access_level}}/cube_skeleton.zarr",
        rows=all_shard_rows,
        queries=all_shard_queries,  # each shard's record of its rows, checked when assembled
    output:
        cube=directory(f"{RESULTS}/{{dataset}}/{{experiment}}/access/{{access_level}}/cube.zarr"),
    params:
        level="{access_level}",
    resources:  # one light job of a group (pipeline/resources.py)
        mem_mb=R.light_mem_mb,
        runtime=R.light_runtime,
        group_slot=1,
    log:
        f"{LOGS}/{{dataset}}/{{experiment}}/assemble_access_cube_{{access_level}}.log",
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/assemble_cube.py"


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
