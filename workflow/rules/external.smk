rule attack_external:
    """Offline RMIA (+ LiRA-offline and loss baselines) against a model not trained here."""
    input:
        candidates=R.external_candidates,
    output:
        scores=f"{RESULTS}/external/{{name}}/scores.parquet",
        patients=f"{RESULTS}/external/{{name}}/patient_scores.parquet",
        summary=f"{RESULTS}/external/{{name}}/summary.tsv",
    params:
        spec=R.external_spec,
    log:
        f"{LOGS}/external/{{name}}/attack_external.log",
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/attack_external.py"
