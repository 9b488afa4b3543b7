# Figures (png + pdf, every png in the report). Per experiment, one job (rule plot_experiment)
# reads its tables once and draws all its figures: the risk contrast, attack ROC, record AUC,
# standard errors, bi-normal check, patient intervals, one tail-composition figure per subgroup
# attribute and the convergence figure. Each file is still a target: naming one, e.g.
# `snakemake results/figures/pbc/mlp/se.png`, redraws that experiment's figures from its tables
# and recomputes no table. Per data set: patient risk by experiment; per run: the
# meta-analysis. (DP and public-model figures sit with their stages.)


# one rule for every experiment unless their subgroup attributes differ (plan.experiment_figure_rules)
for _rule, _datasets, _experiments, _attributes in plan.experiment_figure_rules(config):

    rule:
        """Every figure of one experiment, drawn from its tables in one job."""
        name:
            _rule
        input:
            **plan.experiment_figure_inputs(config, _attributes),
        output:
            **experiment_figure_outputs(_attributes),
        params:
            attributes=_attributes,
        wildcard_constraints:
            dataset="|".join(_datasets),
            experiment="|".join(_experiments),
        localrule: True
        log:
            f"{LOGS}/{{dataset}}/{{experiment}}/plot_experiment.log",
        conda:
            "../../envs/analysis.yaml"
        script:
            "../scripts/plot_experiment.py"


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
        patients=R.dataset_patient_risks,
        utilities=R.dataset_utilities,
    output:
        png=report(
            f"{RESULTS}/figures/{{dataset}}/esf_by_experiment.png",
            caption="../report/esf_by_experiment.rst",
            category="{dataset}",
            subcategory="all experiments",
        ),
        pdf=f"{RESULTS}/figures/{{dataset}}/esf_by_experiment.pdf",
    params:
        experiments=R.dataset_experiments,
    log:
        f"{LOGS}/{{dataset}}/plot_esf_by_experiment.log",
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/plot_esf_by_experiment.py"
