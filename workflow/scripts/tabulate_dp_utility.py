"""Snakemake script: utility (test AUC) against privacy (ε, bounds, violations) per experiment."""

import pandas as pd

from mia_audit.dp import audit
from mia_audit.pipeline.runtime import run_script
from mia_audit.train import choice


def main(log):
    sm = snakemake
    rows = []
    for entry, m, r, p in zip(
        sm.params.experiments, sm.input.metrics, sm.input.records, sm.input.patients, strict=True
    ):
        chosen = choice.read_choice(entry["choice"]) if entry["choice"] else None
        rows.append(
            audit.utility_row(
                entry["experiment"],
                entry["level"],
                entry["epsilon"],
                pd.read_csv(m, sep="\t"),
                pd.read_parquet(r),
                pd.read_parquet(p),
                candidate=chosen["candidate"] if chosen else None,
            )
        )
    df = pd.DataFrame(rows)
    df.to_csv(sm.output[0], sep="\t", index=False)
    log.info(
        "\n%s",
        df[
            [
                "experiment",
                "level",
                "epsilon_target",
                "epsilon_achieved_max",
                "epsilon_ref_delta",
                "dp_bound",
                "test_auc_median",
                "patient_violations",
            ]
        ].to_string(index=False),
    )


run_script(main, snakemake.log[0])
