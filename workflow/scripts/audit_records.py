"""Snakemake script: record risk, patient risk and exposure thresholds from the cube."""

import pandas as pd

from mia_audit import audit, dp_audit, stats
from mia_audit.integrity import CubeCheck
from mia_audit.runtime import run_script


def main(log):
    sm = snakemake
    # every region of the cube is checked against what its query job recorded, as it is read
    check = CubeCheck(sm.input.cube, sm.input.queries).check_slab
    n = audit.write_record_risk(sm.input.cube, sm.output.records, sm.params.block_records, log=log.info, check=check)
    status = pd.read_parquet(sm.output.records, columns=["status"])["status"].astype(str).value_counts()
    if len(status.drop("ok", errors="ignore")):
        log.warning("records with a non-ok status: %s", status.drop("ok", errors="ignore").to_dict())
    patients = audit.patient_risk_from_parquet(sm.output.records)
    spec = dp_audit.spec_from_metrics(pd.read_csv(sm.input.metrics, sep="\t"))
    if spec is not None:  # a DP experiment: each record's and patient's AUC bound, and violations
        records, patients = dp_audit.add_dp_bounds(pd.read_parquet(sm.output.records), patients, spec)
        records.to_parquet(sm.output.records, index=False)
        log.info(
            "DP %s level, achieved ε %.4g: %d records and %d patients above their bound",
            spec["level"],
            spec["epsilon"],
            int(records["dp_violation"].sum()),
            int(patients["dp_violation"].sum()),
        )
    patients.to_parquet(sm.output.patients, index=False)
    table = stats.exposure_table(patients["auc"], thresholds=sm.params.thresholds)
    table.to_csv(sm.output.thresholds, sep="\t", index=False)
    log.info("%d records, %d patients; median patient AUC %.3f", n, len(patients), patients["auc"].median())
    for row in table.itertuples():
        log.info(
            "patients with AUC >= %.2f: %d (%.1f %%, 95%% CI %.1f-%.1f %%)",
            row.threshold,
            row.count,
            100 * row.share,
            100 * row.ci_low,
            100 * row.ci_high,
        )


run_script(main, snakemake.log[0])
