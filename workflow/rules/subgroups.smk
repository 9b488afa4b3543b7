# Who carries the risk: tail-composition tests per subgroup attribute, and their meta-analysis.
#
# Design: compare_subgroup_tails computes every attribute and both levels (records, patients) of one
# experiment, unadjusted. adjust_subgroups then adjusts the p-values of every test of the run
# at once (all data sets, experiments, attributes and levels: one family), writing one
# run-wide table; the per-attribute tables and the composition table of each experiment are
# cut from it, so they carry the adjusted p. A per-attribute table therefore depends on the
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
        attributes=subgroup_attributes,
        subgroups=dataset_subgroups,
        settings=config["subgroups"],
    log:
        f"{LOGS}/{{dataset}}/{{experiment}}/compare_subgroup_tails.log",
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/compare_subgroup_tails.py"


rule adjust_subgroups:
    """Adjust the p-values of all tail-composition tests of the run together."""
    input:
        tests=plan.unadjusted_subgroup_tests(config),
    output:
        tests=report(
            f"{RESULTS}/meta/subgroup_tests.tsv",
            caption="../report/subgroup_tests.rst",
            category="run",
            subcategory="subgroups",
        ),
    params:
        method=config["subgroups"]["p_adjust"],
    log:
        f"{LOGS}/adjust_subgroups.log",
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/adjust_subgroups.py"


rule tabulate_subgroup:
    """One attribute's tail-composition table of one experiment, with adjusted p."""
    input:
        tests=f"{RESULTS}/meta/subgroup_tests.tsv",
    output:
        table=report(
            f"{RESULTS}/{{dataset}}/{{experiment}}/subgroups/{{attribute}}.tsv",
            caption="../report/subgroup_table.rst",
            category="{dataset}",
            subcategory="{experiment}",
            labels={"table": "subgroups: {attribute}"},
        ),
    wildcard_constraints:
        attribute=plan.subgroup_attribute_pattern(config),
    log:
        f"{LOGS}/{{dataset}}/{{experiment}}/tabulate_subgroup_{{attribute}}.log",
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/tabulate_subgroup.py"


rule tabulate_composition:
    """Supplementary table: tail and overall composition of every attribute of one experiment."""
    input:
        tests=f"{RESULTS}/meta/subgroup_tests.tsv",
    output:
        table=report(
            f"{RESULTS}/{{dataset}}/{{experiment}}/subgroups/composition.tsv",
            caption="../report/composition.rst",
            category="{dataset}",
            subcategory="{experiment}",
            labels={"table": "tail composition (supplementary)"},
        ),
    log:
        f"{LOGS}/{{dataset}}/{{experiment}}/tabulate_composition.log",
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/tabulate_composition.py"


rule meta_analysis:
    """Residual against group share across attributes, data sets and experiments."""
    input:
        tests=f"{RESULTS}/meta/subgroup_tests.tsv",
    output:
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
        large_residual=config["subgroups"]["large_residual"],
        small_group_share=config["subgroups"]["small_group_share"],
    log:
        f"{LOGS}/meta_analysis.log",
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/meta_analysis.py"
