"""Snakemake script: the exposure model of one experiment (all subgroup attributes together)."""

import pandas as pd

from mia_audit.analysis import exposure, subgroups
from mia_audit.pipeline.runtime import run_script


def main(log):
    sm = snakemake
    table = exposure.exposure_model(
        pd.read_parquet(sm.input.records),
        pd.read_parquet(sm.input.patient_risk),
        dataset=sm.wildcards.dataset,
        experiment=sm.wildcards.experiment,
        attributes=list(sm.params.attributes),
        orders=subgroups.group_orders(dict(sm.params.subgroups)),
    )
    table.to_csv(sm.output.table, sep="\t", index=False)
    if table["note"].astype(str).str.len().gt(0).any():
        log.warning("%s", table["note"].iloc[0])
    for r in table.itertuples():
        if r.group == "(all)":
            log.info("%s: joint test p = %.3g (%s)", r.attribute, r.p, r.test)
        elif isinstance(r.term, str) and r.term:
            log.info(
                "%s: %+.3f probit (95 %% CI %+.3f to %+.3f), p = %.3g, %s patients",
                r.term,
                r.estimate,
                r.ci_low,
                r.ci_high,
                r.p,
                "" if pd.isna(r.n_patients_group) else int(r.n_patients_group),
            )


run_script(main, snakemake.log[0])
