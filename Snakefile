# Patient-level membership-inference audit of medical AI models.
# Stages: prepare → sample → train → query → audit → figures (see README.md).

import os

from snakemake.utils import min_version, validate

from mia_audit.pipeline import checks, plan
from mia_audit.pipeline.runtime import config_errors_as_one_line

min_version("8.0")

# The library (workflow/mia_audit) is installed into the environment (README set-up); conda
# environments install it from this checkout after they are created (envs/*.post-deploy.sh).
os.environ.setdefault("MIA_AUDIT_ROOT", workflow.basedir)


# The bundled default; a --configfile given on the command line replaces it entirely
# (presets and test configs are complete configurations, not patches of the default).
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


# --config values arrive as strings ('cluster={gpu: true}' gives "true"): type them as the schema expects
checks.coerce_cli_strings(config, os.path.join(workflow.basedir, "config", "schema.yaml"))
# a violation is one line naming the key (config/schema.yaml documents every key)
with config_errors_as_one_line():
    validate(config, "config/schema.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/prepare.smk"
include: "workflow/rules/sample.smk"
include: "workflow/rules/select.smk"
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
include: "workflow/rules/report.smk"


report: "workflow/report/workflow.rst"


# Light jobs (tables and figures: seconds, little memory) run where Snakemake runs, never as
# cluster submissions; the heavy stages are grouped into few submissions by profiles/default.
# validate_dataset is local too: it reads the table or the data set's index (not its images)
# and must finish before prepare_dataset starts, so it is never grouped with it. (Rules
# plot_experiment_{dataset}, made only for data sets with other subgroup attributes, say
# `localrule: True` themselves: workflow/rules/figures.smk.)
localrules:
    collect_model_metrics,
    tabulate_headline,
    fit_exposure_model,
    adjust_subgroups,
    tabulate_dp_utility,
    plot_experiment,
    plot_meta_analysis,
    plot_esf_by_experiment,
    plot_dp_esf,
    plot_public_roc,
    describe_run,
    validate_dataset,
    attack_external,
    tabulate_waves,


rule all:
    input:
        plan.all_targets(config),
    default_target: True
