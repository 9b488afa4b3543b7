"""Snakemake script: tail composition of one attribute with residuals and the adjusted test."""

import pandas as pd

from mia_audit.plots import style, subgroups
from mia_audit.runtime import run_script


def main(log):
    sm = snakemake
    w = sm.wildcards
    table = pd.read_csv(sm.input.table, sep="\t", keep_default_na=False, na_values=[""], dtype={"group": str})
    fig = subgroups.subgroup_composition(table, w.attribute, title=f"{w.dataset} / {w.experiment}: {w.attribute}")
    style.save(fig, sm.output.png, sm.output.pdf)
    log.info("wrote %s and %s", sm.output.png, sm.output.pdf)


run_script(main, snakemake.log[0])
