"""Snakemake script: train one shard of target models as a vectorised ensemble."""

import json

from mia_audit import device, provenance
from mia_audit.integrity import write_shard_manifest
from mia_audit.pipeline.runtime import run_script
from mia_audit.train import selection
from mia_audit.train.shard import train_shard


def main(log):
    sm = snakemake
    start, stop = sm.params.models
    # with model selection, the chosen candidate's model and train blocks (selection/chosen.json)
    choice = getattr(sm.input, "choice", None)
    experiment = selection.apply_choice(sm.params.experiment, selection.read_choice(choice) if choice else None)
    train_shard(
        records_path=sm.input.records,
        inputs_path=sm.input.inputs,
        membership_path=sm.input.membership,
        experiment=experiment,
        model_range=(start, stop),
        device=sm.params.device,
        threads=device.torch_threads(sm.threads),
        weights_path=sm.output.weights,
        metrics_path=sm.output.metrics,
        log=log.info,
    )
    # what this job wrote, checked by the query job before it loads the weights
    write_shard_manifest(
        sm.output.manifest, int(sm.wildcards.shard), (start, stop), [sm.output.weights, sm.output.metrics]
    )
    # the software, GPU and driver this job ran with (the report's software table)
    with open(sm.output.environment, "w") as fh:
        json.dump(provenance.job_environment(), fh, indent=1)


run_script(main, snakemake.log[0])
