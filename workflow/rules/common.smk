# What the rules share: the results folder, the checks before any job, and the functions
# that need Snakemake's own objects (checkpoints, report()). Every other input function,
# param and resource is a method of R (mia_audit/pipeline/rules.py), tested by import.

from snakemake.logging import logger

from mia_audit.pipeline import checks, plan, runlock, slurm
from mia_audit.pipeline.rules import RuleFunctions
from mia_audit.pipeline.runtime import config_errors_as_one_line
from mia_audit.query import assemble

R = RuleFunctions(config)
RESULTS = plan.results(config)
# every job's log, beside the results it describes (runs on other results folders keep theirs)
LOGS = f"{RESULTS}/logs"
# The jobs from the data to the target models' predictions (selection, cube, training,
# querying) form the longest path through a run; when several jobs are ready they go first,
# so that the audits, tables and figures of both experiments can overlap at the end.
CHAIN_PRIORITY = 10
# run, dry run, report …, or one of Snakemake's per-job processes (mia_audit/pipeline/runlock.py)
INVOCATION = runlock.invocation(workflow)

# Before any job: the config checks the schema cannot express, the profile, the device the
# jobs will run on, and one run per results folder (a second run stops here, naming the first).
with config_errors_as_one_line():
    checks.check_config(config)
    checks.check_experiment_folders(config)  # one configuration per experiment folder
    checks.check_profile_placeholders(
        getattr(workflow.resource_settings, "default_resources", None),
        getattr(workflow.resource_settings, "overwrite_resources", None),
    )
    if INVOCATION.checks_devices:
        checks.check_device(config, INVOCATION.executor)
    # a SLURM run: every heavy job fits a node of its partition (sinfo), or one line naming
    # the key to change, before anything is submitted (SLURM would keep it PENDING for ever)
    if INVOCATION.executor == "slurm" and INVOCATION.checks_devices:
        checks.check_cluster_requests(
            config,
            workflow.global_resources["_cores"].value,
            getattr(workflow.resource_settings, "default_resources", None),
            getattr(workflow.resource_settings, "overwrite_resources", None),
            getattr(workflow.group_settings, "group_components", None),
        )
    runlock.claim(RESULTS, INVOCATION, logger.warning)

if INVOCATION.executor == "slurm" and INVOCATION.mode == "run":
    # SLURM's job logs beside the results (unless the profile names a folder), sbatch's error
    # in the failure message of a rejected group job, and no retries of rejected submissions
    slurm.default_logdir(runlock.snakemake_cli_local("executor_settings"), f"{LOGS}/slurm")
    slurm.show_sbatch_errors(logger)


onstart:
    runlock.claim_at_start(RESULTS, INVOCATION, logger.warning)


wildcard_constraints:
    dataset=plan.NAME_PATTERN,
    experiment=plan.NAME_PATTERN,
    shard="[0-9]+",
    wave="[0-9]+",
    access_level=plan.NAME_PATTERN,
    level="record|patient",
    public=plan.NAME_PATTERN,
    cands=plan.NAME_PATTERN,
    digest="[0-9a-f]{16}",
    candidate=plan.CANDIDATE_PATTERN,


# --- adaptive audits: one checkpoint per wave; the next wave comes from plan.next_wave


def wave_decision_paths(wildcards):
    """Decision files of an adaptive experiment up to the wave that stopped it. Each wave's
    checkpoint must have run before the plan decides whether another wave is needed."""
    paths, decisions = [], []
    while (wave := plan.next_wave(config, wildcards.experiment, decisions)) is not None:
        path = checkpoints.assess_wave.get(
            dataset=wildcards.dataset, experiment=wildcards.experiment, wave=wave
        ).output.decision
        paths.append(path)
        decisions.append(plan.wave_decision(path))
    return paths


def all_shard_metrics(wildcards):
    """Metrics of every shard; of an adaptive experiment, of the waves trained."""
    if plan.adaptive(config, wildcards.experiment) is None:
        return plan.shard_metrics(config, wildcards.dataset, wildcards.experiment)
    waves = len(wave_decision_paths(wildcards))
    return plan.wave_metrics(config, wildcards.dataset, wildcards.experiment, waves)


def all_shard_queries(wildcards):
    """Query outputs of every shard; of an adaptive experiment, of the waves trained."""
    if plan.adaptive(config, wildcards.experiment) is None:
        return plan.shard_queries(config, wildcards.dataset, wildcards.experiment)
    waves = len(wave_decision_paths(wildcards))
    return plan.wave_queries(config, wildcards.dataset, wildcards.experiment, waves - 1)


def all_shard_rows(wildcards):
    """Each shard's store of its cube rows (beside its query summary), of the shards queried."""
    return [str(assemble.rows_path(q)) for q in all_shard_queries(wildcards)]


def adaptive_decision(wildcards):
    """{"decision": the final wave decision} of an adaptive experiment (its model count), else {}."""
    if plan.adaptive(config, wildcards.experiment) is None:
        return {}
    return {"decision": wave_decision_paths(wildcards)[-1]}


# --- the candidates tied with the chosen one: select_model is a checkpoint, its chosen.json names them


def tied_candidate_files(wildcards):
    """{"candidates": patient_thresholds.tsv, "candidate_metrics": metrics.tsv} of every candidate
    tied with the chosen one but the chosen one (whose are the experiment's own audit), known once
    select_model has run; empty lists when the experiment has no selection or its tied
    candidates are not audited (selection.audit_tied)."""
    names = []
    if plan.audit_tied(config, wildcards.dataset, wildcards.experiment):
        chosen = checkpoints.select_model.get(dataset=wildcards.dataset, experiment=wildcards.experiment).output.chosen
        names = plan.tied_others(chosen)
    args = (config, wildcards.dataset, wildcards.experiment, names)
    return {
        "candidates": plan.candidate_files(*args, "patient_thresholds.tsv"),
        "candidate_metrics": plan.candidate_files(*args, "metrics.tsv"),
    }


# --- figures: every figure of the registry (mia_audit/plots/registry.py) in the report


def experiment_figure_outputs(attributes):
    """The outputs of plot_experiment: {figure}_png (in the report with the figure's caption)
    and {figure}_pdf for every figure of an experiment with these subgroup attributes."""
    out = {}
    for name, caption in plan.experiment_figure_captions(attributes).items():
        path = f"{RESULTS}/figures/{{dataset}}/{{experiment}}/{name}"
        out[f"{name}_png"] = report(
            f"{path}.png", caption=f"../report/{caption}", category="{dataset}", subcategory="{experiment}"
        )
        out[f"{name}_pdf"] = f"{path}.pdf"
    return out
