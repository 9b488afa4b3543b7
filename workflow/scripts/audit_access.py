"""Snakemake script: record risk and patient risk of one partial-access level's cube."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821

from mia_audit import audit, stats  # noqa: E402
from mia_audit.runtime import run_script  # noqa: E402


def main(log):
    sm = snakemake  # noqa: F821
    records = audit.record_risk_from_cube(sm.input.cube, sm.params.block_records, log=log.info)
    records.to_parquet(sm.output.records, index=False)
    patients = stats.patient_risk(records)
    patients.to_parquet(sm.output.patients, index=False)
    log.info("access level %s: %d records, %d patients; median record AUC %.3f, patients with AUC ≥ 0.9: %d",
             sm.wildcards.access_level, len(records), len(patients), records["auc"].median(),
             int((patients["auc"] >= 0.9).sum()))


run_script(main, snakemake.log[0])  # noqa: F821
