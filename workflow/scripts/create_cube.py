"""Snakemake script: the cube skeleton (coordinates, membership, empty confidences)."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821

from mia_audit import cube, store  # noqa: E402
from mia_audit.runtime import run_script  # noqa: E402


def main(log):
    sm = snakemake  # noqa: F821
    records = store.read_records(sm.input.records)
    member = store.record_membership(records, sm.input.membership)
    exp = sm.params.experiment
    views = list(sm.params.get("views", None) or ["original"])
    level = sm.params.get("access_level", None) or "full"
    cube.create_cube(
        sm.output.cube, records, member, models_per_shard=exp["models_per_job"],
        views=views if len(views) > 1 else None,
        attrs={"dataset": sm.wildcards.dataset, "experiment": sm.wildcards.experiment,
               "experiment_config": json.dumps(exp), "access_level": level},
    )
    log.info("cube %s (access %s): %d models × %d records, views %s, chunks of %d models", sm.output.cube, level,
             *member.shape, views, exp["models_per_job"])


run_script(main, snakemake.log[0])  # noqa: F821
