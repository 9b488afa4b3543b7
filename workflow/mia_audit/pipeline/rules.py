"""What the rules ask of the plan: input functions, params and resources with Snakemake's
signatures (``wildcards``, and ``input``/``attempt`` for resources).

``workflow/rules/common.smk`` makes one :class:`RuleFunctions` from the validated config and the
rules name its methods (``input: R.dataset_source``), so the rule files hold no logic and every
function here is tested by import (``tests/pipeline/test_rules.py``). Only what needs Snakemake's
own objects (checkpoints, ``report()``) stays in common.smk.
"""

from __future__ import annotations

from collections.abc import Mapping

from mia_audit.errors import ConfigError
from mia_audit.pipeline import plan, resources

#: the keys of config block ``audit`` each rule's script reads (its ``audit`` param): a rule
#: reruns when one of its own keys changes, not when another rule's does
AUDIT_KEYS = {
    "audit_records": (
        "block_records",
        "thresholds",
        "compat",
        "patient_bootstrap",
        "headline_bootstrap",
        "attack_folds",
        "attack_permutations",
        "binormal_check_alpha",
        "seed",
        "dp_alpha",
        "dp_fprs",
        "moderated_variance",
    ),
    "audit_access_records": (
        "block_records",
        "compat",
        "patient_bootstrap",
        "attack_folds",
        "attack_permutations",
        "binormal_check_alpha",
        "seed",
    ),
    "audit_candidate": (
        "block_records",
        "thresholds",
        "compat",
        "patient_bootstrap",
        "headline_bootstrap",
        "attack_folds",
        "attack_permutations",
        "binormal_check_alpha",
        "seed",
    ),
    "attack_aggregate": ("n_targets", "seed", "rmia_population", "attacks"),
    "analyse_convergence": (
        "convergence",
        "thresholds",
        "block_records",
        "n_targets",
        "seed",
        "rmia_population",
        "attacks",
    ),
    "assess_wave": ("block_records", "moderated_variance"),
    "tabulate_dp_empirical": ("dp_alpha", "seed"),
    "collect_model_metrics": ("overfit", "utility_bootstrap", "seed"),
}


