"""Snakemake script: survival function of patient AUC per ε, at one DP level."""

import pandas as pd

from mia_audit.dp import audit as dp_audit
from mia_audit.pipeline import plan
from mia_audit.pipeline.runtime import run_script
from mia_audit.plots import dp as dp_plots
from mia_audit.plots import style
from mia_audit.train import accounting


def main(log):
    sm = snakemake
    curves = []
    for entry, path, metrics in zip(sm.params.experiments, sm.input.patients, sm.input.metrics, strict=True):
        pat = pd.read_parquet(path)
        viol = int(pat["dp_violation"].sum()) if "dp_violation" in pat else None
        bounds = pat["dp_bound"].to_numpy() if "dp_bound" in pat else None
        spec = dp_audit.spec_from_metrics(pd.read_csv(metrics, sep="\t"), path=metrics)
        ref = dp_audit.epsilon_at(spec, accounting.REFERENCE_DELTA) if spec is not None else None
        curves.append(
            {
                "label": dp_plots.epsilon_label_ref(plan.epsilon_label(entry["epsilon"]), ref),
                "auc": pat["auc"].to_numpy(),
                "bounds": bounds,
                "violations": viol,
            }
        )
        log.info("%s: %d patients, %s flagged; %s", entry["experiment"], len(pat), viol, dp_plots.bound_label(bounds))
    fig = dp_plots.esf_by_epsilon(
        curves, sm.wildcards.level, title=f"{sm.wildcards.dataset}: {sm.wildcards.level}-level DP"
    )
    style.save(fig, sm.output.png, sm.output.pdf)
    log.info("wrote %s and %s", sm.output.png, sm.output.pdf)


run_script(main, snakemake.log[0])
