# Helpers shared by the rules: config look-ups and the list of final targets.

import re
from pathlib import Path

RESULTS = config["results"]


wildcard_constraints:
    dataset="[A-Za-z0-9_-]+",
    experiment="[A-Za-z0-9_-]+",
    shard="[0-9]+",
    access_level="[A-Za-z0-9_-]+",


def _check_config():
    """Cross-key checks the JSON schema cannot express; fail at parse time, before any job."""
    for name, exp in config["experiments"].items():
        ds = exp["dataset"]
        if ds not in config["datasets"]:
            raise ValueError(
                f"config key experiments.{name}.dataset names {ds!r}, which is not a key of "
                f"datasets (known: {sorted(config['datasets'])})"
            )
        n_models = config["datasets"][ds]["n_models"]
        per_job = exp["models_per_job"]
        if n_models % per_job:
            raise ValueError(
                f"config key experiments.{name}.models_per_job = {per_job} must divide "
                f"datasets.{ds}.n_models = {n_models}"
            )
        if config["audit"]["n_targets"] > n_models - 2:
            raise ValueError(
                f"config key audit.n_targets = {config['audit']['n_targets']} leaves fewer than 2 "
                f"reference models of the {n_models} models of data set {ds!r}"
            )


_check_config()


def experiment_config(wildcards):
    exp = config["experiments"][wildcards.experiment]
    if exp["dataset"] != wildcards.dataset:
        raise ValueError(
            f"experiment {wildcards.experiment!r} runs on data set {exp['dataset']!r}, "
            f"not {wildcards.dataset!r}"
        )
    return exp


def dataset_config(wildcards):
    return config["datasets"][wildcards.dataset]


def dataset_table(wildcards):
    return dataset_config(wildcards)["path"]


def dataset_source(wildcards):
    """The table file (adapter table), nothing (synthetic_images) or the data directory (the others)."""
    spec = dataset_config(wildcards)
    if spec.get("adapter", "table") == "table":
        return dataset_table(wildcards)
    if spec["adapter"] == "synthetic_images":  # generated from the config: no input file
        return []
    return spec["root"]


def n_shards(experiment):
    exp = config["experiments"][experiment]
    return config["datasets"][exp["dataset"]]["n_models"] // exp["models_per_job"]


def shard_models(wildcards):
    """Global model indices [start, stop) of one shard."""
    per_job = config["experiments"][wildcards.experiment]["models_per_job"]
    start = int(wildcards.shard) * per_job
    return [start, start + per_job]


def exp_path(wildcards, name):
    return f"{RESULTS}/{wildcards.dataset}/{wildcards.experiment}/{name}"


def all_shard_weights(wildcards):
    return expand(
        "{results}/{dataset}/{experiment}/models/shard_{shard}.safetensors",
        results=RESULTS, dataset=wildcards.dataset, experiment=wildcards.experiment,
        shard=range(n_shards(wildcards.experiment)),
    )


def all_shard_metrics(wildcards):
    return [p.replace(".safetensors", "_metrics.tsv") for p in all_shard_weights(wildcards)]


def all_shard_queries(wildcards):
    return expand(
        "{results}/{dataset}/{experiment}/query/shard_{shard}.json",
        results=RESULTS, dataset=wildcards.dataset, experiment=wildcards.experiment,
        shard=range(n_shards(wildcards.experiment)),
    )


def experiment_targets(dataset, experiment):
    base = f"{RESULTS}/{dataset}/{experiment}"
    fig = f"{RESULTS}/figures/{dataset}/{experiment}"
    return [
        f"{base}/audit/record_risk.parquet",
        f"{base}/audit/patient_risk.parquet",
        f"{base}/audit/patient_thresholds.tsv",
        f"{base}/audit/aggregate_attacks.tsv",
        f"{base}/models/metrics.tsv",
        f"{fig}/risk_contrast.png",
        f"{fig}/risk_contrast.pdf",
        f"{fig}/attack_roc.png",
        f"{fig}/attack_roc.pdf",
        *subgroup_experiment_targets(dataset, experiment),
    ]


