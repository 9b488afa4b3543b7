"""Snakemake script: the precision of an adaptive audit after one wave, and whether to go on."""

import tempfile

from mia_audit.analysis import adaptive
from mia_audit.integrity import CubeCheck
from mia_audit.pipeline.runtime import run_script
from mia_audit.query import assemble


def main(log):
    sm = snakemake
    wave = int(sm.wildcards.wave)
    # the cube of the waves trained so far, assembled in this job's scratch space from the shards'
    # rows (each checked against what its query job recorded) ...
    tmp = tempfile.TemporaryDirectory(prefix="assess_wave_")
    cube = f"{tmp.name}/cube.zarr"
    assemble.assemble(sm.input.skeleton, sm.input.rows, cube, log=log.info, summaries=sm.input.queries)
    # ... and every coordinate and region of it is what its writers recorded
    CubeCheck(cube, sm.input.queries, n_models=(wave + 1) * int(sm.params.spec["wave_models"])).verify()
    decision = adaptive.assess(
        cube,
        int(sm.wildcards.wave),
        sm.params.spec,
        "moderated" if sm.params.audit["moderated_variance"] else "binormal",
        cap=int(sm.params.cap),
        previous=adaptive.read_decision(sm.input.previous[0]) if sm.input.previous else None,
        block_records=sm.params.audit["block_records"],
        log=log.info,
    )
    adaptive.write_decision(sm.output.decision, decision)
    tmp.cleanup()


run_script(main, snakemake.log[0])
