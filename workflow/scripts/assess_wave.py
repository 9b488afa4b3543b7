"""Snakemake script: the precision of an adaptive audit after one wave, and whether to go on."""

from mia_audit.analysis import adaptive
from mia_audit.integrity import CubeCheck
from mia_audit.pipeline.runtime import run_script


def main(log):
    sm = snakemake
    wave = int(sm.wildcards.wave)
    # the waves trained so far: every coordinate and region is what its writers recorded
    CubeCheck(sm.input.cube, sm.input.queries, n_models=(wave + 1) * int(sm.params.spec["wave_models"])).verify()
    decision = adaptive.assess(
        sm.input.cube,
        int(sm.wildcards.wave),
        sm.params.spec,
        "moderated" if sm.params.audit["moderated_variance"] else "binormal",
        cap=int(sm.params.cap),
        previous=adaptive.read_decision(sm.input.previous[0]) if sm.input.previous else None,
        block_records=sm.params.audit["block_records"],
        log=log.info,
    )
    adaptive.write_decision(sm.output.decision, decision)


run_script(main, snakemake.log[0])
