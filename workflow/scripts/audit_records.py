"""Snakemake script: record risk, patient risk and exposure thresholds from the cube."""

import pandas as pd

from mia_audit import adaptive, audit, dp_audit, moderation, stats
from mia_audit.runtime import run_script


def main(log):
    sm = snakemake
    n_models = adaptive.audited_models(getattr(sm.input, "decision", None))  # None: every model
    n = audit.write_record_risk(
        sm.input.cube, sm.output.records, sm.params.block_records, log=log.info, n_models=n_models
    )
    status = pd.read_parquet(sm.output.records, columns=["status"])["status"].astype(str).value_counts()
    if len(status.drop("ok", errors="ignore")):
        log.warning("records with a non-ok status: %s", status.drop("ok", errors="ignore").to_dict())
    patients = audit.patient_risk_from_parquet(sm.output.records)
    exposure_mod = None
    if sm.params.moderated:  # audit.moderated_variance: the empirical-Bayes columns beside auc and se
        patients, exposure_mod, line = moderation.extend_audit(sm.output.records, patients, sm.params.thresholds)
        log.info(line)
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
    if exposure_mod is not None:
        table = table.merge(exposure_mod, on="threshold", how="left")
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
