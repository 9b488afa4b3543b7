# How many target models are enough: the audit's headlines recomputed on nested,
# membership-balanced subsets of the models (workflow/mia_audit/analysis/convergence.py).


rule analyse_convergence:
    """Headlines on nested balanced model subsets, each against its all-model interval."""
    input:
        unpack(adaptive_decision),
        cube=f"{RESULTS}/{{dataset}}/{{experiment}}/cube.zarr",
        queries=all_shard_queries,
        records=f"{RESULTS}/{{dataset}}/records.parquet",
    output:
        table=f"{RESULTS}/{{dataset}}/{{experiment}}/audit/convergence.tsv",
        summary=report(
            f"{RESULTS}/{{dataset}}/{{experiment}}/audit/convergence_summary.tsv",
            caption="../report/convergence_summary.rst",
            category="{dataset}",
            subcategory="{experiment}",
            labels={"table": "models needed per headline"},
        ),
    params:
        audit=R.audit_params("analyse_convergence"),
        subgroups=R.dataset_subgroups,
        subgroup_settings=config["subgroups"],
    resources:  # one light job of a group (pipeline/resources.py)
        mem_mb=R.light_mem_mb,
        runtime=R.light_runtime,
        group_slot=1,
    log:
        f"{LOGS}/{{dataset}}/{{experiment}}/analyse_convergence.log",
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/analyse_convergence.py"
