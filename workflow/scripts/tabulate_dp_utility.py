"""Snakemake script: utility (test AUC) against privacy (ε, violations) per experiment."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821

import pandas as pd  # noqa: E402

from mia_audit import dp_audit  # noqa: E402
from mia_audit.runtime import run_script  # noqa: E402


def main(log):
    sm = snakemake  # noqa: F821
    rows = []
    for entry, m, r, p in zip(sm.params.experiments, sm.input.metrics, sm.input.records, sm.input.patients):
        rows.append(dp_audit.utility_row(entry["experiment"], entry["level"], entry["epsilon"],
                                         pd.read_csv(m, sep="\t"), pd.read_parquet(r), pd.read_parquet(p)))
    df = pd.DataFrame(rows)
    df.to_csv(sm.output[0], sep="\t", index=False)
    log.info("\n%s", df[["experiment", "level", "epsilon_target", "epsilon_achieved_max", "test_auc_median",
                         "patient_violations"]].to_string(index=False))


run_script(main, snakemake.log[0])  # noqa: F821
