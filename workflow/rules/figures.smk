# Figures: each is its own target (png + pdf), so one figure can be rebuilt alone by naming
# its file. Per experiment: the risk contrast, attack ROC, record AUC, standard errors and one
# tail-composition figure per subgroup attribute; per data set: patient risk by experiment;
# per run: the meta-analysis. (DP and public-model figures sit with their stages.)


rule plot_risk_contrast:
    """Aggregate attack ROC beside the survival function of patient AUC (the central contrast)."""
    input:
        patients=f"{RESULTS}/{{dataset}}/{{experiment}}/audit/patient_risk.parquet",
        attacks=f"{RESULTS}/{{dataset}}/{{experiment}}/audit/aggregate_attacks.tsv",
        roc=f"{RESULTS}/{{dataset}}/{{experiment}}/audit/aggregate_roc.parquet",
        utility=f"{RESULTS}/{{dataset}}/{{experiment}}/models/utility.tsv",
    output:
        png=report(
            f"{RESULTS}/figures/{{dataset}}/{{experiment}}/risk_contrast.png",
            caption="../report/risk_contrast.rst",
            category="{dataset}",
            subcategory="{experiment}",
        ),
        pdf=f"{RESULTS}/figures/{{dataset}}/{{experiment}}/risk_contrast.pdf",
    log:
        f"{LOGS}/{{dataset}}/{{experiment}}/plot_risk_contrast.log",
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
        f"{LOGS}/{{dataset}}/{{experiment}}/plot_attack_roc.log",
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/plot_attack_roc.py"


rule plot_record_auc:
    """Distribution of record-level MIA AUC with the mean patient AUC marked."""
    input:
        records=f"{RESULTS}/{{dataset}}/{{experiment}}/audit/record_risk.parquet",
        patients=f"{RESULTS}/{{dataset}}/{{experiment}}/audit/patient_risk.parquet",
    output:
        png=report(
            f"{RESULTS}/figures/{{dataset}}/{{experiment}}/record_auc.png",
            caption="../report/record_auc.rst",
            category="{dataset}",
            subcategory="{experiment}",
        ),
        pdf=f"{RESULTS}/figures/{{dataset}}/{{experiment}}/record_auc.pdf",
    log:
        f"{LOGS}/{{dataset}}/{{experiment}}/plot_record_auc.log",
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/plot_record_auc.py"


rule plot_se:
    """Standard errors of record AUC: delta method against Hanley–McNeil."""
    input:
        records=f"{RESULTS}/{{dataset}}/{{experiment}}/audit/record_risk.parquet",
    output:
        png=report(
            f"{RESULTS}/figures/{{dataset}}/{{experiment}}/se.png",
            caption="../report/se.rst",
            category="{dataset}",
            subcategory="{experiment}",
        ),
        pdf=f"{RESULTS}/figures/{{dataset}}/{{experiment}}/se.pdf",
    log:
        f"{LOGS}/{{dataset}}/{{experiment}}/plot_se.log",
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/plot_se.py"


rule plot_binormal_check:
    """Bi-normal against empirical (Mann–Whitney) record AUC, records where they disagree flagged."""
    input:
        records=f"{RESULTS}/{{dataset}}/{{experiment}}/audit/record_risk.parquet",
    output:
        png=report(
            f"{RESULTS}/figures/{{dataset}}/{{experiment}}/binormal_check.png",
            caption="../report/binormal_check.rst",
            category="{dataset}",
            subcategory="{experiment}",
        ),
        pdf=f"{RESULTS}/figures/{{dataset}}/{{experiment}}/binormal_check.pdf",
    log:
        f"{LOGS}/{{dataset}}/{{experiment}}/plot_binormal_check.log",
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/plot_binormal_check.py"


rule plot_patient_intervals:
    """The most exposed patients' AUC with the interval of the maximum, and the direct patient attack."""
    input:
        patients=f"{RESULTS}/{{dataset}}/{{experiment}}/audit/patient_risk.parquet",
    output:
        png=report(
            f"{RESULTS}/figures/{{dataset}}/{{experiment}}/patient_intervals.png",
            caption="../report/patient_intervals.rst",
            category="{dataset}",
            subcategory="{experiment}",
        ),
        pdf=f"{RESULTS}/figures/{{dataset}}/{{experiment}}/patient_intervals.pdf",
    log:
        f"{LOGS}/{{dataset}}/{{experiment}}/plot_patient_intervals.log",
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/plot_patient_intervals.py"


rule plot_subgroups:
    """Tail vs overall composition of one attribute, with residuals and the adjusted test."""
    input:
        table=f"{RESULTS}/{{dataset}}/{{experiment}}/subgroups/{{attribute}}.tsv",
    output:
        png=report(
            f"{RESULTS}/figures/{{dataset}}/{{experiment}}/subgroups_{{attribute}}.png",
            caption="../report/subgroups.rst",
            category="{dataset}",
            subcategory="{experiment}",
        ),
        pdf=f"{RESULTS}/figures/{{dataset}}/{{experiment}}/subgroups_{{attribute}}.pdf",
    wildcard_constraints:
        attribute=plan.subgroup_attribute_pattern(config),
    log:
        f"{LOGS}/{{dataset}}/{{experiment}}/plot_subgroups_{{attribute}}.log",
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/plot_subgroups.py"


rule plot_meta_analysis:
    """Scatter of tail residual against group share over the whole run."""
    input:
        points=f"{RESULTS}/meta/meta_analysis.tsv",
        summary=f"{RESULTS}/meta/meta_summary.tsv",
    output:
        png=report(
            f"{RESULTS}/figures/meta_analysis.png",
            caption="../report/meta_analysis.rst",
            category="run",
            subcategory="meta-analysis",
        ),
        pdf=f"{RESULTS}/figures/meta_analysis.pdf",
    params:
        large_residual=config["subgroups"]["large_residual"],
        small_group_share=config["subgroups"]["small_group_share"],
    log:
        f"{LOGS}/plot_meta_analysis.log",
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/plot_meta_analysis.py"


rule plot_esf_by_experiment:
    """Survival function of patient AUC, every experiment of one data set on one axis."""
    input:
        patients=dataset_patient_risks,
        utilities=dataset_utilities,
    output:
        png=report(
            f"{RESULTS}/figures/{{dataset}}/esf_by_experiment.png",
            caption="../report/esf_by_experiment.rst",
            category="{dataset}",
            subcategory="all experiments",
        ),
        pdf=f"{RESULTS}/figures/{{dataset}}/esf_by_experiment.pdf",
    params:
        experiments=dataset_experiments,
    log:
        f"{LOGS}/{{dataset}}/plot_esf_by_experiment.log",
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/plot_esf_by_experiment.py"


rule plot_convergence:
    """The headlines against the number of models, with the all-model intervals."""
    input:
        table=f"{RESULTS}/{{dataset}}/{{experiment}}/audit/convergence.tsv",
        summary=f"{RESULTS}/{{dataset}}/{{experiment}}/audit/convergence_summary.tsv",
    output:
        png=report(
            f"{RESULTS}/figures/{{dataset}}/{{experiment}}/convergence.png",
            caption="../report/convergence.rst",
            category="{dataset}",
            subcategory="{experiment}",
        ),
        pdf=f"{RESULTS}/figures/{{dataset}}/{{experiment}}/convergence.pdf",
    log:
        f"{LOGS}/{{dataset}}/{{experiment}}/plot_convergence.log",
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/plot_convergence.py"
