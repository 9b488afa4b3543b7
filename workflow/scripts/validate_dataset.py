"""Snakemake script: every check of a data set before prepare_dataset may replace earlier outputs."""

import json

from mia_audit.adapters.pipeline import log_report, validate
from mia_audit.runtime import run_script


def main(log):
    sm = snakemake
    report, flags = validate(dict(sm.params.spec), dataset=sm.wildcards.dataset)
    report["config_digest"] = sm.wildcards.digest  # of datasets.<name> (the file's name)
    report["config"] = dict(sm.params.spec)
    flags.to_csv(sm.output.flags, sep="\t", index=False)
    with open(sm.output.report, "w") as fh:
        json.dump(report, fh, indent=1, default=str)
    log.info(
        "%s: %d records of %d patients pass every check",
        report.get("source") or report.get("root") or report["adapter"],
        report["records"],
        report["patients"],
    )
    log_report(report, log)


run_script(main, snakemake.log[0])
