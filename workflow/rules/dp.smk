# Differential privacy: patient risk per ε (survival functions) and utility vs privacy.
# DP training itself is the train_models rule (an experiment with a dp block); the audit
# adds each record's and patient's AUC bound (audit_records).


rule plot_dp_esf:
    """Survival function of patient AUC per ε at one DP level, violations in the legend."""
    input:
        patients=R.dp_esf_patients,
    output:
        png=report(
            f"{RESULTS}/figures/{{dataset}}/dp_esf_{{level}}.png",
            caption="../report/dp_esf.rst",
            category="{dataset}",
            subcategory="differential privacy",
        ),
        pdf=f"{RESULTS}/figures/{{dataset}}/dp_esf_{{level}}.pdf",
    params:
        experiments=R.dp_esf_experiments,
    log:
        f"{LOGS}/{{dataset}}/plot_dp_esf_{{level}}.log",
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/plot_dp_esf.py"


rule tabulate_dp_utility:
    """Test AUC (median, IQR), achieved ε and violations per DP experiment and level."""
    input:
        unpack(R.dp_utility_inputs),
    output:
        f"{RESULTS}/{{dataset}}/dp_utility.tsv",
    params:
        experiments=R.dp_utility_experiments,
    log:
        f"{LOGS}/{{dataset}}/tabulate_dp_utility.log",
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/tabulate_dp_utility.py"
