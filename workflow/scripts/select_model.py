"""Snakemake script: model selection on validation splits of the pool patients."""

import json

from mia_audit import device
from mia_audit.data import store
from mia_audit.pipeline.runtime import run_script
from mia_audit.train import selection
from mia_audit.train.shard import read_labels


def main(log):
    sm = snakemake
    records = store.read_records(sm.input.records)
    X, attrs, _, _ = store.read_model_inputs(sm.input.inputs)
    task, label_names, y = read_labels(records, attrs)
    exp = sm.params.experiment
    trainer = None
    if exp.get("dp"):  # every candidate trains with DP-SGD at the experiment's budget
        from mia_audit.train.dp_sgd import selection_trainer

        trainer = selection_trainer(exp, records["patient_id"].astype(str).to_numpy())
    table, chosen = selection.run_selection(
        records,
        X,
        y,
        task,
        len(label_names),
        sm.params.experiment,
        device=sm.params.device,
        threads=device.torch_threads(sm.threads),
        log=log.info,
        trainer=trainer,
    )
    if exp.get("dp"):  # the chosen candidate's dp overrides, for train_models
        chosen["dp"] = (exp["selection"]["candidates"][chosen["candidate"]] or {}).get("dp") or {}
    table.to_csv(sm.output.table, sep="\t", index=False)
    with open(sm.output.chosen, "w") as fh:
        json.dump(chosen, fh, indent=1, sort_keys=True)
    log.info(
        "chosen by %s: %s (model %s, train %s)", chosen["metric"], chosen["candidate"], chosen["model"], chosen["train"]
    )


run_script(main, snakemake.log[0])
