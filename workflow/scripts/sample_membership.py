"""Snakemake script: balanced membership matrix over the pool patients."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821

import numpy as np  # noqa: E402

from mia_audit import sampling, store  # noqa: E402
from mia_audit.runtime import run_script  # noqa: E402


def main(log):
    spec = snakemake.params.spec  # noqa: F821
    records = store.read_records(snakemake.input.records)  # noqa: F821
    patients = np.unique(records.loc[records["split"] == "pool", "patient_id"].to_numpy())
    member = sampling.balanced_membership(spec["n_models"], len(patients), spec["membership_seed"])
    store.write_membership(snakemake.output.membership, member, patients, spec["membership_seed"])  # noqa: F821
    per_model = member.sum(axis=1)
    log.info(
        "%d models × %d pool patients; every patient IN for %d models; patients per model %d–%d",
        *member.shape, spec["n_models"] // 2, per_model.min(), per_model.max(),
    )


run_script(main, snakemake.log[0])  # noqa: F821
