# Patient-level membership-inference audit of medical AI models.
# Stages (one rule file each, included below): validate and prepare → sample the membership →
# select the model and fit baselines → train → query into the cube → audit (records, patients,
# aggregate attacks, partial access) → adaptive waves and convergence → subgroups and their
# meta-analysis → DP utility → figures → report; beside them, attacks on released scores
# (external) and on public pretrained models. What each writes: README.md.

import os

from snakemake.exceptions import WorkflowError
from snakemake.sourcecache import LocalSourceFile
from snakemake.utils import min_version, validate

min_version("9.0")  # the tested Snakemake (envs/requirements.txt pins 9.x)

# This file's folder: the workflow's source. It is workflow.basedir only when this Snakefile is
# the one Snakemake was started with; used as a module (`module mia_audit: snakefile: ...` with
# `use rule * from mia_audit`, as snakedeploy writes it), workflow.basedir is the using
# Snakefile's folder and the source may be a remote one (github(...)). Every path below is
# relative to this file (Snakemake resolves include:, validate(), conda:, script: and report
# captions from the file that names them), never to workflow.basedir.
SOURCE = workflow.current_basedir
# What `pip install` takes to install the library from this source: the checkout's folder, or
# git+https://HOST/OWNER/REPO@REF for a module from github(...)/gitlab(...). Each rule's conda
# environment installs the library from it (envs/*.post-deploy.sh).
if isinstance(SOURCE, LocalSourceFile):
    MIA_AUDIT_SOURCE = SOURCE.get_path_or_uri(secret_free=True)
    os.environ.setdefault("MIA_AUDIT_ROOT", MIA_AUDIT_SOURCE)  # profile template, git commit
else:
    MIA_AUDIT_SOURCE = f"git+https://{SOURCE.host}/{SOURCE.repo}@{SOURCE.ref}"
os.environ.setdefault("MIA_AUDIT_SOURCE", MIA_AUDIT_SOURCE)

try:
    from mia_audit import settings
    from mia_audit.pipeline import checks, plan
    from mia_audit.pipeline.runtime import config_errors_as_one_line
except ImportError as err:
    raise WorkflowError(
        f"the workflow's library mia_audit is not importable ({err}); install it from the workflow's "
        f"source into the environment that runs Snakemake: pip install '{MIA_AUDIT_SOURCE}' (docs/hpc.md)"
    ) from None


# The bundled default; a --configfile given on the command line replaces it entirely
# (presets and test configs are complete configurations, not patches of the default).
# (Used as a module, the using Snakefile's config is passed in and this line is skipped.)
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


# --config values arrive as strings ('cluster={gpu: true}' gives "true"): type them as the schema
# expects (the schema the library was installed with: the one validate() reads below)
checks.coerce_cli_strings(config, settings.schema())
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
    tabulate_dp_empirical,
    plot_dp_bounds,
    plot_public_roc,
    describe_run,
    validate_dataset,
    attack_external,
    tabulate_waves,
    record_experiment_settings,


rule all:
    input:
        plan.all_targets(config),
    default_target: True
