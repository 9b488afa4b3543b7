"""Snakemake script: record risk and patient risk of one partial-access level's cube."""

from mia_audit import audit
from mia_audit.integrity import CubeCheck
from mia_audit.runtime import run_script


def main(log):
    sm = snakemake
    # the same bounded-memory path as the full-access audit (rule audit_records), checked the same way
    check = CubeCheck(sm.input.cube, sm.input.queries, level=sm.wildcards.access_level).check_slab
    n = audit.write_record_risk(sm.input.cube, sm.output.records, sm.params.block_records, log=log.info, check=check)
    patients = audit.patient_risk_from_parquet(sm.output.records)
    patients.to_parquet(sm.output.patients, index=False)
    log.info(
        "access level %s: %d records, %d patients; median patient AUC %.3f, patients with AUC ≥ 0.9: %d",
        sm.wildcards.access_level,
        n,
        len(patients),
        patients["auc"].median(),
        int((patients["auc"] >= 0.9).sum()),
    )


run_script(main, snakemake.log[0])
