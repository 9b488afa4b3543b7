"""Snakemake script: one candidate tied with the chosen one, audited with the full target-model design."""

from mia_audit import device
from mia_audit.audit import candidate
from mia_audit.pipeline.runtime import run_script


def main(log):
    sm = snakemake
    audit = sm.params.audit
    table = candidate.audit_candidate(
        records_path=sm.input.records,
        inputs_path=sm.input.inputs,
        membership_path=sm.input.membership,
        experiment=sm.params.experiment,
        candidate=sm.wildcards.candidate,
        views=list(sm.params.views),
        audit={  # the rule's keys of config block audit
            "attack_folds": audit["attack_folds"],
            "attack_permutations": audit["attack_permutations"],
            "binormal_check_alpha": audit["binormal_check_alpha"],
            "block_records": audit["block_records"],
            "compat": audit["compat"],
            "headline_bootstrap": audit["headline_bootstrap"],
            "patient_bootstrap": audit["patient_bootstrap"],
            "seed": audit["seed"],
            "thresholds": audit["thresholds"],
        },
        device=sm.params.device,
        threads=device.torch_threads(sm.threads),
        metrics_path=sm.output.metrics,
        patients_path=sm.output.patients,
        thresholds_path=sm.output.thresholds,
        log=log.info,
    )
    for row in table.itertuples():
        log.info(
            "candidate %s: patients with AUC >= %.2f: %d (%.1f %%; over models and patients %.1f-%.1f %%)",
            sm.wildcards.candidate,
            row.threshold,
            row.count,
            100 * row.share,
            100 * row.ci_low_boot,
            100 * row.ci_high_boot,
        )


run_script(main, snakemake.log[0])
