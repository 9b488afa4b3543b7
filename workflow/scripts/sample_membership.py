"""Snakemake script: balanced membership matrix over the pool patients."""

import numpy as np

from mia_audit.data import store
from mia_audit.pipeline.runtime import run_script
from mia_audit.sampling import membership as sampling_membership


def main(log):
    spec = snakemake.params.spec
    records = store.read_records(snakemake.input.records)
    patients = np.unique(records.loc[records["split"] == "pool", "patient_id"].to_numpy())
    waves = spec.get("adaptive")
    if waves:  # adaptive audit: balanced waves, the cap n_models in all
        wave = waves["wave_models"]
        member = sampling_membership.wave_membership(
            spec["n_models"] // wave, wave, len(patients), spec["membership_seed"]
        )
        log.info("%d waves of %d models, each balanced on its own", spec["n_models"] // wave, wave)
    else:
        member = sampling_membership.balanced_membership(spec["n_models"], len(patients), spec["membership_seed"])
    sampling_membership.write_membership(snakemake.output.membership, member, patients, spec["membership_seed"])
    per_model = member.sum(axis=1)
    log.info(
        "%d models × %d pool patients; every patient IN for %d models; patients per model %d–%d",
        *member.shape,
        spec["n_models"] // 2,
        per_model.min(),
        per_model.max(),
    )


run_script(main, snakemake.log[0])
