"""Snakemake script: every check of a data set before prepare_dataset may replace earlier outputs."""

import json

from mia_audit.data import sources
from mia_audit.data.prepare import log_report
from mia_audit.pipeline import plan
from mia_audit.pipeline.runtime import run_script
from mia_audit.pipeline.validate import validate_dataset


def main(log):
    sm = snakemake
    # the data where this job was given it (its declared input), not the configured path
    spec = plan.staged_dataset(sm.params.spec, sm.input.get("table"))
    report, flags = validate_dataset(spec, sm.wildcards.dataset)
    report["validation_digest"] = sm.wildcards.digest  # of datasets.<name> and its files' content (the name)
    report["config"] = dict(sm.params.spec)
    report["source_files"] = sources.source_fingerprints(spec)  # what was validated
    flags.to_csv(sm.output.flags, sep="\t", index=False)
    with open(sm.output.report, "w") as fh:
        json.dump(report, fh, indent=1, default=str)
    source = report.get("source") or report.get("root") or report["adapter"]
    log.info("%s: %d records of %d patients pass every check", source, report["records"], report["patients"])
    log_report(report, log)


run_script(main, snakemake.log[0])
