# One configuration per experiment folder: settings.json records the settings the folder's
# outputs are made with, and a run with other settings stops before any job (checks.py,
# check_experiment_folders). The first jobs of an experiment need it; ancient(): a rewritten
# identical file never makes them run again.


rule record_experiment_settings:
    """Write the experiment's settings (its block and its data set's) and their digest."""
    output:
        settings=f"{RESULTS}/{{dataset}}/{{experiment}}/settings.json",
    params:
        settings=R.experiment_settings,
        digest=R.settings_digest,
    log:
        f"{LOGS}/{{dataset}}/{{experiment}}/record_experiment_settings.log",
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/record_experiment_settings.py"


rule train_models:
    """Train one shard of target models as a vectorised ensemble; save weights and metrics."""
    input:
        unpack(R.selection_choice),  # an experiment with model selection: the chosen settings
        settings=ancient(f"{RESULTS}/{{dataset}}/{{experiment}}/settings.json"),
        records=f"{RESULTS}/{{dataset}}/records.parquet",
        inputs=f"{RESULTS}/{{dataset}}/inputs.zarr",
        membership=f"{RESULTS}/{{dataset}}/membership.zarr",
    output:
        weights=f"{RESULTS}/{{dataset}}/{{experiment}}/models/shard_{{shard}}.safetensors",
        metrics=f"{RESULTS}/{{dataset}}/{{experiment}}/models/shard_{{shard}}_metrics.tsv",
        manifest=f"{RESULTS}/{{dataset}}/{{experiment}}/models/shard_{{shard}}_manifest.json",
        environment=f"{RESULTS}/{{dataset}}/{{experiment}}/models/shard_{{shard}}_environment.json",
    params:
        experiment=R.experiment_config,
        models=R.shard_models,
        device=config["device"],
    threads: R.shard_cpus
    resources:
        mem_mb=R.shard_mem_mb,
        runtime=R.train_runtime,
        gpu=R.shard_gpus,
        gpu_model=R.shard_gpu_model,
        group_slot=1,
    priority: CHAIN_PRIORITY
    log:
        f"{LOGS}/{{dataset}}/{{experiment}}/train_models_{{shard}}.log",
    conda:
        "../../envs/train.yaml"
    script:
        "../scripts/train_models.py"


rule collect_model_metrics:
    """One table of every target model's train/test metrics, and their utility summary beside
    the baselines, with the overfitting warning."""
    input:
        unpack(R.dataset_baselines),  # with the baselines' test predictions (binary labels)
        metrics=all_shard_metrics,
        # the targets' test predictions: the cube's coordinates and the shards' rows (not the
        # assembled cube, which the audit group assembles after this job)
        skeleton=f"{RESULTS}/{{dataset}}/{{experiment}}/cube_skeleton.zarr",
        rows=all_shard_rows,
        queries=all_shard_queries,
    output:
        metrics=report(
            f"{RESULTS}/{{dataset}}/{{experiment}}/models/metrics.tsv",
            caption="../report/model_metrics.rst",
            category="{dataset}",
            subcategory="{experiment}",
            labels={"table": "target model metrics"},
        ),
        utility=report(
            f"{RESULTS}/{{dataset}}/{{experiment}}/models/utility.tsv",
            caption="../report/utility.rst",
            category="{dataset}",
            subcategory="{experiment}",
            labels={"table": "utility and overfitting check"},
        ),
    params:
        audit=R.audit_params("collect_model_metrics"),
    log:
        f"{LOGS}/{{dataset}}/{{experiment}}/collect_model_metrics.log",
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/collect_model_metrics.py"
