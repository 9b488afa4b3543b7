"""Snakemake script: tail-composition tests of every subgroup attribute of one experiment (unadjusted p)."""

import pandas as pd

from mia_audit import subgroups
from mia_audit.runtime import run_script


def main(log):
    sm = snakemake
    s = sm.params.settings
    table = subgroups.experiment_tests(
        pd.read_parquet(sm.input.records),
        pd.read_parquet(sm.input.record_risk),
        pd.read_parquet(sm.input.patient_risk),
        dataset=sm.wildcards.dataset,
        experiment=sm.wildcards.experiment,
        attributes=list(sm.params.attributes),
        quantile=s["quantile"],
        orders=subgroups.group_orders(dict(sm.params.subgroups)),
        seed=s["seed"],
        min_expected=s["min_expected"],
        draws=s["monte_carlo_draws"],
        exact_max_outcomes=s["exact_max_outcomes"],
        permutations=s["cluster_permutations"],
    )
    table.to_csv(sm.output.tests, sep="\t", index=False)
    for key, t in table.groupby(["attribute", "level"], sort=False):
        log.info(
            "%s/%s: tail %d of %d (%d patients), %s p = %.3g, patient-clustered p = %.3g (design effect %.2f)%s",
            *key,
            t["n_tail_total"].iloc[0],
            t["n_total"].iloc[0],
            t["n_tail_patients"].iloc[0],
            t["test"].iloc[0],
            t["p"].iloc[0],
            t["p_cluster"].iloc[0],
            t["design_effect"].iloc[0],
            f" ({t['note'].iloc[0]})" if t["note"].iloc[0] else "",
        )


run_script(main, snakemake.log[0])
