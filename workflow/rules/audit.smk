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
