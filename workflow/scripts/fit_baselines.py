"""Snakemake script: scikit-learn baselines on the first target models' member sets."""

import os

from mia_audit import baselines, store
from mia_audit.runtime import run_script


def main(log):
    sm = snakemake
    # gradient boosting's OpenMP threads (read when scikit-learn first loads it, below)
    os.environ["OMP_NUM_THREADS"] = str(sm.threads)
    spec = sm.params.spec.get("baselines") or {}
    records = store.read_records(sm.input.records)
    X, attrs, _, _ = store.read_model_inputs(sm.input.inputs)
    task = attrs.get("task", "multiclass")
    if task != "multiclass" or "label" not in records:
        raise ValueError(f"{sm.input.inputs}: baselines need a single-label (multiclass) task, got {task!r}")
    y = records["label"].to_numpy()
    member = store.record_membership(records, sm.input.membership)
    pool = (records["split"].astype(str) == "pool").to_numpy()
    table = baselines.fit_baselines(
        X, y, member, pool, spec.get("member_sets", 10), seed=spec.get("seed", 0), log=log.info
    )
    table.to_csv(sm.output.table, sep="\t", index=False)


run_script(main, snakemake.log[0])