def dp_targets():
    """Per data set with DP experiments: dp_utility.tsv and dp_esf_{level} figures (dp.smk)."""
    out = []
    for ds in sorted({e["dataset"] for e in config["experiments"].values() if e.get("dp")}):
        levels = sorted({e["dp"].get("level", "record") for e in config["experiments"].values()
                         if e["dataset"] == ds and e.get("dp")})
        out.append(f"{RESULTS}/{ds}/dp_utility.tsv")
        out += [f"{RESULTS}/figures/{ds}/dp_esf_{lv}.{ext}" for lv in levels for ext in ("png", "pdf")]
    return out


def external_spec(wildcards):
    return config["external_attacks"][wildcards.name]


def external_candidates(wildcards):
    return external_spec(wildcards)["candidates"]


def all_targets():
    out = []
    for name in config.get("external_attacks", {}):
        out.append(f"{RESULTS}/external/{name}/summary.tsv")
    for name, exp in config["experiments"].items():
        out += experiment_targets(exp["dataset"], name)
        out += access_targets(exp["dataset"], name)
    out += subgroup_run_targets()
    return out + dp_targets() + public_model_targets()


# --- subgroups, meta-analysis and report figures (rules/subgroups.smk, rules/report.smk)

# file names under {dataset}/{experiment}/subgroups/ that are not attribute tables
_RESERVED_ATTRIBUTES = {"composition", "tests_unadjusted"}


def _check_subgroup_config():
    for ds, spec in config["datasets"].items():
        bad = _RESERVED_ATTRIBUTES & set(spec.get("subgroups", {}))
        if bad:
            raise ValueError(
                f"config key datasets.{ds}.subgroups names attribute(s) {sorted(bad)}, which are "
                f"reserved for other tables of the subgroup stage; rename them"
            )
        for attr in spec.get("subgroups", {}):
            if not re.fullmatch(r"[A-Za-z0-9_-]+", attr):
                raise ValueError(
                    f"config key datasets.{ds}.subgroups.{attr}: attribute names may hold only "
                    f"letters, digits, '_' and '-' (they become file names)"
                )


_check_subgroup_config()


def subgroup_attributes(wildcards):
    return list(dataset_config(wildcards).get("subgroups", {}))


def dataset_subgroups(wildcards):
    return dataset_config(wildcards).get("subgroups", {})


def subgroup_attribute_pattern():
    """Regex of every configured attribute name (keeps {attribute} off other file names)."""
    names = sorted({a for spec in config["datasets"].values() for a in spec.get("subgroups", {})})
    return "|".join(re.escape(a) for a in names) if names else "(?!)"


def all_unadjusted_subgroup_tests():
    return [
        f"{RESULTS}/{exp['dataset']}/{name}/subgroups/tests_unadjusted.tsv"
        for name, exp in config["experiments"].items()
    ]


def dataset_experiments(wildcards):
    return [n for n, e in config["experiments"].items() if e["dataset"] == wildcards.dataset]


def dataset_patient_risks(wildcards):
    return [
        f"{RESULTS}/{wildcards.dataset}/{n}/audit/patient_risk.parquet"
        for n in dataset_experiments(wildcards)
    ]


def subgroup_experiment_targets(dataset, experiment):
    base = f"{RESULTS}/{dataset}/{experiment}"
    fig = f"{RESULTS}/figures/{dataset}/{experiment}"
    out = [f"{base}/subgroups/composition.tsv"]
    for attr in config["datasets"][dataset].get("subgroups", {}):
        out += [f"{base}/subgroups/{attr}.tsv", f"{fig}/subgroups_{attr}.png", f"{fig}/subgroups_{attr}.pdf"]
    for name in ("record_auc", "se"):
        out += [f"{fig}/{name}.png", f"{fig}/{name}.pdf"]
    return out


def subgroup_run_targets():
    out = [
        f"{RESULTS}/meta/subgroup_tests.tsv",
        f"{RESULTS}/meta/meta_analysis.tsv",
        f"{RESULTS}/meta/meta_summary.tsv",
        f"{RESULTS}/figures/meta_analysis.png",
        f"{RESULTS}/figures/meta_analysis.pdf",
    ]
    for ds in sorted({e["dataset"] for e in config["experiments"].values()}):
        out += [f"{RESULTS}/figures/{ds}/esf_by_experiment.png", f"{RESULTS}/figures/{ds}/esf_by_experiment.pdf"]
    return out


