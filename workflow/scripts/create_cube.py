"""Snakemake script: the cube skeleton (coordinates, membership, empty confidences)."""

import json

from mia_audit import cube, store
from mia_audit.runtime import run_script


def main(log):
    sm = snakemake
    records = store.read_records(sm.input.records)
    member = store.record_membership(records, sm.input.membership)
    exp = sm.params.experiment
    views = list(sm.params.get("views", None) or ["original"])
    level = sm.params.get("access_level", None) or "full"
    cube.create_cube(
        sm.output.cube,
        records,
        member,
        models_per_shard=exp["models_per_job"],
        views=views if len(views) > 1 else None,
        attrs={
            "dataset": sm.wildcards.dataset,
            "experiment": sm.wildcards.experiment,
            "experiment_config": json.dumps(exp),
            "access_level": level,
        },
    )
    log.info(
        "cube %s (access %s): %d models × %d records, views %s, chunks of %d models",
        sm.output.cube,
        level,
        *member.shape,
        views,
        exp["models_per_job"],
    )


run_script(main, snakemake.log[0])
