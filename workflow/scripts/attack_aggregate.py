"""Snakemake script: aggregate attacks in the standard protocol."""

from mia_audit.analysis import adaptive
from mia_audit.audit import attacks, cube_audit
from mia_audit.integrity import CubeCheck
from mia_audit.pipeline.runtime import run_script


def main(log):
    sm = snakemake
    audit = sm.params.audit  # the rule's keys of config block audit
    n_models = adaptive.audited_models(getattr(sm.input, "decision", None))  # None: every model
    # this stage reads only the pool records: one pass over the whole cube checks every region first
    regions = CubeCheck(sm.input.cube, sm.input.queries, n_models=n_models).verify()
    log.info("cube checked: %d regions match what the query jobs wrote", regions)
    table, roc = cube_audit.aggregate_attacks_from_cube(
        sm.input.cube,
        n_targets=audit["n_targets"],
        seed=audit["seed"],
        population=audit["rmia_population"],
        names=audit["attacks"],
        log=log.info,
        n_models=n_models,
    )
    table.to_csv(sm.output.table, sep="\t", index=False)
    roc.to_parquet(sm.output.roc, index=False)
    summary = table.groupby("attack")[["auc", "tpr_at_fpr_0.001", "tpr_at_fpr_0.01"]].mean().round(4)
    log.info("mean over targets:\n%s", summary.to_string())
    warning = attacks.resolution_warning(table)
    if warning:
        log.warning(warning)


run_script(main, snakemake.log[0])
