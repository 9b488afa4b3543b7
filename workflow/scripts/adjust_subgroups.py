"""Snakemake script: adjust the p-values of every tail-composition test of the run together,
then write every table cut from the adjusted run-wide table: each experiment's per-attribute
and composition tables, and the meta-analysis of the run."""

import pandas as pd

from mia_audit.analysis import meta_analysis, subgroups
from mia_audit.pipeline.runtime import run_script


def main(log):
    sm = snakemake
    parts = [
        pd.read_csv(p, sep="\t", keep_default_na=False, na_values=[""], dtype={"group": str}) for p in sm.input.tests
    ]
    table = subgroups.adjust_pvalues(subgroups.concat_tests(parts), sm.params.method)
    table.to_csv(sm.output.tests, sep="\t", index=False)
    tests = table.drop_duplicates(subgroups.TEST_KEY)
    log.info("%d tests (%d with a p-value) adjusted with %s", len(tests), tests["p"].notna().sum(), sm.params.method)
    log.info("wrote %d rows to %s", len(table), sm.output.tests)

    # cut in memory: the inputs are read as a reader of the run-wide file reads it and the
    # adjustment adds only float and text columns, so each cut is, to the byte, a cut of that
    # file (tests/analysis/test_subgroups.py checks it)
    for path, cut in subgroups.cut_tables(table, sm.params.tables, sm.output.tests).items():
        cut.to_csv(path, sep="\t", index=False)
        log.info("wrote %d rows to %s", len(cut), path)

    big, small = sm.params.large_residual, sm.params.small_group_share
    pts = meta_analysis.points(table, big, small)
    summ = meta_analysis.summary(pts, big, small)
    pts.to_csv(sm.output.points, sep="\t", index=False)
    log.info("wrote %d rows to %s", len(pts), sm.output.points)
    summ.to_csv(sm.output.summary, sep="\t", index=False)
    log.info("wrote %d rows to %s", len(summ), sm.output.summary)
    for row in summ.itertuples():
        log.info(
            "%s: %d groups, Pearson r %.3f, Spearman rho %.3f, %d/%d large residuals from small groups",
            row.level,
            row.n_points,
            row.pearson_r,
            row.spearman_rho,
            row.n_large_positive_small,
            row.n_large_positive,
        )


run_script(main, snakemake.log[0])
