"""Snakemake script: every figure of one experiment, each table read once
(mia_audit.plots.experiment). A figure that cannot be drawn ends the job with one line naming
the figure and its tables; Snakemake then removes the job's outputs."""

from mia_audit.plots import experiment
from mia_audit.runtime import run_script


def main(log):
    sm = snakemake
    attributes = list(sm.params.attributes)
    tables = {key: path for key, path in sm.input.items() if key != "subgroups"}
    tables.update({f"subgroups_{a}": path for a, path in zip(attributes, sm.input.subgroups, strict=True)})
    outputs = {
        name: (sm.output[f"{name}_png"], sm.output[f"{name}_pdf"]) for name in experiment.figure_tables(attributes)
    }
    experiment.draw_experiment(
        tables, outputs, attributes, title=f"{sm.wildcards.dataset} / {sm.wildcards.experiment}", log=log
    )


run_script(main, snakemake.log[0])
