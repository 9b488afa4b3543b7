"""Snakemake script: the audit's headlines on nested balanced subsets of the models."""

import pandas as pd

from mia_audit.analysis import adaptive, convergence, subgroups
from mia_audit.integrity import CubeCheck
from mia_audit.pipeline.runtime import run_script


def main(log):
    sm = snakemake
    p = sm.params
    audit = p.audit  # the rule's keys of config block audit
    n_models = adaptive.audited_models(getattr(sm.input, "decision", None))  # None: every model
    # every coordinate and region of the cube is what its writers recorded (one pass)
    regions = CubeCheck(sm.input.cube, sm.input.queries, n_models=n_models).verify()
    log.info("cube checked: %d regions match what the query jobs wrote", regions)
    table, summary = convergence.analyse(
        sm.input.cube,
        pd.read_parquet(sm.input.records),
        sizes=audit["convergence"]["sizes"],
        n_models=n_models,
        thresholds=audit["thresholds"],
        splits=audit["convergence"]["splits"],
        seed=audit["convergence"]["seed"],
        subgroup_settings={
            "attributes": list(p.subgroups),
            "orders": subgroups.group_orders(dict(p.subgroups)),
            "dataset": sm.wildcards.dataset,
            "experiment": sm.wildcards.experiment,
            **subgroups.settings_kwargs(p.subgroup_settings),  # the tail rule of the subgroup tables
        },
        n_targets=audit["n_targets"],
        attack_seed=audit["seed"],
        population=audit["rmia_population"],
        attack_names=audit["attacks"],
        block_records=audit["block_records"],
        log=log.info,
    )
    convergence.write(table, summary, sm.output.table, sm.output.summary)
    head = summary[summary["quantity"].isin(["share_at_or_above", "attack_auc"])]
    for row in head.itertuples():
        log.info(
            "%s %s %s: within the final interval from %d models",
            row.estimator,
            row.quantity,
            row.key,
            row.models_needed,
        )


run_script(main, snakemake.log[0])