# ---------------------------------------------------------------------------------------
# Cluster resources of the shard rules (train_models, query_models). Each helper derives
# one resource from the experiment's config and the `cluster` config section; Snakemake
# passes `attempt` (1, 2, …), so a retried job asks for more memory and time. Helpers that
# read the model inputs' shape raise FileNotFoundError before prepare_dataset has run,
# which Snakemake reports as "<TBD>" in a dry run and evaluates when the job is scheduled.
# ---------------------------------------------------------------------------------------

import functools
import json as _json
import math as _math
import os as _os
import re as _re
import shutil as _shutil
import subprocess as _subprocess

_PLACEHOLDER = _re.compile(r"^<[^<>]*>$")


def _check_profile_placeholders():
    """Fail before any job when a profile still holds a template value such as "<partition>"."""
    rs = workflow.resource_settings
    sources = [("default-resources", getattr(rs, "default_resources", None) or {})]
    for rule_name, res in (getattr(rs, "overwrite_resources", None) or {}).items():
        sources.append((f"set-resources of rule {rule_name}", res))
    for where, mapping in sources:
        items = mapping.items() if hasattr(mapping, "items") else []
        for key, value in items:
            raw = getattr(value, "raw", value)
            if isinstance(raw, str) and _PLACEHOLDER.match(raw.strip().strip("'\"")):
                raise ValueError(
                    f"profile value {key}={raw} in {where} is a template placeholder; edit the "
                    f"profile (e.g. profiles/slurm/config.yaml) to name your cluster's {key}, "
                    "or pass it on the command line: --default-resources "
                    "slurm_partition=NAME slurm_account=NAME (see docs/hpc.md)"
                )


_check_profile_placeholders()


@functools.lru_cache(maxsize=1)
def slurm_gpu_gres():
    """GRES strings of this SLURM cluster's nodes that offer GPUs ([] without SLURM or GPUs)."""
    if _shutil.which("sinfo") is None:
        return []
    try:
        res = _subprocess.run(["sinfo", "-h", "-o", "%G"], capture_output=True, text=True, timeout=15)
    except (OSError, _subprocess.TimeoutExpired):
        return []
    if res.returncode != 0:
        return []
    return sorted({g for g in res.stdout.split() if "gpu" in g})


def cluster_gpu_requested():
    """Whether the shard rules ask the scheduler for a GPU (config key cluster.gpu).

    true: always (a cluster without GPUs rejects the job at submission); false: never (the
    rules run on CPUs; device: auto then picks the CPU); auto: only when `sinfo` reports
    nodes with a GPU GRES, else the same rules run on CPUs.
    """
    setting = config["cluster"]["gpu"]
    if setting == "auto":
        return bool(slurm_gpu_gres())
    return bool(setting)


def _cluster_arch_cost(experiment):
    exp = config["experiments"][experiment]
    arch = exp["model"]["arch"]
    costs = config["cluster"]["seconds_per_model_epoch"]
    if arch not in costs:
        raise ValueError(
            f"config key cluster.seconds_per_model_epoch has no entry for architecture {arch!r} "
            f"of experiment {experiment!r} (known: {sorted(costs)})"
        )
    return float(costs[arch])


_INPUT_VARIABLES = ("features", "images", "signals")  # tables, images, signals
_ITEMSIZE = {"float32": 4, "float64": 8, "float16": 2, "uint8": 1, "int8": 1, "uint16": 2, "int16": 2,
             "int32": 4, "int64": 8, "bool": 1}


