# Patient-level membership-inference audit of medical AI models.
# Stages: prepare → sample → train → query → audit → figures (see README.md).

import os

from snakemake.utils import min_version, validate

min_version("8.0")

# The library (workflow/mia_audit) is installed into the environment (README set-up); conda
# environments install it from this checkout after they are created (envs/*.post-deploy.sh).
os.environ.setdefault("MIA_AUDIT_ROOT", workflow.basedir)


# The bundled default; a --configfile given on the command line replaces it entirely
# (presets and test configs are complete configurations, not patches of the default).
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


validate(config, "config/schema.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/prepare.smk"
include: "workflow/rules/sample.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/query.smk"
include: "workflow/rules/audit.smk"
include: "workflow/rules/adaptive.smk"
include: "workflow/rules/convergence.smk"
include: "workflow/rules/access.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/external.smk"
include: "workflow/rules/subgroups.smk"
include: "workflow/rules/dp.smk"
include: "workflow/rules/public_models.smk"


report: "workflow/report/workflow.rst"


rule all:
    input:
        plan.all_targets(config),
    default_target: True
