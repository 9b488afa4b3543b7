"""Snakemake script: record risk and patient risk of one partial-access level's cube."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821

from mia_audit import audit  # noqa: E402
from mia_audit.runtime import run_script  # noqa: E402


def main(log):
    sm = snakemake  # noqa: F821
    # the same bounded-memory path as the full-access audit (rule audit_records)
    n = audit.write_record_risk(sm.input.cube, sm.output.records, sm.params.block_records, log=log.info)
    patients = audit.patient_risk_from_parquet(sm.output.records)
    patients.to_parquet(sm.output.patients, index=False)
    log.info("access level %s: %d records, %d patients; median patient AUC %.3f, patients with AUC ≥ 0.9: %d",
             sm.wildcards.access_level, n, len(patients), patients["auc"].median(),
             int((patients["auc"] >= 0.9).sum()))


run_script(main, snakemake.log[0])  # noqa: F821
