"""Snakemake script: audit/headline.tsv, the headline shares of every audited candidate and their range."""

from pathlib import Path

import pandas as pd

from mia_audit.audit import headline
from mia_audit.pipeline.runtime import run_script
from mia_audit.train import model_utility


def main(log):
    sm = snakemake
    sel_path = getattr(sm.input, "selection", None)
    sel = pd.read_csv(sel_path, sep="\t") if sel_path else None
    chosen = (
        str(sel.loc[sel["chosen"].astype(bool), "candidate"].iloc[0]) if sel is not None else sm.wildcards.experiment
    )
    util = model_utility.read(sm.input.utility)
    parts = [
        (
            headline.candidate_description(chosen, True, sel, util["test_auc"]),
            pd.read_csv(sm.input.thresholds, sep="\t"),
        )
    ]
    for path, metrics_path in zip(sm.input.candidates, sm.input.candidate_metrics, strict=True):
        name = Path(path).parent.name
        metrics = pd.read_csv(metrics_path, sep="\t")
        parts.append(
            (headline.candidate_description(name, False, sel, metrics["test_auc"].mean()), pd.read_csv(path, sep="\t"))
        )
    table = headline.headline_table(parts)
    table.to_csv(sm.output.table, sep="\t", index=False)
    for t, rows in table.groupby("threshold", sort=True):
        r = rows.iloc[0]
        log.info(
            "AUC >= %.2f: %s patients by the chosen candidate; %d-%d across %d tied candidate(s)",
            t,
            int(r["count"]),
            int(r["range_count_low"]),
            int(r["range_count_high"]),
            int(r["range_candidates"]),
        )


run_script(main, snakemake.log[0])
