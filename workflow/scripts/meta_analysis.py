"""Snakemake script: meta-analysis of tail residuals against group share over the whole run."""

import pandas as pd

from mia_audit import meta
from mia_audit.runtime import run_script


def main(log):
    sm = snakemake
    big, small = sm.params.large_residual, sm.params.small_group_share
    tests = pd.read_csv(sm.input.tests, sep="\t", keep_default_na=False, na_values=[""], dtype={"group": str})
    pts = meta.points(tests, big, small)
    summ = meta.summary(pts, big, small)
    pts.to_csv(sm.output.points, sep="\t", index=False)
    summ.to_csv(sm.output.summary, sep="\t", index=False)
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
