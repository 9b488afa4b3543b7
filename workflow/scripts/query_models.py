"""Snakemake script: query one shard's models on every record into its own store of cube rows."""

from mia_audit import device
from mia_audit.integrity import check_shard_file
from mia_audit.pipeline.runtime import run_script
from mia_audit.query.shard import query_shard


def main(log):
    sm = snakemake
    # the weights are what the train job wrote (size and SHA-256), for the models of this shard
    check_shard_file(sm.input.weights, sm.input.manifest, models=sm.params.models)
    query_shard(
        weights_path=sm.input.weights,
        records_path=sm.input.records,
        inputs_path=sm.input.inputs,
        cube_path=sm.input.cube,
        device=sm.params.device,
        threads=device.torch_threads(sm.threads),
        done_path=sm.output.done,
        rows_path=sm.output.rows,
        log=log.info,
        access={level: (spec, path) for level, (spec, path) in dict(sm.params.access).items()},
    )


run_script(main, snakemake.log[0])
