"""Snakemake script: supplementary table of tail and overall composition of one experiment."""

import pandas as pd

from mia_audit import subgroups
from mia_audit.runtime import run_script


def main(log):
    sm = snakemake
    w = sm.wildcards
    table = pd.read_csv(sm.input.tests, sep="\t", keep_default_na=False, na_values=[""], dtype={"group": str})
    cur = table[(table["dataset"] == w.dataset) & (table["experiment"] == w.experiment)]
    subgroups.composition_table(cur).to_csv(sm.output.table, sep="\t", index=False)
    log.info("wrote %d rows to %s", len(cur), sm.output.table)


run_script(main, snakemake.log[0])
