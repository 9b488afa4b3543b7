"""Snakemake script: one table of all target models' metrics."""

import pandas as pd

from mia_audit.runtime import run_script


def main(log):
    sm = snakemake
    df = pd.concat([pd.read_csv(p, sep="\t") for p in sm.input], ignore_index=True).sort_values("model")
    df.to_csv(sm.output[0], sep="\t", index=False)
    log.info(
        "%d models: test ROC AUC median %.3f (IQR %.3f–%.3f), test accuracy median %.3f",
        len(df),
        df["test_auc"].median(),
        df["test_auc"].quantile(0.25),
        df["test_auc"].quantile(0.75),
        df["test_acc"].median(),
    )


run_script(main, snakemake.log[0])
