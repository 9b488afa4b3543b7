"""Snakemake script: record risk, patient risk and exposure thresholds from the cube."""

import pandas as pd

from mia_audit.analysis import adaptive
from mia_audit.audit import cube_audit, headline, moderation
from mia_audit.dp import audit as dp_audit
from mia_audit.integrity import CubeCheck
from mia_audit.pipeline.runtime import run_script
from mia_audit.train import model_utility


def main(log):
    sm = snakemake
    audit = sm.params.audit  # the rule's keys of config block audit
    n_models = adaptive.audited_models(getattr(sm.input, "decision", None))  # None: every model
    # every region of the cube is checked against what its query job recorded, as it is read
    n, extra, boot = cube_audit.write_audit(
        sm.input.cube,
        sm.output.records,
        block_records=audit["block_records"],
        estimator=audit["compat"],
        check_alpha=audit["binormal_check_alpha"],
        n_boot=audit["patient_bootstrap"],
        seed=audit["seed"],
        log=log.info,
        check=CubeCheck(sm.input.cube, sm.input.queries, n_models=n_models).check_slab,
        n_models=n_models,
        thresholds=audit["thresholds"],  # the joint bootstrap of the headline shares
        attack_folds=audit["attack_folds"],
        attack_permutations=audit["attack_permutations"],
    )
    status = pd.read_parquet(sm.output.records, columns=["status"])["status"].astype(str).value_counts()
    if len(status.drop("ok", errors="ignore")):
        log.warning("records with a non-ok status: %s", status.drop("ok", errors="ignore").to_dict())
    for line in cube_audit.check_summary(sm.output.records, audit["compat"], audit["binormal_check_alpha"]):
        log.info(line)
    patients = cube_audit.patient_risk_from_parquet(sm.output.records, extra)
    exposure_mod = None
    if audit["moderated_variance"]:  # the empirical-Bayes columns beside auc and se
        patients, exposure_mod, line = moderation.extend_audit(sm.output.records, patients, audit["thresholds"])
        log.info(line)
    spec = dp_audit.spec_from_metrics(pd.read_csv(sm.input.metrics, sep="\t"), path=sm.input.metrics)
    if spec is not None:  # a DP experiment: each record's and patient's AUC bound, and violations
        statistics = dp_audit.record_statistics_from_cube(
            sm.input.cube, audit["dp_fprs"], n_models=n_models, block_records=audit["block_records"]
        )
        records, patients = dp_audit.add_dp_bounds(
            pd.read_parquet(sm.output.records), patients, spec, statistics, alpha=audit["dp_alpha"]
        )
        records.to_parquet(sm.output.records, index=False)
        log.info(dp_audit.summary(records, patients, spec, audit["dp_alpha"]))
    patients.to_parquet(sm.output.patients, index=False)
    # the headline shares with the joint bootstrap and the deconvolved (measurement-error corrected) share
    table = headline.threshold_rows(patients, audit["thresholds"], boot, audit["headline_bootstrap"], audit["seed"])
    if exposure_mod is not None:
        table = table.merge(exposure_mod, on="threshold", how="left")
    util = model_utility.read(sm.input.utility)
    for col in model_utility.THRESHOLD_COLUMNS:  # utility beside risk: the models these shares are of
        table[f"models_{col}"] = util[col]
    table.to_csv(sm.output.thresholds, sep="\t", index=False)
    log.info(
        "%d records, %d patients; median patient AUC %.3f; target models: %s",
        n,
        len(patients),
        patients["auc"].median(),
        model_utility.sentence(util),
    )
    if util["warning"]:
        log.warning("%s: %s", sm.input.utility, util["warning"])
    for row in table.itertuples():
        log.info(
            "patients with AUC >= %.2f: %d (%.1f %%, 95%% CI over patients %.1f-%.1f %%, over models and patients "
            "%.1f-%.1f %%); true AUC by deconvolution %.1f %% (%.1f-%.1f %%); bias-corrected max %s; direct attack %s",
            row.threshold,
            row.count,
            100 * row.share,
            100 * row.ci_low,
            100 * row.ci_high,
            100 * row.ci_low_boot,
            100 * row.ci_high_boot,
            100 * row.share_eb,
            100 * row.ci_low_eb,
            100 * row.ci_high_eb,
            "n/a" if pd.isna(row.count_bc) else int(row.count_bc),
            "n/a" if pd.isna(row.count_attack) else int(row.count_attack),
        )


run_script(main, snakemake.log[0])
