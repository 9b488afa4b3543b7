# The cube is assembled from its shards' outputs (mia_audit/query/assemble.py): create_cube writes
# its skeleton, each query job its own store of rows, assemble_cube copies the skeleton and fills
# in every shard's rows. No job writes into another job's output, so the workflow also runs
# where jobs see only the files they declare (a storage plugin, --shared-fs-usage none).


rule create_cube:
    """The cube skeleton: record coordinates, the membership mask, empty confidences."""
    input:
        unpack(R.selection_choice),  # the chosen settings are part of the cube's description
        settings=ancient(f"{RESULTS}/{{dataset}}/{{experiment}}/settings.json"),
        records=f"{RESULTS}/{{dataset}}/records.parquet",
        inputs=f"{RESULTS}/{{dataset}}/inputs.zarr",  # label names
        membership=f"{RESULTS}/{{dataset}}/membership.zarr",
    output:
        cube=directory(f"{RESULTS}/{{dataset}}/{{experiment}}/cube_skeleton.zarr"),
    params:
        experiment=R.experiment_config,
        dataset=R.dataset_config,
        views=R.query_views,
    priority: CHAIN_PRIORITY
    resources:  # one light job of a group (pipeline/resources.py)
        mem_mb=R.light_mem_mb,
        runtime=R.light_runtime,
        group_slot=1,
    log:
        f"{LOGS}/{{dataset}}/{{experiment}}/create_cube.log",
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/create_cube.py"


rule query_models:
    """Query one shard's models in eval mode on every record; write its rows of the cube to its own store."""
    input:
        weights=f"{RESULTS}/{{dataset}}/{{experiment}}/models/shard_{{shard}}.safetensors",
        manifest=f"{RESULTS}/{{dataset}}/{{experiment}}/models/shard_{{shard}}_manifest.json",
        records=f"{RESULTS}/{{dataset}}/records.parquet",
        inputs=f"{RESULTS}/{{dataset}}/inputs.zarr",
        cube=f"{RESULTS}/{{dataset}}/{{experiment}}/cube_skeleton.zarr",  # views and record chunks
        access_cubes=R.access_skeleton_paths,
    output:
        done=f"{RESULTS}/{{dataset}}/{{experiment}}/query/shard_{{shard}}.json",
        rows=directory(f"{RESULTS}/{{dataset}}/{{experiment}}/query/shard_{{shard}}.zarr"),
    params:
        experiment=R.experiment_config,
        models=R.shard_models,
        device=config["device"],
        access=R.access_query_spec,
    threads: R.query_cpus
    resources:
        mem_mb=R.shard_mem_mb,
        runtime=R.query_runtime,
        gpu=R.shard_gpus,
        gpu_model=R.shard_gpu_model,
        group_slot=1,
    priority: CHAIN_PRIORITY
    log:
        f"{LOGS}/{{dataset}}/{{experiment}}/query_models_{{shard}}.log",
    conda:
        "../../envs/train.yaml"
    script:
        "../scripts/query_models.py"


rule assemble_cube:
    """The confidence cube: the skeleton with every shard's rows (of an adaptive audit: the waves trained)."""
    input:
        skeleton=f"{RESULTS}/{{dataset}}/{{experiment}}/cube_skeleton.zarr",
        rows=all_shard_rows,
        queries=all_shard_queries,  # each shard's record of its rows, checked when assembled
    output:
        cube=directory(f"{RESULTS}/{{dataset}}/{{experiment}}/cube.zarr"),
    params:
        level="full",
    resources:  # one light job of a group (pipeline/resources.py)
        mem_mb=R.light_mem_mb,
        runtime=R.light_runtime,
        group_slot=1,
    priority: CHAIN_PRIORITY
    log:
        f"{LOGS}/{{dataset}}/{{experiment}}/assemble_cube.log",
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/assemble_cube.py"
