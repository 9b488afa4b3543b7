"""Snakemake script: tail-composition tests of every subgroup attribute of one experiment (unadjusted p)."""

import pandas as pd

from mia_audit.analysis import subgroups
from mia_audit.pipeline.runtime import run_script


def main(log):
    sm = snakemake
    table = subgroups.experiment_tests(
        pd.read_parquet(sm.input.records),
        pd.read_parquet(sm.input.record_risk),
        pd.read_parquet(sm.input.patient_risk),
        dataset=sm.wildcards.dataset,
        experiment=sm.wildcards.experiment,
        attributes=list(sm.params.attributes),
        orders=subgroups.group_orders(dict(sm.params.subgroups)),
        **subgroups.settings_kwargs(sm.params.settings),
    )
    table.to_csv(sm.output.tests, sep="\t", index=False)
    for _, r in table.drop_duplicates("level").iterrows():
        log.info(
            "%s tail (%s): AUC >= %.4f (quantile %.4f), %d of %d units from %d patients; %s",
            r["level"],
            r["tail_rule"],
            r["threshold"],
            r["quantile"],
            r["n_tail_total"],
            r["n_total"],
            r["n_tail_patients"],
            r["tail_reason"],
        )
        if "too small for any useful test" in r["tail_reason"]:
            log.warning("%s level: the cohort is too small for any useful subgroup test", r["level"])
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
        if "too small for a useful test" in t["note"].iloc[0]:
            small = next(x for x in t["note"].iloc[0].split("; ") if "too small for a useful test" in x)
            log.warning("%s/%s: %s", *key, small)


run_script(main, snakemake.log[0])
