# Who carries the risk: tail-composition tests per subgroup attribute, and their meta-analysis.
#
# Design: compare_subgroup_tails computes every attribute and both levels (records, patients) of one
# experiment, unadjusted. adjust_subgroups then adjusts the p-values of every test of the run
# at once (all data sets, experiments, attributes and levels: one family), writing one
# run-wide table; in the same job it cuts from it the per-attribute tables and the composition
# table of each experiment, so they carry the adjusted p, and the run's meta-analysis (one job
# instead of one Python start per table). A per-attribute table therefore depends on the
# audits of every experiment of the run — the price of adjusting across the whole run.


rule compare_subgroup_tails:
    """Tail composition of every subgroup attribute of one experiment, at record and patient level."""
    input:
        records=f"{RESULTS}/{{dataset}}/records.parquet",
        record_risk=f"{RESULTS}/{{dataset}}/{{experiment}}/audit/record_risk.parquet",
        patient_risk=f"{RESULTS}/{{dataset}}/{{experiment}}/audit/patient_risk.parquet",
    output:
        tests=f"{RESULTS}/{{dataset}}/{{experiment}}/subgroups/tests_unadjusted.tsv",
    params:
        attributes=R.subgroup_attributes,
        subgroups=R.dataset_subgroups,
        settings=config["subgroups"],
    resources:  # one light job of a group (pipeline/resources.py)
        mem_mb=R.light_mem_mb,
        runtime=R.light_runtime,
        group_slot=1,
    log:
        f"{LOGS}/{{dataset}}/{{experiment}}/compare_subgroup_tails.log",
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/compare_subgroup_tails.py"


rule fit_exposure_model:
    """Patient exposure (probit patient AUC) regressed on every subgroup attribute at once,
    adjusted for records per patient and the label: which attribute carries the risk."""
    input:
        records=f"{RESULTS}/{{dataset}}/records.parquet",
        patient_risk=f"{RESULTS}/{{dataset}}/{{experiment}}/audit/patient_risk.parquet",
    output:
        table=report(
            f"{RESULTS}/{{dataset}}/{{experiment}}/subgroups/exposure_model.tsv",
            caption="../report/exposure_model_table.rst",
            category="{dataset}",
            subcategory="{experiment}",
            labels={"table": "exposure model: all attributes together"},
        ),
    params:
        attributes=R.subgroup_attributes,
        subgroups=R.dataset_subgroups,
    log:
        f"{LOGS}/{{dataset}}/{{experiment}}/fit_exposure_model.log",
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/fit_exposure_model.py"


# {dataset}/{experiment}/subgroups/composition.tsv and {attribute}.tsv of every experiment
SUBGROUP_TABLES = plan.subgroup_tables(config)


rule adjust_subgroups:
    """Adjust the p-values of all tail-composition tests of the run together; cut from the
    adjusted table every experiment's per-attribute and composition tables and the meta-analysis."""
    input:
        tests=plan.unadjusted_subgroup_tests(config),
    output:
        tests=report(
            f"{RESULTS}/meta/subgroup_tests.tsv",
            caption="../report/subgroup_tests.rst",
            category="run",
            subcategory="subgroups",
        ),
        tables=[
            report(
                t["path"],
                caption="../report/composition.rst" if t["attribute"] is None else "../report/subgroup_table.rst",
                category=t["dataset"],
                subcategory=t["experiment"],
                labels={
                    "table": (
                        "tail composition (supplementary)"
                        if t["attribute"] is None
                        else f"subgroups: {t['attribute']}"
                    )
                },
            )
            for t in SUBGROUP_TABLES
        ],
        points=report(
            f"{RESULTS}/meta/meta_analysis.tsv",
            caption="../report/meta_analysis_table.rst",
            category="run",
            subcategory="meta-analysis",
        ),
        summary=report(
            f"{RESULTS}/meta/meta_summary.tsv",
            caption="../report/meta_summary.rst",
            category="run",
            subcategory="meta-analysis",
        ),
    params:
        method=config["subgroups"]["p_adjust"],
        tables=SUBGROUP_TABLES,
        large_residual=config["subgroups"]["large_residual"],
        small_group_share=config["subgroups"]["small_group_share"],
    log:
        f"{LOGS}/adjust_subgroups.log",
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/adjust_subgroups.py"
