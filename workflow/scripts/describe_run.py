"""Snakemake script: the run's configuration (as validated, defaults filled in) and software versions."""

import pandas as pd
import yaml

from mia_audit import provenance
from mia_audit.pipeline.runtime import run_script


def main(log):
    sm = snakemake
    with open(sm.output.config, "w") as fh:
        fh.write(f"# configuration of this run (defaults and --config values included); {provenance.created_at()}\n")
        yaml.safe_dump(dict(sm.config), fh, sort_keys=False, allow_unicode=True)
    rows = provenance.software_versions()
    pd.DataFrame(rows, columns=["software", "version"]).to_csv(sm.output.software, sep="\t", index=False)
    log.info("wrote %s and %s (%s)", sm.output.config, sm.output.software, provenance.code_version_string())


run_script(main, snakemake.log[0])
