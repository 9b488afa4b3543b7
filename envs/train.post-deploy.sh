#!/usr/bin/env bash
# Snakemake runs this once after creating the conda environment (--sdm conda): it installs the
# workflow's library (workflow/mia_audit, the `mia-audit` package of pyproject.toml) into the
# environment from the workflow's source that the Snakefile named in MIA_AUDIT_SOURCE: a checkout
# (installed editable) or, for a workflow used as a module from github(...), git+https://…@REF.
set -euo pipefail
source="${MIA_AUDIT_SOURCE:?MIA_AUDIT_SOURCE must name the workflow source (the Snakefile sets it)}"
if [ -d "$source" ]; then
    python -m pip install --no-deps -e "$source"
else
    python -m pip install --no-deps "$source"
fi
