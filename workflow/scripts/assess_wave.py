"""Snakemake script: the precision of an adaptive audit after one wave, and whether to go on."""

from mia_audit.analysis import adaptive
from mia_audit.pipeline.runtime import run_script


def main(log):
    sm = snakemake
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
