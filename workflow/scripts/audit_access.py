"""Snakemake script: record risk and patient risk of one partial-access level's cube."""

from mia_audit.audit import cube_audit
from mia_audit.integrity import CubeCheck
from mia_audit.pipeline.runtime import run_script


def main(log):
    sm = snakemake
    audit = sm.params.audit  # the rule's keys of config block audit
    # the same bounded-memory path, settings and checks as the full-access audit (rule audit_records)
    n, extra, _ = cube_audit.write_audit(
        sm.input.cube,
        sm.output.records,
        block_records=audit["block_records"],
        estimator=audit["compat"],
        check_alpha=audit["binormal_check_alpha"],
        n_boot=audit["patient_bootstrap"],
        seed=audit["seed"],
        log=log.info,
        check=CubeCheck(sm.input.cube, sm.input.queries, level=sm.wildcards.access_level).check_slab,
        attack_folds=audit["attack_folds"],
        attack_permutations=audit["attack_permutations"],
    )
    patients = cube_audit.patient_risk_from_parquet(sm.output.records, extra)
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
