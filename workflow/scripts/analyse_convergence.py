"""Snakemake script: the audit's headlines on nested balanced subsets of the models."""

import pandas as pd

from mia_audit import adaptive, convergence, subgroups
from mia_audit.runtime import run_script


def main(log):
    sm = snakemake
    p = sm.params
    table, summary = convergence.analyse(
        sm.input.cube,
        pd.read_parquet(sm.input.records),
        sizes=p.settings["sizes"],
        n_models=adaptive.audited_models(getattr(sm.input, "decision", None)),
        thresholds=p.thresholds,
        splits=p.settings["splits"],
        seed=p.settings["seed"],
        subgroup_settings={
            "attributes": list(p.subgroups),
            "orders": subgroups.group_orders(dict(p.subgroups)),
            "dataset": sm.wildcards.dataset,
            "experiment": sm.wildcards.experiment,
            **subgroups.settings_kwargs(p.subgroup_settings),  # the tail rule of the subgroup tables
        },
        n_targets=p.n_targets,
        attack_seed=p.seed,
        population=p.population,
        attack_names=p.attacks,
        block_records=p.block_records,
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
