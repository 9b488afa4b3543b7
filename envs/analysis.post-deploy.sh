#!/usr/bin/env bash
# Snakemake runs this once after creating the conda environment (--sdm conda): it installs
# the workflow's library (workflow/mia_audit, the `mia-audit` package of pyproject.toml)
# into the environment, editable, from the checkout whose Snakefile set MIA_AUDIT_ROOT.
set -euo pipefail
python -m pip install --no-deps -e "${MIA_AUDIT_ROOT:?MIA_AUDIT_ROOT must name the workflow checkout (the Snakefile sets it)}"
