# Helpers shared by the rules: config look-ups and the list of final targets.

RESULTS = config["results"]


wildcard_constraints:
    dataset="[A-Za-z0-9_-]+",
    experiment="[A-Za-z0-9_-]+",
    shard="[0-9]+",


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
    ]


def all_targets():
    out = []
    for name, exp in config["experiments"].items():
        out += experiment_targets(exp["dataset"], name)
    return out
