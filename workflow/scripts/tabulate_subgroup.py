"""Snakemake script: one attribute's tail-composition table of one experiment, with adjusted p."""

import pandas as pd

from mia_audit.runtime import run_script


def main(log):
    sm = snakemake
    w = sm.wildcards
    table = pd.read_csv(sm.input.tests, sep="\t", keep_default_na=False, na_values=[""], dtype={"group": str})
    cur = table[
        (table["dataset"] == w.dataset) & (table["experiment"] == w.experiment) & (table["attribute"] == w.attribute)
    ]
    if cur.empty:
        raise KeyError(
            f"{sm.input.tests} has no rows for dataset {w.dataset!r}, experiment {w.experiment!r}, "
            f"attribute {w.attribute!r}"
        )
    cur.to_csv(sm.output.table, sep="\t", index=False)
    log.info("wrote %d rows to %s", len(cur), sm.output.table)


run_script(main, snakemake.log[0])
