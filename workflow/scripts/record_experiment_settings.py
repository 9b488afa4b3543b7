"""Snakemake script: the settings an experiment folder's outputs are made with (settings.json)."""

import json
import os

from mia_audit.pipeline.runtime import run_script


def main(log):
    sm = snakemake
    path = sm.output.settings
    tmp = f"{path}.tmp"
    with open(tmp, "w") as fh:
        json.dump({"digest": sm.params.digest, "settings": dict(sm.params.settings)}, fh, indent=1, sort_keys=True)
    os.replace(tmp, path)  # whole or absent: the checks before every run read it
    log.info("%s: settings of experiment %s (digest %s)", path, sm.wildcards.experiment, sm.params.digest)


run_script(main, snakemake.log[0])
