"""Snakemake script: the canaries' lower bounds beside the accountant's upper bounds."""

import pandas as pd

from mia_audit.dp import empirical
from mia_audit.pipeline.runtime import run_script


def main(log):
    sm = snakemake
    weights = list(sm.input.weights)
    rows = []
    for entry, metrics_path in zip(sm.params.experiments, sm.input.metrics, strict=True):
        shards, weights = weights[: entry["shards"]], weights[entry["shards"] :]
        can = empirical.read_shard_canaries(shards)
        if can is None:
            raise ValueError(
                f"{shards[0]}: the shard's metadata has no canaries; retrain experiment {entry['experiment']}"
            )
        rows += empirical.experiment_rows(
            entry["experiment"],
            entry["epsilon"],
            pd.read_csv(metrics_path, sep="\t"),
            can,
            alpha=sm.params.audit["dp_alpha"],
            seed=sm.params.audit["seed"],
        )
    df = pd.DataFrame(rows, columns=list(empirical.COLUMNS))
    df.to_csv(sm.output[0], sep="\t", index=False)
    log.info(
        "\n%s",
        df[
            ["experiment", "canary", "group_size", "epsilon_upper", "epsilon_lower", "auc_upper", "auc_lower"]
        ].to_string(index=False),
    )


run_script(main, snakemake.log[0])
