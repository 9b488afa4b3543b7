rule plot_risk_contrast:
    """Aggregate attack ROC beside the survival function of patient AUC (the central contrast)."""
    input:
        patients=f"{RESULTS}/{{dataset}}/{{experiment}}/audit/patient_risk.parquet",
        attacks=f"{RESULTS}/{{dataset}}/{{experiment}}/audit/aggregate_attacks.tsv",
        roc=f"{RESULTS}/{{dataset}}/{{experiment}}/audit/aggregate_roc.parquet",
    output:
        png=report(
            f"{RESULTS}/figures/{{dataset}}/{{experiment}}/risk_contrast.png",
            caption="../report/risk_contrast.rst",
            category="{dataset}",
            subcategory="{experiment}",
        ),
        pdf=f"{RESULTS}/figures/{{dataset}}/{{experiment}}/risk_contrast.pdf",
    log:
        "logs/{dataset}/{experiment}/plot_risk_contrast.log",
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/plot_risk_contrast.py"


rule plot_attack_roc:
    """Mean ROC (± 1 SD over target models) of every aggregate attack, log–log."""
    input:
        attacks=f"{RESULTS}/{{dataset}}/{{experiment}}/audit/aggregate_attacks.tsv",
        roc=f"{RESULTS}/{{dataset}}/{{experiment}}/audit/aggregate_roc.parquet",
    output:
        png=report(
            f"{RESULTS}/figures/{{dataset}}/{{experiment}}/attack_roc.png",
            caption="../report/attack_roc.rst",
            category="{dataset}",
            subcategory="{experiment}",
        ),
        pdf=f"{RESULTS}/figures/{{dataset}}/{{experiment}}/attack_roc.pdf",
    log:
        "logs/{dataset}/{experiment}/plot_attack_roc.log",
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/plot_attack_roc.py"
