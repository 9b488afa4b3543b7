"""Snakemake script: aggregate attacks in the standard protocol."""

from mia_audit import adaptive, audit
from mia_audit.runtime import run_script


def main(log):
    sm = snakemake
    p = sm.params
    table, roc = audit.aggregate_attacks_from_cube(
        sm.input.cube,
        n_targets=p.n_targets,
        seed=p.seed,
        population=p.population,
        names=p.attacks,
        log=log.info,
        n_models=adaptive.audited_models(getattr(sm.input, "decision", None)),  # None: every model
    )
    table.to_csv(sm.output.table, sep="\t", index=False)
    roc.to_parquet(sm.output.roc, index=False)
    summary = table.groupby("attack")[["auc", "tpr_at_fpr_0.001"]].mean().round(4)
    log.info("mean over targets:\n%s", summary.to_string())


run_script(main, snakemake.log[0])
