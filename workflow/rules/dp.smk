# Differential privacy: patient risk per ε (survival functions) and utility vs privacy.
# DP training itself is the train_models rule (an experiment with a dp block); the audit
# adds each record's and patient's AUC bound (audit_records).


rule plot_dp_esf:
    """Survival function of patient AUC per ε at one DP level, violations in the legend."""
    input:
        patients=R.dp_esf_patients,
        metrics=R.dp_esf_metrics,
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
        report(
            f"{RESULTS}/{{dataset}}/dp_utility.tsv",
            caption="../report/dp_utility.rst",
            category="{dataset}",
            subcategory="differential privacy",
            labels={"table": "DP utility against privacy"},
        ),
    params:
        experiments=R.dp_utility_experiments,
    log:
        f"{LOGS}/{{dataset}}/tabulate_dp_utility.log",
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/tabulate_dp_utility.py"


rule tabulate_dp_empirical:
    """Canaries attacked with the likelihood ratio: Clopper-Pearson lower bounds on ε and on
    the AUC beside the accountant's upper bounds, per DP experiment with canaries."""
    input:
        unpack(R.dp_empirical_inputs),
    output:
        report(
            f"{RESULTS}/{{dataset}}/dp_empirical.tsv",
            caption="../report/dp_empirical.rst",
            category="{dataset}",
            subcategory="differential privacy",
            labels={"table": "DP bounds from both sides"},
        ),
    params:
        experiments=R.dp_empirical_experiments,
        audit=R.audit_params("tabulate_dp_empirical"),
    log:
        f"{LOGS}/{{dataset}}/tabulate_dp_empirical.log",
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/tabulate_dp_empirical.py"


rule plot_dp_bounds:
    """The accountant's upper bounds and the canaries' lower bounds per ε (AUC and ε)."""
    input:
        table=f"{RESULTS}/{{dataset}}/dp_empirical.tsv",
    output:
        png=report(
            f"{RESULTS}/figures/{{dataset}}/dp_bounds.png",
            caption="../report/dp_bounds.rst",
            category="{dataset}",
            subcategory="differential privacy",
        ),
        pdf=f"{RESULTS}/figures/{{dataset}}/dp_bounds.pdf",
    log:
        f"{LOGS}/{{dataset}}/plot_dp_bounds.log",
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/plot_dp_bounds.py"
