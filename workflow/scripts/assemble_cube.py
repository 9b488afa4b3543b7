"""Snakemake script: a cube (full access, or one partial-access level) from its skeleton and
every shard's rows (mia_audit.query.assemble)."""

from mia_audit.pipeline.runtime import run_script
from mia_audit.query import assemble


def main(log):
    sm = snakemake
    assemble.assemble(
        sm.input.skeleton,
        sm.input.rows,
        sm.output.cube,
        level=sm.params.level,
        log=log.info,
        summaries=sm.input.queries,
    )


run_script(main, snakemake.log[0])
