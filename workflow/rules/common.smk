# Thin wrappers of the workflow's plan (workflow/mia_audit/plan.py) for Snakemake's
# wildcards: input functions, params and resources of the rules. Anything with logic
# lives in the plan, where tests import it.

from snakemake.logging import logger

from mia_audit import plan, runlock
from mia_audit.runtime import config_errors_as_one_line

RESULTS = plan.results(config)
# every job's log, beside the results it describes (runs on other results folders keep theirs)
LOGS = f"{RESULTS}/logs"
# The jobs from the data to the target models' predictions (selection, cube, training,
# querying) form the longest path through a run; when several jobs are ready they go first,
# so that the audits, tables and figures of both experiments can overlap at the end.
CHAIN_PRIORITY = 10
# run, dry run, report …, or one of Snakemake's per-job processes (mia_audit/runlock.py)
INVOCATION = runlock.invocation(workflow)

# Before any job: the config checks the schema cannot express, the profile, the device the
# jobs will run on, and one run per results folder (a second run stops here, naming the first).
with config_errors_as_one_line():
    plan.check_config(config)
    plan.check_profile_placeholders(
        getattr(workflow.resource_settings, "default_resources", None),
        getattr(workflow.resource_settings, "overwrite_resources", None),
    )
    if INVOCATION.checks_devices:
        plan.check_device(config, INVOCATION.executor)
    runlock.claim(RESULTS, INVOCATION, logger.warning)


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


# --- data sets and experiments


def dataset_config(wildcards):
    return plan.dataset(config, wildcards.dataset)


def dataset_source(wildcards):
    return plan.dataset_source(config, wildcards.dataset)


def dataset_validation(wildcards):
    return plan.validation_report(config, wildcards.dataset)


def experiment_config(wildcards):
    return plan.experiment_for(config, wildcards.dataset, wildcards.experiment)


def selection_choice(wildcards):
    """{"choice": selection/chosen.json} of an experiment with a selection block, else {}."""
    paths = plan.selection_choice(config, wildcards.dataset, wildcards.experiment)
    return {"choice": paths[0]} if paths else {}


def dataset_baselines(wildcards):
    """{"baselines": {dataset}/baselines.tsv} of a table data set with baselines, else {}."""
    paths = plan.baselines_table(config, wildcards.dataset)
    return {"baselines": paths[0]} if paths else {}


def overfit_limits(wildcards):
    return config["audit"]["overfit"]


def models_per_job(wildcards):
    return plan.models_per_job(config, wildcards.experiment)


def shard_models(wildcards):
    return plan.shard_models(config, wildcards.experiment, wildcards.shard)


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


def query_views(wildcards):
    return plan.query_views(config, wildcards.experiment)


def access_cube_paths(wildcards):
    return plan.access_cubes(config, wildcards.dataset, wildcards.experiment)


def access_query_spec(wildcards):
    return plan.access_query_spec(config, wildcards.dataset, wildcards.experiment)


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


def adaptive_decision(wildcards):
    """{"decision": the final wave decision} of an adaptive experiment (its model count), else {}."""
    if plan.adaptive(config, wildcards.experiment) is None:
        return {}
    return {"decision": wave_decision_paths(wildcards)[-1]}


def adaptive_spec(wildcards):
    return plan.adaptive(config, wildcards.experiment)


def adaptive_estimator(wildcards):
    return "moderated" if config["audit"]["moderated_variance"] else "binormal"


def assessed_wave_queries(wildcards):
    return plan.wave_queries(config, wildcards.dataset, wildcards.experiment, int(wildcards.wave))


def previous_wave_decision(wildcards):
    wave = int(wildcards.wave)
    return plan.wave_decisions(config, wildcards.dataset, wildcards.experiment, wave)[wave - 1 :] if wave else []


def fixed_design_models(wildcards):
    return plan.n_models(config, wildcards.experiment)


# --- cluster resources of the shard and prepare jobs


def shard_mem_mb(wildcards, input, attempt):
    return plan.shard_mem_mb(config, wildcards.experiment, input.inputs, attempt)


