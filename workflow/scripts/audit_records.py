"""Snakemake script: record risk, patient risk and exposure thresholds from the cube."""

import pandas as pd

from mia_audit import adaptive, audit, dp_audit, moderation, utility
from mia_audit import patients as patient_stats
from mia_audit.integrity import CubeCheck
from mia_audit.runtime import run_script


def main(log):
    sm = snakemake
    p = sm.params
    n_models = adaptive.audited_models(getattr(sm.input, "decision", None))  # None: every model
    # every region of the cube is checked against what its query job recorded, as it is read
    n, extra = audit.write_audit(
        sm.input.cube,
        sm.output.records,
        block_records=p.block_records,
        estimator=p.compat,
        check_alpha=p.binormal_check_alpha,
        n_boot=p.patient_bootstrap,
        seed=p.seed,
        log=log.info,
        check=CubeCheck(sm.input.cube, sm.input.queries, n_models=n_models).check_slab,
        n_models=n_models,
    )
    status = pd.read_parquet(sm.output.records, columns=["status"])["status"].astype(str).value_counts()
    if len(status.drop("ok", errors="ignore")):
        log.warning("records with a non-ok status: %s", status.drop("ok", errors="ignore").to_dict())
    for line in audit.check_summary(sm.output.records, p.compat, p.binormal_check_alpha):
        log.info(line)
    patients = audit.patient_risk_from_parquet(sm.output.records, extra)
    exposure_mod = None
    if p.moderated:  # audit.moderated_variance: the empirical-Bayes columns beside auc and se
        patients, exposure_mod, line = moderation.extend_audit(sm.output.records, patients, p.thresholds)
        log.info(line)
    spec = dp_audit.spec_from_metrics(pd.read_csv(sm.input.metrics, sep="\t"), path=sm.input.metrics)
    if spec is not None:  # a DP experiment: each record's and patient's AUC bound, and violations
        records, patients = dp_audit.add_dp_bounds(
            pd.read_parquet(sm.output.records), patients, spec, alpha=sm.params.dp_alpha
        )
        records.to_parquet(sm.output.records, index=False)
        log.info(dp_audit.summary(records, patients, spec, sm.params.dp_alpha))
    patients.to_parquet(sm.output.patients, index=False)
    table = patient_stats.threshold_table(patients, sm.params.thresholds)
    if exposure_mod is not None:
        table = table.merge(exposure_mod, on="threshold", how="left")
    util = utility.read(sm.input.utility)
    for col in utility.THRESHOLD_COLUMNS:  # utility beside risk: the models these shares are of
        table[f"models_{col}"] = util[col]
    table.to_csv(sm.output.thresholds, sep="\t", index=False)
    log.info(
        "%d records, %d patients; median patient AUC %.3f; target models: %s",
        n,
        len(patients),
        patients["auc"].median(),
        utility.sentence(util),
    )
    if util["warning"]:
        log.warning("%s: %s", sm.input.utility, util["warning"])
    for row in table.itertuples():
        log.info(
            "patients with AUC >= %.2f: %d (%.1f %%, 95%% CI %.1f-%.1f %%); bias-corrected max %s; direct attack %s",
            row.threshold,
            row.count,
            100 * row.share,
            100 * row.ci_low,
            100 * row.ci_high,
            "n/a" if pd.isna(row.count_bc) else int(row.count_bc),
            "n/a" if pd.isna(row.count_attack) else int(row.count_attack),
        )


run_script(main, snakemake.log[0])