def model_inputs_array(inputs_path):
    """(shape, bytes) of the model inputs array (records, …), from the Zarr v3 metadata only."""
    for name in _INPUT_VARIABLES:
        meta_path = _os.path.join(str(inputs_path), name, "zarr.json")
        if _os.path.exists(meta_path):
            with open(meta_path) as fh:
                meta = _json.load(fh)
            shape = [int(n) for n in meta["shape"]]
            itemsize = _ITEMSIZE.get(str(meta.get("data_type")), 4)
            return shape, _math.prod(shape) * itemsize
    raise FileNotFoundError(2, f"model inputs not prepared yet (none of {_INPUT_VARIABLES})", str(inputs_path))


def model_inputs_shape(inputs_path):
    """Shape of the model inputs array (records, …)."""
    return model_inputs_array(inputs_path)[0]


def _retry_factor(attempt):
    return float(config["cluster"]["retry_growth"]) ** (int(attempt) - 1)


def shard_mem_mb(wildcards, input, attempt):
    """Memory (MB) of one train/query job:

    (mem_mb_base + mem_mb_per_model × models_per_job + input_mem_factor × inputs MB)
    × retry_growth^(attempt − 1), where inputs MB is the stored size of the model inputs
    (records × features/pixels/samples × bytes per value) / 10⁶.
    """
    c = config["cluster"]
    input_mb = model_inputs_array(input.inputs)[1] / 1e6
    per_job = config["experiments"][wildcards.experiment]["models_per_job"]
    mb = c["mem_mb_base"] + c["mem_mb_per_model"] * per_job + c["input_mem_factor"] * input_mb
    return int(_math.ceil(mb * _retry_factor(attempt)))


def _runtime_minutes(seconds, attempt):
    c = config["cluster"]
    seconds = (c["startup_seconds"] + seconds) * _retry_factor(attempt)
    return max(int(c["runtime_min_minutes"]), int(_math.ceil(seconds / 60)))


def train_runtime(wildcards, input, attempt):
    """Wall time (minutes) of one train job:

    startup_seconds + models_per_job × epochs × seconds_per_model_epoch[arch] × records / 1000,
    times retry_growth^(attempt − 1), at least runtime_min_minutes.
    """
    exp = config["experiments"][wildcards.experiment]
    records = model_inputs_shape(input.inputs)[0]
    epochs = exp.get("train", {}).get("epochs", 100)
    seconds = exp["models_per_job"] * epochs * _cluster_arch_cost(wildcards.experiment) * records / 1000
    return _runtime_minutes(seconds, attempt)


def query_runtime(wildcards, input, attempt):
    """Wall time (minutes) of one query job: as train_runtime with one epoch's cost."""
    exp = config["experiments"][wildcards.experiment]
    records = model_inputs_shape(input.inputs)[0]
    seconds = exp["models_per_job"] * _cluster_arch_cost(wildcards.experiment) * records / 1000
    return _runtime_minutes(seconds, attempt)


def shard_gpus(wildcards):
    """GPUs per train/query job: cluster.gpus_per_job when a GPU is requested, else 0."""
    return int(config["cluster"]["gpus_per_job"]) if cluster_gpu_requested() else 0


def shard_gpu_model(wildcards):
    """GPU type for --gpus=TYPE:N (cluster.gpu_model); empty = any type."""
    model = config["cluster"]["gpu_model"]
    return str(model) if model and cluster_gpu_requested() else ""


def shard_cpus(wildcards):
    """CPUs per train/query job (cluster.cpus_per_job)."""
    return int(config["cluster"]["cpus_per_job"])


# End of the cluster resources.


# --- audits of public pretrained models (rules/public_models.smk)


def public_model_targets():
    """Outputs of every audit under config key public_models (none when the key is absent)."""
    out = []
    for name in config.get("public_models") or {}:
        out += [
            f"{RESULTS}/public/{name}/scores.parquet",
            f"{RESULTS}/public/{name}/patient_scores.parquet",
            f"{RESULTS}/public/{name}/summary.tsv",
            f"{RESULTS}/figures/public/{name}/roc.png",
            f"{RESULTS}/figures/public/{name}/roc.pdf",
        ]
    return out


def public_config(wildcards):
    return config["public_models"][wildcards.public]


def public_candidate_spec(wildcards):
    return public_config(wildcards)["candidates"][wildcards.cands]