def train_runtime(wildcards, input, attempt):
    return plan.train_runtime(config, wildcards.experiment, input.inputs, attempt)


def query_runtime(wildcards, input, attempt):
    return plan.query_runtime(config, wildcards.experiment, input.inputs, attempt)


def shard_cpus(wildcards):
    return plan.shard_cpus(config, wildcards.experiment)


def prepare_threads(wildcards):
    return plan.prepare_threads(config, wildcards.dataset)


def prepare_mem_mb(wildcards, input, attempt):
    return plan.prepare_mem_mb(config, wildcards.dataset, plan.source_mb(input.get("table")), attempt)


def prepare_runtime(wildcards, input, attempt):
    return plan.prepare_runtime(config, wildcards.dataset, plan.source_mb(input.get("table")), attempt)


def shard_gpus(wildcards):
    return plan.shard_gpus(config)


def shard_gpu_model(wildcards):
    return plan.shard_gpu_model(config)


# --- subgroups


def dataset_subgroups(wildcards):
    return plan.subgroups(config, wildcards.dataset)


def subgroup_attributes(wildcards):
    return list(plan.subgroups(config, wildcards.dataset))


def dataset_experiments(wildcards):
    return plan.experiments_of(config, wildcards.dataset)


def dataset_utilities(wildcards):
    return [f"{RESULTS}/{wildcards.dataset}/{n}/models/utility.tsv"
            for n in plan.experiments_of(config, wildcards.dataset)]


def dataset_patient_risks(wildcards):
    return [f"{RESULTS}/{wildcards.dataset}/{n}/audit/patient_risk.parquet"
            for n in plan.experiments_of(config, wildcards.dataset)]


# --- figures


def experiment_figure_outputs(attributes):
    """The outputs of plot_experiment, {figure}_png (in the report with the figure's caption)
    and {figure}_pdf for every figure of plan.experiment_figures."""
    out = {}
    for name in plan.figure_names(attributes):
        path = f"{RESULTS}/figures/{{dataset}}/{{experiment}}/{name}"
        caption = "subgroups" if name.startswith("subgroups_") else name
        out[f"{name}_png"] = report(
            f"{path}.png",
            caption=f"../report/{caption}.rst",
            category="{dataset}",
            subcategory="{experiment}",
        )
        out[f"{name}_pdf"] = f"{path}.pdf"
    return out


# --- differential privacy


def dp_esf_patients(wildcards):
    return plan.dp_paths(config, wildcards.dataset, "audit/patient_risk.parquet", wildcards.level)


def dp_esf_experiments(wildcards):
    return plan.dp_comparison(config, wildcards.dataset, wildcards.level)


def dp_utility_inputs(wildcards):
    return {
        "metrics": plan.dp_paths(config, wildcards.dataset, "models/metrics.tsv"),
        "records": plan.dp_paths(config, wildcards.dataset, "audit/record_risk.parquet"),
        "patients": plan.dp_paths(config, wildcards.dataset, "audit/patient_risk.parquet"),
    }


def dp_utility_experiments(wildcards):
    return plan.dp_comparison(config, wildcards.dataset)


# --- attacks on models not trained here


def external_spec(wildcards):
    return config["external_attacks"][wildcards.name]


def external_candidates(wildcards):
    return external_spec(wildcards)["candidates"]


def public_config(wildcards):
    return config["public_models"][wildcards.public]


def public_candidate_root(wildcards):
    return public_config(wildcards)["candidates"][wildcards.cands]["root"]


def public_candidate_files(wildcards):
    base = f"{RESULTS}/public/{wildcards.public}/candidates"
    names = list(public_config(wildcards)["candidates"])
    return {
        "tables": [f"{base}/{n}.parquet" for n in names],
        "images": [f"{base}/{n}.zarr" for n in names],
    }


def public_weight_files(wildcards):
    """The released checkpoints the query needs; an error naming each missing file and the
    config keys to set, before any job runs (unless allow_download lets the job fetch them)."""
    from mia_audit.public_models import audit_weight_files

    return audit_weight_files(public_config(wildcards), wildcards.public)
