"""Snakemake script: offline RMIA and baselines against each public target."""

import pandas as pd
import xarray as xr

from mia_audit.audit import attacks
from mia_audit.external import public_models as external_public_models
from mia_audit.pipeline.runtime import run_script


def main(log):
    sm = snakemake
    audit = sm.params.audit
    cube = xr.open_zarr(sm.input.cube, consolidated=True).load()
    refs = list(audit["references"])
    frames, a = [], {}
    for target in audit["targets"]:
        s = external_public_models.attack_target(
            cube,
            target,
            refs,
            population=audit["population"],
            seed=audit["seed"],
            a=audit.get("rmia_a"),
            gamma=audit["gamma"],
            signal=audit.get("signal"),
        )
        a[target] = s.attrs["a"]
        log.info(
            "target %s: %d scored, %d without a usable label",
            target,
            (s["status"] == "ok").sum(),
            (s["status"] != "ok").sum(),
        )
        frames.append(s)
    scores = pd.concat(frames, ignore_index=True)
    patients = external_public_models.patient_scores(scores)
    summary = external_public_models.summarise(scores, patients, a)
    scores.to_parquet(sm.output.scores, index=False)
    patients.to_parquet(sm.output.patients, index=False)
    summary.to_csv(sm.output.summary, sep="\t", index=False)
    log.info("\n%s", summary[["target", "attack", "level", "auc", "tpr_at_fpr_0.01"]].to_string(index=False))
    warning = attacks.resolution_warning(summary)
    if warning:
        log.warning(warning)


run_script(main, snakemake.log[0])
