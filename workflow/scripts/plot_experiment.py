"""Snakemake script: every figure of one experiment, each table read once
(mia_audit.plots.experiment). A figure that cannot be drawn ends the job with one line naming
the figure and its tables; Snakemake then removes the job's outputs."""

from mia_audit.pipeline.runtime import run_script
from mia_audit.plots import experiment
from mia_audit.plots.registry import experiment_drawings


def main(log):
    sm = snakemake
    attributes = list(sm.params.attributes)
    outputs = {
        d.name: (sm.output[f"{d.name}_png"], sm.output[f"{d.name}_pdf"]) for d in experiment_drawings(attributes)
    }
    experiment.draw_experiment(
        dict(sm.input.items()),
        outputs,
        attributes,
        title=f"{sm.wildcards.dataset} / {sm.wildcards.experiment}",
        log=log,
    )


run_script(main, snakemake.log[0])