def public_candidate_root(wildcards):
    return public_candidate_spec(wildcards)["root"]


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
    import sys

    sys.path.insert(0, str(Path(workflow.basedir) / "workflow"))
    from mia_audit.public_models import audit_weight_files

    return audit_weight_files(public_config(wildcards), wildcards.public)


# --- differential privacy comparisons (rules/dp.smk) ---

wildcard_constraints:
    level="record|patient",


def _check_dp_config():
    """DP-compatible models, checked at parse time (ε and δ ranges are in the schema)."""
    for name, exp in config["experiments"].items():
        if not exp.get("dp"):
            continue
        model = exp["model"]
        if model["arch"] != "mlp" and model.get("norm") != "group":
            raise ValueError(
                f"config key experiments.{name}.model.norm must be 'group' for DP training of "
                f"model.arch {model['arch']!r} (BatchNorm mixes the records of a batch and is not "
                f"DP-compatible), got {model.get('norm')!r}"
            )


_check_dp_config()


def dp_comparison(dataset, level=None):
    """Experiments of one DP comparison, in plotting order: non-DP baselines, then ε = ∞, then
    decreasing ε. DP experiments at ``level`` (all levels if None); baselines = the data set's
    non-DP experiments with the same model block as one of its DP experiments."""
    exps = {n: e for n, e in config["experiments"].items() if e["dataset"] == dataset}
    dp_exps = {n: e for n, e in exps.items() if e.get("dp")}
    models = [e["model"] for e in dp_exps.values()]
    out = [{"experiment": n, "level": "none", "epsilon": None}
           for n, e in exps.items() if not e.get("dp") and e["model"] in models]
    for n, e in dp_exps.items():
        lv = e["dp"].get("level", "record")
        if level is None or lv == level:
            out.append({"experiment": n, "level": lv, "epsilon": e["dp"]["epsilon"]})
    inf_first = lambda d: (d["epsilon"] is not None, -float(d["epsilon"]) if d["epsilon"] is not None else 0.0)
    return sorted(out, key=inf_first)


def _dp_paths(wildcards, name, level=None):
    return [f"{RESULTS}/{wildcards.dataset}/{d['experiment']}/{name}"
            for d in dp_comparison(wildcards.dataset, level)]


def dp_esf_patients(wildcards):
    return _dp_paths(wildcards, "audit/patient_risk.parquet", wildcards.level)


def dp_esf_experiments(wildcards):
    return dp_comparison(wildcards.dataset, wildcards.level)


def dp_utility_inputs(wildcards):
    return {
        "metrics": _dp_paths(wildcards, "models/metrics.tsv"),
        "records": _dp_paths(wildcards, "audit/record_risk.parquet"),
        "patients": _dp_paths(wildcards, "audit/patient_risk.parquet"),
    }


def dp_utility_experiments(wildcards):
    return dp_comparison(wildcards.dataset)


# ---- query views and partial-access levels (rules in query.smk and access.smk) ----------


def query_views(wildcards):
    """The experiment's query views (config query.views; default [original])."""
    return list(config["experiments"][wildcards.experiment].get("query", {}).get("views", ["original"]))


def access_level_names(dataset):
    """The data set's partial-access levels other than full (config access_levels)."""
    return list((config["datasets"][dataset].get("access_levels") or {}))


def access_cube(dataset, experiment, level):
    return f"{RESULTS}/{dataset}/{experiment}/access/{level}/cube.zarr"


def access_cube_paths(wildcards):
    return [access_cube(wildcards.dataset, wildcards.experiment, lv) for lv in access_level_names(wildcards.dataset)]


def access_query_spec(wildcards):
    """{level: (level spec, cube path)} for the query job."""
    levels = config["datasets"][wildcards.dataset].get("access_levels") or {}
    return {lv: (dict(spec), access_cube(wildcards.dataset, wildcards.experiment, lv)) for lv, spec in levels.items()}


def access_targets(dataset, experiment):
    base = f"{RESULTS}/{dataset}/{experiment}/audit"
    return [f"{base}/access_{lv}/{name}" for lv in access_level_names(dataset)
            for name in ("record_risk.parquet", "patient_risk.parquet")]
