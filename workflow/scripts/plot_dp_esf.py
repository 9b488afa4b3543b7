"""Snakemake script: survival function of patient AUC per ε, at one DP level."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821

import pandas as pd  # noqa: E402

from mia_audit import plan  # noqa: E402
from mia_audit.plots import dp as dp_plots, style  # noqa: E402
from mia_audit.runtime import run_script  # noqa: E402


def main(log):
    sm = snakemake  # noqa: F821
    curves = []
    for entry, path in zip(sm.params.experiments, sm.input.patients):
        pat = pd.read_parquet(path)
        viol = int(pat["dp_violation"].sum()) if "dp_violation" in pat else None
        curves.append({"label": plan.epsilon_label(entry["epsilon"]), "auc": pat["auc"].to_numpy(),
                       "violations": viol})
        log.info("%s: %d patients, %s above their bound", entry["experiment"], len(pat), viol)
    fig = dp_plots.esf_by_epsilon(curves, sm.wildcards.level,
                                  title=f"{sm.wildcards.dataset}: {sm.wildcards.level}-level DP")
    style.save(fig, sm.output.png, sm.output.pdf)
    log.info("wrote %s and %s", sm.output.png, sm.output.pdf)


run_script(main, snakemake.log[0])  # noqa: F821
