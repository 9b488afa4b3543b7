# Adaptive audits (data-set key adaptive): the target models are trained in balanced waves;
# after each wave a checkpoint assesses the headline's precision on every model trained so
# far and decides whether the next wave is needed. The loop over waves lives in the plan
# (plan.next_wave, called by wave_decision_paths in common.smk), so it does not depend on
# how the train and query jobs are arranged: a wave is assessed once the query outputs of
# its shards (plan.wave_queries) exist.


checkpoint assess_wave:
    """Precision of the headline after one wave; the decision: stop (precision, cap) or continue."""
    input:
        skeleton=f"{RESULTS}/{{dataset}}/{{experiment}}/cube_skeleton.zarr",
        queries=R.assessed_wave_queries,
        rows=R.assessed_wave_rows,  # the cube of the waves so far is assembled in the job
        previous=R.previous_wave_decision,
    output:
        decision=f"{RESULTS}/{{dataset}}/{{experiment}}/adaptive/wave_{{wave}}.json",
    params:
        spec=R.adaptive_spec,
        cap=R.fixed_design_models,
        audit=R.audit_params("assess_wave"),
    log:
        f"{LOGS}/{{dataset}}/{{experiment}}/assess_wave_{{wave}}.log",
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/assess_wave.py"


rule tabulate_waves:
    """Every wave of an adaptive audit, the models trained and those saved against the fixed design."""
    input:
        decisions=wave_decision_paths,
    output:
        table=report(
            f"{RESULTS}/{{dataset}}/{{experiment}}/audit/adaptive.tsv",
            caption="../report/adaptive.rst",
            category="{dataset}",
            subcategory="{experiment}",
            labels={"table": "adaptive audit: waves"},
        ),
    log:
        f"{LOGS}/{{dataset}}/{{experiment}}/tabulate_waves.log",
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/tabulate_waves.py"
