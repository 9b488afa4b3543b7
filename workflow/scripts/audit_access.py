"""Snakemake script: record risk and patient risk of one partial-access level's cube."""

from mia_audit import audit
from mia_audit.integrity import CubeCheck
from mia_audit.runtime import run_script


def main(log):
    sm = snakemake
    p = sm.params
    # the same bounded-memory path, settings and checks as the full-access audit (rule audit_records)
    n, extra = audit.write_audit(
        sm.input.cube,
        sm.output.records,
        block_records=p.block_records,
        estimator=p.compat,
        check_alpha=p.binormal_check_alpha,
        n_boot=p.patient_bootstrap,
        seed=p.seed,
        log=log.info,
        check=CubeCheck(sm.input.cube, sm.input.queries, level=sm.wildcards.access_level).check_slab,
    )
    patients = audit.patient_risk_from_parquet(sm.output.records, extra)
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
