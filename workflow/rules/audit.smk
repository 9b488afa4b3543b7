rule audit_records:
    """Record-level bi-normal and empirical AUC with SEs, and patient risk (max over the patient's
    records with its interval, and the direct patient attack)."""
    input:
        unpack(adaptive_decision),  # an adaptive experiment: the final wave decision (models audited)
        cube=f"{RESULTS}/{{dataset}}/{{experiment}}/cube.zarr",
        queries=all_shard_queries,
        metrics=f"{RESULTS}/{{dataset}}/{{experiment}}/models/metrics.tsv",  # DP guarantees (dp_* columns)
        utility=f"{RESULTS}/{{dataset}}/{{experiment}}/models/utility.tsv",  # utility beside risk
    output:
        records=f"{RESULTS}/{{dataset}}/{{experiment}}/audit/record_risk.parquet",
        patients=f"{RESULTS}/{{dataset}}/{{experiment}}/audit/patient_risk.parquet",
        thresholds=report(
            f"{RESULTS}/{{dataset}}/{{experiment}}/audit/patient_thresholds.tsv",
            caption="../report/patient_thresholds.rst",
            category="{dataset}",
            subcategory="{experiment}",
            labels={"table": "patients above AUC thresholds"},
        ),
    params:
        audit=R.audit_params("audit_records"),
    resources:  # one light job of a group (pipeline/resources.py)
        mem_mb=R.light_mem_mb,
        runtime=R.light_runtime,
        group_slot=1,
    log:
        f"{LOGS}/{{dataset}}/{{experiment}}/audit_records.log",
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/audit_records.py"


rule attack_aggregate:
    """The standard protocol: target models attacked with the other models as references."""
    input:
        unpack(adaptive_decision),
        cube=f"{RESULTS}/{{dataset}}/{{experiment}}/cube.zarr",
        queries=all_shard_queries,
    output:
        table=report(
            f"{RESULTS}/{{dataset}}/{{experiment}}/audit/aggregate_attacks.tsv",
            caption="../report/aggregate_attacks.rst",
            category="{dataset}",
            subcategory="{experiment}",
            labels={"table": "aggregate attacks per target model"},
        ),
        roc=f"{RESULTS}/{{dataset}}/{{experiment}}/audit/aggregate_roc.parquet",
    params:
        audit=R.audit_params("attack_aggregate"),
    resources:  # one light job of a group (pipeline/resources.py)
        mem_mb=R.light_mem_mb,
        runtime=R.light_runtime,
        group_slot=1,
    log:
        f"{LOGS}/{{dataset}}/{{experiment}}/attack_aggregate.log",
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/attack_aggregate.py"


rule audit_candidate:
    """One candidate tied with the chosen one in the model selection, audited with the full
    target-model design in one job: its models trained on the same membership draws and seeds,
    queried, and its record and patient risk and headline shares computed as for the targets."""
    input:
        choice=f"{RESULTS}/{{dataset}}/{{experiment}}/selection/chosen.json",
        settings=ancient(f"{RESULTS}/{{dataset}}/{{experiment}}/settings.json"),
        records=f"{RESULTS}/{{dataset}}/records.parquet",
        inputs=f"{RESULTS}/{{dataset}}/inputs.zarr",
        membership=f"{RESULTS}/{{dataset}}/membership.zarr",
    output:
        metrics=f"{RESULTS}/{{dataset}}/{{experiment}}/candidates/{{candidate}}/metrics.tsv",
        patients=f"{RESULTS}/{{dataset}}/{{experiment}}/candidates/{{candidate}}/patient_risk.parquet",
        thresholds=f"{RESULTS}/{{dataset}}/{{experiment}}/candidates/{{candidate}}/patient_thresholds.tsv",
    params:
        experiment=R.candidate_experiment,
        views=R.query_views,
        audit=R.audit_params("audit_candidate"),
        device=config["device"],
    threads: R.shard_cpus
    resources:
        mem_mb=R.shard_mem_mb,
        runtime=R.candidate_runtime,
        gpu=R.shard_gpus,
        gpu_model=R.shard_gpu_model,
        group_slot=1,
    log:
        f"{LOGS}/{{dataset}}/{{experiment}}/audit_candidate_{{candidate}}.log",
    conda:
        "../../envs/train.yaml"
    script:
        "../scripts/audit_candidate.py"


rule tabulate_headline:
    """The headline shares of every audited candidate (the chosen one and those tied with it),
    with their intervals and the range across the tied candidates."""
    input:
        unpack(R.selection_table),  # an experiment with selection: selection/selection.tsv
        unpack(tied_candidate_files),  # the tied candidates' audits (select_model is a checkpoint)
        thresholds=f"{RESULTS}/{{dataset}}/{{experiment}}/audit/patient_thresholds.tsv",
        utility=f"{RESULTS}/{{dataset}}/{{experiment}}/models/utility.tsv",
    output:
        table=report(
            f"{RESULTS}/{{dataset}}/{{experiment}}/audit/headline.tsv",
            caption="../report/headline.rst",
            category="{dataset}",
            subcategory="{experiment}",
            labels={"table": "headline: every tied candidate, every interval"},
        ),
    log:
        f"{LOGS}/{{dataset}}/{{experiment}}/tabulate_headline.log",
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/tabulate_headline.py"
