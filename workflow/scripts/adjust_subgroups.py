"""Snakemake script: adjust the p-values of every tail-composition test of the run together."""

import pandas as pd

from mia_audit import subgroups
from mia_audit.runtime import run_script


def main(log):
    sm = snakemake
    parts = [
        pd.read_csv(p, sep="\t", keep_default_na=False, na_values=[""], dtype={"group": str}) for p in sm.input.tests
    ]
    table = subgroups.adjust_pvalues(pd.concat(parts, ignore_index=True), sm.params.method)
    table.to_csv(sm.output.tests, sep="\t", index=False)
    tests = table.drop_duplicates(subgroups.TEST_KEY)
    log.info("%d tests (%d with a p-value) adjusted with %s", len(tests), tests["p"].notna().sum(), sm.params.method)


run_script(main, snakemake.log[0])
