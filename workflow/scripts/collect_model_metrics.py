"""Snakemake script: one table of all target models' metrics."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821

import pandas as pd  # noqa: E402

from mia_audit.runtime import run_script  # noqa: E402


def main(log):
    sm = snakemake  # noqa: F821
    df = pd.concat([pd.read_csv(p, sep="\t") for p in sm.input], ignore_index=True).sort_values("model")
    df.to_csv(sm.output[0], sep="\t", index=False)
    log.info("%d models: test ROC AUC median %.3f (IQR %.3f–%.3f), test accuracy median %.3f",
             len(df), df["test_auc"].median(), df["test_auc"].quantile(0.25), df["test_auc"].quantile(0.75),
             df["test_acc"].median())


run_script(main, snakemake.log[0])  # noqa: F821