class RuleFunctions:
    """Input functions, params and resources of the workflow's rules for one configuration."""

    def __init__(self, config: Mapping):
        self.config = config

    def audit_params(self, rule: str) -> dict:
        """The keys of config block ``audit`` that ``rule``'s script reads (:data:`AUDIT_KEYS`)."""
        return {key: self.config["audit"][key] for key in AUDIT_KEYS[rule]}

    # --- data sets and experiments

    def dataset_config(self, wildcards) -> dict:
        return plan.dataset(self.config, wildcards.dataset)

    def dataset_source(self, wildcards):
        return plan.dataset_source(self.config, wildcards.dataset)

    def dataset_validation(self, wildcards) -> str:
        return plan.validation_report(self.config, wildcards.dataset)

    def experiment_config(self, wildcards) -> dict:
        return plan.experiment_for(self.config, wildcards.dataset, wildcards.experiment)

    def experiment_settings(self, wildcards) -> dict:
        plan.experiment_for(self.config, wildcards.dataset, wildcards.experiment)  # the two wildcards agree
        return plan.experiment_settings(self.config, wildcards.experiment)

    def settings_digest(self, wildcards) -> str:
        return plan.settings_digest(self.config, wildcards.experiment)

    def selection_choice(self, wildcards) -> dict:
        """``{"choice": selection/chosen.json}`` of an experiment with a selection block, else {}."""
        paths = plan.selection_choice(self.config, wildcards.dataset, wildcards.experiment)
        return {"choice": paths[0]} if paths else {}

    def selection_table(self, wildcards) -> dict:
        """``{"selection": selection/selection.tsv}`` of an experiment with a selection block, else {}."""
        if plan.selection(self.config, wildcards.experiment) is None:
            return {}
        return {
            "selection": f"{plan.selection_dir(self.config, wildcards.dataset, wildcards.experiment)}/selection.tsv"
        }

    def candidate_experiment(self, wildcards) -> dict:
        """The experiment's block with the settings of candidate ``wildcards.candidate`` (model selection)."""
        from mia_audit.train.selection import apply_choice, candidates

        exp = plan.experiment_for(self.config, wildcards.dataset, wildcards.experiment)
        cands = candidates(exp)
        if wildcards.candidate not in cands:
            raise ConfigError(
                f"experiments.{wildcards.experiment}.selection.candidates has no candidate {wildcards.candidate!r} "
                f"(known: {list(cands)})"
            )
        return apply_choice(exp, {"candidate": wildcards.candidate, **cands[wildcards.candidate]})

    def dataset_baselines(self, wildcards) -> dict:
        """``{"baselines": {dataset}/baselines.tsv, "predictions": {dataset}/baselines_predictions.parquet}``
        of a table data set with baselines, else {}."""
        paths = plan.baselines_table(self.config, wildcards.dataset)
        return {"baselines": paths[0], "predictions": plan.baselines_predictions(paths[0])} if paths else {}

    def shard_models(self, wildcards) -> list[int]:
        return plan.shard_models(self.config, wildcards.experiment, wildcards.shard)

    def query_views(self, wildcards) -> list[str]:
        return plan.query_views(self.config, wildcards.experiment)

    def access_skeleton_paths(self, wildcards) -> list[str]:
        return plan.access_cubes(self.config, wildcards.dataset, wildcards.experiment, skeleton=True)

    def access_query_spec(self, wildcards) -> dict:
        return plan.access_query_spec(self.config, wildcards.dataset, wildcards.experiment)

    # --- adaptive audits (the wave loop itself needs Snakemake's checkpoints: common.smk)

    def adaptive_spec(self, wildcards) -> dict | None:
        return plan.adaptive(self.config, wildcards.experiment)

    def assessed_wave_queries(self, wildcards) -> list[str]:
        return plan.wave_queries(self.config, wildcards.dataset, wildcards.experiment, int(wildcards.wave))

    def assessed_wave_rows(self, wildcards) -> list[str]:
        from mia_audit.query.assemble import rows_path

        return [str(rows_path(q)) for q in self.assessed_wave_queries(wildcards)]

    def previous_wave_decision(self, wildcards) -> list[str]:
        wave = int(wildcards.wave)
        return (
            plan.wave_decisions(self.config, wildcards.dataset, wildcards.experiment, wave)[wave - 1 :] if wave else []
        )

    def fixed_design_models(self, wildcards) -> int:
        return plan.n_models(self.config, wildcards.experiment)

    def train_environments(self, wildcards) -> list[str]:
        """The software record of the first shard of every experiment (describe_run)."""
        return [
            f"{plan.results(self.config)}/{plan.experiment_dataset(self.config, e)}/{e}/models/shard_0_environment.json"
            for e in self.config["experiments"]
        ]

    # --- cluster resources of the shard and prepare jobs

    def shard_mem_mb(self, wildcards, input, attempt) -> int:
        return resources.shard_mem_mb(self.config, wildcards.experiment, input.inputs, attempt)

    def train_runtime(self, wildcards, input, attempt) -> int:
        return resources.train_runtime(self.config, wildcards.experiment, input.inputs, attempt)

    def query_runtime(self, wildcards, input, attempt) -> int:
        return resources.query_runtime(self.config, wildcards.experiment, input.inputs, attempt)

    def candidate_runtime(self, wildcards, input, attempt) -> int:
        """A tied candidate's audit (rule audit_candidate): training, query and audit in one job."""
        return (
            self.train_runtime(wildcards, input, attempt)
            + self.query_runtime(wildcards, input, attempt)
            + self.light_runtime(wildcards, attempt)
        )

    def shard_cpus(self, wildcards) -> int:
        return resources.shard_cpus(self.config, wildcards.experiment)

    def select_cpus(self, wildcards) -> int:
        return resources.select_cpus(self.config, wildcards.experiment)

    def query_cpus(self, wildcards) -> int:
        return resources.query_cpus(self.config, wildcards.experiment)

    def shard_gpus(self, wildcards) -> int:
        return resources.shard_gpus(self.config)

    def shard_gpu_model(self, wildcards) -> str:
        return resources.shard_gpu_model(self.config)

    # --- cluster resources of the light jobs of the setup and audit groups (one at a time in a
    # group job: each asks for what it alone needs, never a site profile's default)

    def light_data_mb(self, wildcards) -> float:
        """MB of the data a light job holds: the experiment's confidences (models × records ×
        views × 4 bytes), or for a data set's job its membership-sized matrix (models × records)."""
        ds = wildcards.dataset
        records = resources.dataset_records(self.config, ds, f"{plan.results(self.config)}/{ds}/inputs.zarr")
        experiment = getattr(wildcards, "experiment", None)
        if experiment:
            return resources.cube_mb(self.config, experiment, records)
        return records * int(plan.dataset(self.config, ds)["n_models"]) * 4 / 1e6

    def light_mem_mb(self, wildcards, attempt) -> int:
        return resources.light_mem_mb(self.config, self.light_data_mb(wildcards), attempt)

    def light_runtime(self, wildcards, attempt) -> int:
        return resources.light_runtime(self.config, self.light_data_mb(wildcards), attempt)

    def prepare_threads(self, wildcards) -> int:
        return resources.prepare_threads(self.config, wildcards.dataset)

    def prepare_mem_mb(self, wildcards, input, attempt) -> int:
        table_mb = resources.source_mb(input.get("table"))
        return resources.prepare_mem_mb(self.config, wildcards.dataset, table_mb, attempt)

    def prepare_runtime(self, wildcards, input, attempt) -> int:
        table_mb = resources.source_mb(input.get("table"))
        return resources.prepare_runtime(self.config, wildcards.dataset, table_mb, attempt)

    # --- subgroups and per-data-set figures

    def dataset_subgroups(self, wildcards) -> dict:
        return plan.subgroups(self.config, wildcards.dataset)

    def subgroup_attributes(self, wildcards) -> list[str]:
        return list(plan.subgroups(self.config, wildcards.dataset))

    def dataset_experiments(self, wildcards) -> list[str]:
        return plan.experiments_of(self.config, wildcards.dataset)

    def dataset_utilities(self, wildcards) -> list[str]:
        return plan.experiment_paths(self.config, wildcards.dataset, "models/utility.tsv")

    def dataset_patient_risks(self, wildcards) -> list[str]:
        return plan.experiment_paths(self.config, wildcards.dataset, "audit/patient_risk.parquet")

    # --- differential privacy

    def dp_esf_patients(self, wildcards) -> list[str]:
        return plan.dp_paths(self.config, wildcards.dataset, "audit/patient_risk.parquet", wildcards.level)

    def dp_esf_metrics(self, wildcards) -> list[str]:
        return plan.dp_paths(self.config, wildcards.dataset, "models/metrics.tsv", wildcards.level)

    def dp_esf_experiments(self, wildcards) -> list[dict]:
        return plan.dp_comparison(self.config, wildcards.dataset, wildcards.level)

    def dp_utility_inputs(self, wildcards) -> dict:
        choices = [
            path
            for d in plan.dp_comparison(self.config, wildcards.dataset)
            for path in plan.selection_choice(self.config, wildcards.dataset, d["experiment"])
        ]
        return {
            "metrics": plan.dp_paths(self.config, wildcards.dataset, "models/metrics.tsv"),
            "records": plan.dp_paths(self.config, wildcards.dataset, "audit/record_risk.parquet"),
            "patients": plan.dp_paths(self.config, wildcards.dataset, "audit/patient_risk.parquet"),
            "choices": choices,
        }

    def dp_utility_experiments(self, wildcards) -> list[dict]:
        """The comparison's experiments, each with ``choice``: its selection/chosen.json or None."""
        return [
            {**d, "choice": (plan.selection_choice(self.config, wildcards.dataset, d["experiment"]) or [None])[0]}
            for d in plan.dp_comparison(self.config, wildcards.dataset)
        ]

    def dp_empirical_inputs(self, wildcards) -> dict:
        exps = plan.dp_canary_experiments(self.config, wildcards.dataset)
        return {
            "weights": [w for d in exps for w in plan.shard_weights(self.config, wildcards.dataset, d["experiment"])],
            "metrics": [
                f"{plan.exp_dir(self.config, wildcards.dataset, d['experiment'])}/models/metrics.tsv" for d in exps
            ],
        }

    def dp_empirical_experiments(self, wildcards) -> list[dict]:
        return plan.dp_canary_experiments(self.config, wildcards.dataset)

    # --- attacks on models not trained here

    def external_spec(self, wildcards) -> dict:
        return self.config["external_attacks"][wildcards.name]

    def external_candidates(self, wildcards):
        return self.external_spec(wildcards)["candidates"]

    def public_config(self, wildcards) -> dict:
        return self.config["public_models"][wildcards.public]

    def public_candidate_root(self, wildcards) -> str:
        return self.public_config(wildcards)["candidates"][wildcards.cands]["root"]

    def public_candidate_files(self, wildcards) -> dict:
        base = f"{plan.results(self.config)}/public/{wildcards.public}/candidates"
        names = list(self.public_config(wildcards)["candidates"])
        return {
            "tables": [f"{base}/{n}.parquet" for n in names],
            "images": [f"{base}/{n}.zarr" for n in names],
        }

    def public_weight_files(self, wildcards) -> list[str]:
        """The released checkpoints the query needs; an error naming each missing file and the
        config keys to set, before any job runs (unless allow_download lets the job fetch them)."""
        from mia_audit.external.public_models import audit_weight_files

        return audit_weight_files(self.public_config(wildcards), wildcards.public)
