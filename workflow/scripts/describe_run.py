"""Snakemake script: the run's configuration (as validated, defaults filled in) and software
versions: this job's environment (the analysis jobs' packages) beside the train jobs' (read
from their environment records: packages, CUDA build, GPUs, driver, hosts)."""

import json

import pandas as pd
import yaml

from mia_audit import provenance
from mia_audit.pipeline.runtime import run_script


def main(log):
    sm = snakemake
    with open(sm.output.config, "w") as fh:
        fh.write(f"# configuration of this run (defaults and --config values included); {provenance.created_at()}\n")
        yaml.safe_dump(dict(sm.config), fh, sort_keys=False, allow_unicode=True)
    here = dict(provenance.software_versions())
    train = [json.load(open(path)) for path in sm.input.train]
    names = list(here) + [n for env in train for n in env["software"] if n not in here]
    rows = []
    for name in dict.fromkeys(names):
        seen = sorted({env["software"].get(name, "not recorded") for env in train})
        rows.append((name, here.get(name, "—"), "; ".join(seen) if seen else "—"))
    rows.append(("host", "this job's", "; ".join(sorted({env["host"] for env in train})) or "—"))
    table = pd.DataFrame(rows, columns=["software", "version (analysis jobs)", "train jobs"])
    table.to_csv(sm.output.software, sep="\t", index=False)
    log.info("wrote %s and %s (%s)", sm.output.config, sm.output.software, provenance.code_version_string())


run_script(main, snakemake.log[0])
