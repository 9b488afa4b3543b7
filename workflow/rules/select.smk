# Model selection and baselines: the target models' settings chosen on validation patients
# from the pool (workflow/mia_audit/train/selection.py), and scikit-learn baselines fitted on the
# targets' own member sets (workflow/mia_audit/train/baselines.py), so that the audit's models can
# be judged against what a careful modeller would ship.


# A checkpoint: which candidates tie with the chosen one (chosen.json "tied") decides which
# candidates the audit trains with the full design (rule audit_candidate, tabulate_headline).
checkpoint select_model:
    """Train every candidate of the experiment's selection block as a small ensemble on
    validation splits of the pool patients; choose by the validation metric and mark the
    candidates tied with the chosen one."""
    input:
        settings=ancient(f"{RESULTS}/{{dataset}}/{{experiment}}/settings.json"),
        records=f"{RESULTS}/{{dataset}}/records.parquet",
        inputs=f"{RESULTS}/{{dataset}}/inputs.zarr",
    output:
        table=report(
            f"{RESULTS}/{{dataset}}/{{experiment}}/selection/selection.tsv",
            caption="../report/selection.rst",
            category="{dataset}",
            subcategory="{experiment}",
            labels={"table": "model selection"},
        ),
        chosen=f"{RESULTS}/{{dataset}}/{{experiment}}/selection/chosen.json",
    params:
        experiment=R.experiment_config,
        device=config["device"],
    threads: R.select_cpus
    resources:  # in the setup job group (tables only: small ensembles or estimators, no GPU needed)
        mem_mb=R.shard_mem_mb,
        runtime=R.train_runtime,
        group_slot=1,
    priority: CHAIN_PRIORITY
    log:
        f"{LOGS}/{{dataset}}/{{experiment}}/select_model.log",
    conda:
        "../../envs/train.yaml"
    script:
        "../scripts/select_model.py"


rule fit_baselines:
    """Logistic regression and gradient boosting on the first target models' member records,
    evaluated on the test patients' records (a table data set)."""
    input:
        records=f"{RESULTS}/{{dataset}}/records.parquet",
        inputs=f"{RESULTS}/{{dataset}}/inputs.zarr",
        membership=f"{RESULTS}/{{dataset}}/membership.zarr",
    output:
        table=report(
            f"{RESULTS}/{{dataset}}/baselines.tsv",
            caption="../report/baselines.rst",
            category="{dataset}",
            subcategory="all experiments",
            labels={"table": "scikit-learn baselines"},
        ),
        predictions=f"{RESULTS}/{{dataset}}/baselines_predictions.parquet",
    params:
        spec=R.dataset_config,
    threads: 1  # small fits; OpenMP threads of gradient boosting only contend on a busy machine
    resources:  # one light job of a group (pipeline/resources.py)
        mem_mb=R.light_mem_mb,
        runtime=R.light_runtime,
        group_slot=1,
    log:
        f"{LOGS}/{{dataset}}/fit_baselines.log",
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/fit_baselines.py"
