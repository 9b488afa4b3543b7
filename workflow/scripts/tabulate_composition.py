"""Snakemake script: supplementary table of tail and overall composition of one experiment."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821

import pandas as pd  # noqa: E402

from mia_audit import subgroups  # noqa: E402
from mia_audit.runtime import run_script  # noqa: E402


def main(log):
    sm = snakemake  # noqa: F821
    w = sm.wildcards
    table = pd.read_csv(sm.input.tests, sep="\t", keep_default_na=False, na_values=[""], dtype={"group": str})
    cur = table[(table["dataset"] == w.dataset) & (table["experiment"] == w.experiment)]
    subgroups.composition_table(cur).to_csv(sm.output.table, sep="\t", index=False)
    log.info("wrote %d rows to %s", len(cur), sm.output.table)


run_script(main, snakemake.log[0])  # noqa: F821
