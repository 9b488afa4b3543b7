"""Snakemake script: record risk and patient risk from the cube, in record blocks."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821

import pandas as pd  # noqa: E402

from mia_audit import audit, dp_audit, stats  # noqa: E402
from mia_audit.runtime import run_script  # noqa: E402


def main(log):
    sm = snakemake  # noqa: F821
    records = audit.record_risk_from_cube(sm.input.cube, sm.params.block_records, log=log.info)
    patients = stats.patient_risk(records)
    spec = dp_audit.spec_from_metrics(pd.read_csv(sm.input.metrics, sep="\t"))
    if spec is not None:  # a DP experiment: each record's and patient's AUC bound and violations
        records, patients = dp_audit.add_dp_bounds(records, patients, spec)
        log.info("DP %s level, achieved ε %.4g: %d records and %d patients above their bound", spec["level"],
                 spec["epsilon"], int(records["dp_violation"].sum()), int(patients["dp_violation"].sum()))
    records.to_parquet(sm.output.records, index=False)
    patients.to_parquet(sm.output.patients, index=False)
    bad = records["status"].astype(str).value_counts().drop("ok", errors="ignore")
    if len(bad):
        log.warning("records with a non-ok status: %s", bad.to_dict())
    log.info("%d records, %d patients; patient AUC ≥ 0.9: %d, ≥ 0.99: %d; median record AUC %.3f",
             len(records), len(patients), int((patients["auc"] >= 0.9).sum()), int((patients["auc"] >= 0.99).sum()),
             records["auc"].median())


run_script(main, snakemake.log[0])  # noqa: F821
