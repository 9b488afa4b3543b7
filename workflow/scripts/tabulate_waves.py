"""Snakemake script: every wave of an adaptive audit, and the models it saved."""

from mia_audit.analysis import adaptive
from mia_audit.pipeline.runtime import run_script


def main(log):
    table = adaptive.wave_table([adaptive.read_decision(p) for p in snakemake.input.decisions])
    table.to_csv(snakemake.output.table, sep="\t", index=False)
    last = table.iloc[-1]
    log.info(
        "stopped after wave %d (%s): %d models trained of the fixed design's %d, %d saved",
        last["wave"],
        last["decision"],
        last["models_trained"],
        last["models_fixed_design"],
        last["models_saved"],
    )


run_script(main, snakemake.log[0])
