"""Snakemake script: one table of all target models' metrics, and their utility summary."""

import pandas as pd

from mia_audit.pipeline.runtime import run_script
from mia_audit.query import assemble
from mia_audit.train import baselines, model_utility


def main(log):
    sm = snakemake
    df = pd.concat([pd.read_csv(p, sep="\t") for p in sm.input.metrics], ignore_index=True).sort_values("model")
    df.to_csv(sm.output.metrics, sep="\t", index=False)
    base = getattr(sm.input, "baselines", None)
    summary = model_utility.summarise(df, baselines.summarise(pd.read_csv(base, sep="\t")) if base else None)
    # the intervals of the mean test AUC and of the gap: a bootstrap over the test patients
    rows = [assemble.read_rows(path) for path in sm.input.rows]  # (model_start, rows) per shard
    test = model_utility.cube_test_scores(sm.input.skeleton, rows, df["model"].to_numpy())
    if test is None:
        log.info("the label is not binary: no patient-clustered intervals of the test AUC")
    else:
        scores, positive, pids, rids = test
        preds = getattr(sm.input, "predictions", None)
        base_scores = model_utility.baseline_test_scores(pd.read_parquet(preds), rids) if preds else None
        summary.update(
            model_utility.clustered_intervals(
                scores,
                positive,
                pids,
                base_scores,
                summary.get("best_baseline"),
                n_boot=sm.params.audit["utility_bootstrap"],
                seed=sm.params.audit["seed"],
            )
        )
    limits = sm.params.audit["overfit"]
    warnings = model_utility.overfit_warnings(
        summary, loss_ratio=limits["loss_ratio"], acc_limit=limits["train_acc"], auc_gap=limits["auc_gap"]
    )
    summary["warning"] = "; ".join(warnings)
    pd.DataFrame([summary]).to_csv(sm.output.utility, sep="\t", index=False)
    log.info(
        "%d models: test ROC AUC mean %.3f (95 %% CI over test patients %.3f–%.3f; 95 %% of single models "
        "%.3f–%.3f), test loss %.3g (train %.3g), train accuracy %.3f, test accuracy %.3f%s",
        len(df),
        summary["test_auc"],
        summary.get("test_auc_ci_low", float("nan")),
        summary.get("test_auc_ci_high", float("nan")),
        summary["test_auc_p2.5"],
        summary["test_auc_p97.5"],
        summary["test_loss"],
        summary["train_loss"],
        summary["train_acc"],
        summary["test_acc"],
        (
            f"; best baseline {summary['best_baseline']} {summary['best_baseline_auc']:.3f}, gap "
            f"{summary['auc_gap']:+.3f} (95 % CI {summary.get('auc_gap_ci_low', float('nan')):+.3f} to "
            f"{summary.get('auc_gap_ci_high', float('nan')):+.3f})"
        )
        if base
        else "",
    )
    for line in warnings:
        log.warning(line)


run_script(main, snakemake.log[0])
