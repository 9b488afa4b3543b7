"""Snakemake script: scikit-learn baselines on the first target models' member sets."""

import os

from mia_audit.data import store
from mia_audit.pipeline.runtime import run_script
from mia_audit.sampling import membership as sampling_membership
from mia_audit.train import baselines


def main(log):
    sm = snakemake
    # gradient boosting's OpenMP threads (read when scikit-learn first loads it, below)
    os.environ["OMP_NUM_THREADS"] = str(sm.threads)
    spec = sm.params.spec["baselines"]
    records = store.read_records(sm.input.records)
    X, attrs, _, _ = store.read_model_inputs(sm.input.inputs)
    task = attrs.get("task", "multiclass")
    if task != "multiclass" or "label" not in records:
        raise ValueError(f"{sm.input.inputs}: baselines need a single-label (multiclass) task, got {task!r}")
    y = records["label"].to_numpy()
    member = sampling_membership.read_record_membership(records, sm.input.membership)
    pool = (records["split"].astype(str) == "pool").to_numpy()
    table, predictions = baselines.fit_baselines(
        X, y, member, pool, spec["member_sets"], seed=spec["seed"], log=log.info, return_predictions=True
    )
    table.to_csv(sm.output.table, sep="\t", index=False)
    # the test predictions (binary labels) for the patient-clustered intervals of models/utility.tsv
    predictions.insert(2, "record_id", records["record_id"].astype(str).to_numpy()[predictions["record"].to_numpy(int)])
    predictions.drop(columns="record").to_parquet(sm.output.predictions, index=False)


run_script(main, snakemake.log[0])
