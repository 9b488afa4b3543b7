"""Cluster resources of every job that can be submitted (shards, preparation, and the light
jobs of the setup and audit groups): memory, runtime, CPUs and GPUs, from the config and the
size of the data (docs/hpc.md).

A group job runs its jobs one after another (the SLURM job step runs them with ``--jobs 1``); the
site profile tells Snakemake so (the resource ``group_slot``, one per group job), and Snakemake
then asks for a group's summed runtime and its members' largest CPUs, memory and GPUs. So each
job's figures here are what that one job needs, with no share of anything else.
"""

from __future__ import annotations

import functools
import math
import shutil
import subprocess
from collections.abc import Mapping

from mia_audit.data.adapters.base import ADAPTERS
from mia_audit.data.layout import model_inputs_array
from mia_audit.errors import ConfigError
from mia_audit.pipeline.plan import (
    dataset,
    dataset_adapter,
    dataset_modality,
    experiment,
    experiment_dataset,
    models_per_job,
    n_models,
)


@functools.lru_cache(maxsize=1)
def slurm_gpu_gres() -> tuple[str, ...]:
    """GRES strings of this SLURM cluster's nodes that offer GPUs (empty without SLURM or GPUs)."""
    if shutil.which("sinfo") is None:
        return ()
    try:
        res = subprocess.run(["sinfo", "-h", "-o", "%G"], capture_output=True, text=True, timeout=15)
    except (OSError, subprocess.TimeoutExpired):
        return ()
    if res.returncode != 0:
        return ()
    return tuple(sorted({g for g in res.stdout.split() if "gpu" in g}))


def cluster_gpu_requested(config: Mapping, gpu_gres=slurm_gpu_gres) -> bool:
    """Whether the shard jobs ask the scheduler for a GPU (config key ``cluster.gpu``).

    true: always (a cluster without GPUs rejects the job at submission); false: never (the
    jobs run on CPUs; ``device: auto`` then picks the CPU); auto: only when ``gpu_gres()``
    (by default ``sinfo``) reports nodes with a GPU GRES.
    """
    setting = config["cluster"]["gpu"]
    if setting == "auto":
        return bool(gpu_gres())
    return bool(setting)


def dataset_records(config: Mapping, dataset_name: str, inputs_path=None) -> int:
    """Records of a data set: from its prepared model inputs when they exist, else the estimate
    prepare_dataset is sized by (:func:`prepare_records`). A job of the setup group is sized
    before the group's prepare job has run, so its resources must not need the prepared data."""
    if inputs_path is not None:
        try:
            return int(model_inputs_array(inputs_path)[0][0])
        except FileNotFoundError:
            pass
    from mia_audit.pipeline.plan import dataset_source

    source = dataset_source(config, dataset_name)
    return prepare_records(config, dataset_name, source_mb(source if isinstance(source, str) else None))


def cube_mb(config: Mapping, experiment_name: str, records: int) -> float:
    """MB of an experiment's confidences: models × records × query views × 4 bytes."""
    from mia_audit.pipeline.plan import query_views

    return n_models(config, experiment_name) * records * len(query_views(config, experiment_name)) * 4 / 1e6


def light_mem_mb(config: Mapping, data_mb: float, attempt: int) -> int:
    """Memory (MB) of a light grouped job (membership, cube, baselines, audits):
    (light_mem_mb + light_mem_per_data_mb × data MB) × retry_growth^(attempt − 1)."""
    c = config["cluster"]
    return int(math.ceil((c["light_mem_mb"] + c["light_mem_per_data_mb"] * data_mb) * retry_factor(config, attempt)))


def light_runtime(config: Mapping, data_mb: float, attempt: int) -> int:
    """Wall time (whole minutes, at least 1) of a light grouped job:
    (light_seconds + light_seconds_per_data_mb × data MB) / 60 × retry_growth^(attempt − 1)."""
    c = config["cluster"]
    minutes = (c["light_seconds"] + c["light_seconds_per_data_mb"] * data_mb) / 60
    return max(1, int(math.ceil(round(minutes * retry_factor(config, attempt), 9))))


def arch_cost(config: Mapping, experiment_name: str) -> float:
    """Seconds per model, epoch and 1,000 records of the experiment's architecture."""
    arch = experiment(config, experiment_name)["model"]["arch"]
    costs = config["cluster"]["seconds_per_model_epoch"]
    if arch not in costs:
        raise ConfigError(
            f"config key cluster.seconds_per_model_epoch has no entry for architecture {arch!r} "
            f"of experiment {experiment_name!r} (known: {sorted(costs)})"
        )
    return float(costs[arch])


def model_mem_mb(config: Mapping, experiment_name: str) -> float:
    """MB per model of the experiment's architecture (``cluster.mem_mb_per_model``)."""
    arch = experiment(config, experiment_name)["model"]["arch"]
    per_model = config["cluster"]["mem_mb_per_model"]
    if arch not in per_model:
        raise ConfigError(
            f"config key cluster.mem_mb_per_model has no entry for architecture {arch!r} "
            f"of experiment {experiment_name!r} (known: {sorted(per_model)})"
        )
    return float(per_model[arch])


def retry_factor(config: Mapping, attempt: int) -> float:
    """``cluster.retry_growth`` ^ (attempt − 1)."""
    return float(config["cluster"]["retry_growth"]) ** (int(attempt) - 1)


def shard_mem_mb(config: Mapping, experiment_name: str, inputs_path, attempt: int) -> int:
    """Memory (MB) of one train/query job:

    (mem_mb_base + mem_mb_per_model[arch] × models_per_job + input_mem_factor × inputs MB)
    × retry_growth^(attempt − 1), where inputs MB is the stored size of the model inputs
    (records × features/pixels/samples × bytes per value) / 10⁶.
    """
    c = config["cluster"]
    input_mb = inputs_mb(config, experiment_name, inputs_path)
    mb = (
        c["mem_mb_base"]
        + model_mem_mb(config, experiment_name) * models_per_job(config, experiment_name)
        + c["input_mem_factor"] * input_mb
    )
    return int(math.ceil(mb * retry_factor(config, attempt)))


def runtime_minutes(config: Mapping, seconds: float, attempt: int) -> int:
    """max(runtime_min_minutes, (startup_seconds + seconds) / 60) × retry_growth^(attempt − 1),
    in whole minutes: a retried job gets more time even when its first request was the minimum."""
    c = config["cluster"]
    minutes = max(float(c["runtime_min_minutes"]), (c["startup_seconds"] + seconds) / 60)
    return int(math.ceil(round(minutes * retry_factor(config, attempt), 9)))


def estimator_family(config: Mapping, experiment_name: str) -> bool:
    """Whether the experiment's models are fitted by their own library (no epochs; fitted in
    parallel on the job's CPUs; :mod:`mia_audit.train.families`)."""
    from mia_audit.train.families import is_estimator

    return is_estimator(experiment(config, experiment_name)["model"])


def train_seconds(config: Mapping, experiment_name: str, records: int, epochs: int | None = None) -> float:
    """models_per_job × epochs × seconds_per_model_epoch[arch] × records / 1000; for an estimator
    family models_per_job × seconds_per_model_epoch[arch] × records / 1000 / the job's CPUs."""
    if estimator_family(config, experiment_name):
        cpus = shard_cpus(config, experiment_name)
        return models_per_job(config, experiment_name) * arch_cost(config, experiment_name) * records / 1000 / cpus
    if epochs is None:
        epochs = experiment(config, experiment_name)["train"]["epochs"]
    return models_per_job(config, experiment_name) * epochs * arch_cost(config, experiment_name) * records / 1000


def inputs_mb(config: Mapping, experiment_name: str, inputs_path) -> float:
    """Stored MB of the model inputs: from their metadata once prepared, else records (estimated)
    × :func:`record_bytes` (for tables: × the features × 4 bytes)."""
    try:
        return model_inputs_array(inputs_path)[1] / 1e6
    except FileNotFoundError:
        ds = experiment_dataset(config, experiment_name)
        per_record = record_bytes(config, ds) or 4 * len(dataset(config, ds).get("features") or [])
        return dataset_records(config, ds) * per_record / 1e6


def train_runtime(config: Mapping, experiment_name: str, inputs_path, attempt: int) -> int:
    """Wall time (minutes) of one train job: :func:`train_seconds` through :func:`runtime_minutes`."""
    records = dataset_records(config, experiment_dataset(config, experiment_name), inputs_path)
    return runtime_minutes(config, train_seconds(config, experiment_name, records), attempt)


def query_runtime(config: Mapping, experiment_name: str, inputs_path, attempt: int) -> int:
    """Wall time (minutes) of one query job: as :func:`train_runtime` with one epoch's cost."""
    records = dataset_records(config, experiment_dataset(config, experiment_name), inputs_path)
    return runtime_minutes(config, train_seconds(config, experiment_name, records, epochs=1), attempt)


def shard_gpus(config: Mapping, gpu_gres=slurm_gpu_gres) -> int:
    """GPUs per train/query job: cluster.gpus_per_job when a GPU is requested, else 0."""
    return int(config["cluster"]["gpus_per_job"]) if cluster_gpu_requested(config, gpu_gres) else 0


def shard_gpu_model(config: Mapping, gpu_gres=slurm_gpu_gres) -> str:
    """GPU type for --gpus=TYPE:N (cluster.gpu_model); empty = any type."""
    model = config["cluster"]["gpu_model"]
    return str(model) if model and cluster_gpu_requested(config, gpu_gres) else ""


def shard_cpus(config: Mapping, experiment_name: str | None = None) -> int:
    """CPUs per train/select job: cluster.cpus_per_job, or cluster.table_cpus_per_job for a
    network family on a table data set (an estimator family fits its models in parallel, one
    per CPU: cluster.cpus_per_job)."""
    if (
        experiment_name is not None
        and dataset_modality(config, experiment_dataset(config, experiment_name)) == "table"
        and not estimator_family(config, experiment_name)
    ):
        return int(config["cluster"]["table_cpus_per_job"])
    return int(config["cluster"]["cpus_per_job"])


def select_cpus(config: Mapping, experiment_name: str) -> int:
    """CPUs of the select job: as :func:`shard_cpus`, and cluster.cpus_per_job when any candidate
    is of an estimator family (fitted in parallel)."""
    from mia_audit.train.families import is_estimator
    from mia_audit.train.selection import candidates

    cands = candidates(experiment(config, experiment_name)).values()
    if any(is_estimator(c["model"]) for c in cands):
        return int(config["cluster"]["cpus_per_job"])
    return shard_cpus(config, experiment_name)


def query_cpus(config: Mapping, experiment_name: str) -> int:
    """CPUs per query job: as :func:`shard_cpus`, but cluster.table_cpus_per_job for an estimator
    family (its train job computed the logits; the query job turns them into φ)."""
    if estimator_family(config, experiment_name):
        return int(config["cluster"]["table_cpus_per_job"])
    return shard_cpus(config, experiment_name)


#: table records per MB of the table file (≈ 100 bytes per CSV row), for tables without a count
TABLE_RECORDS_PER_MB = 10_000

#: memory (bytes) per record of the index and records tables held by the prepare job
INDEX_BYTES_PER_RECORD = 2_000


def prepare_threads(config: Mapping, dataset_name: str) -> int:
    """Threads (= decoding processes) of prepare_dataset: ``datasets.<name>.workers`` when set
    (0 or 1: decoding in the job's own process), else 1 for tables and
    ``cluster.prepare_cpus`` for images and signals. Snakemake caps it at ``--cores``."""
    workers = dataset(config, dataset_name).get("workers")
    if workers is not None:
        return max(1, int(workers))
    if dataset_modality(config, dataset_name) == "table":
        return 1
    return int(config["cluster"]["prepare_cpus"])


def source_mb(path) -> float:
    """Size (MB) of the prepare job's input when it is a file (a table); 0 for a data directory."""
    import os

    try:
        return os.path.getsize(path) / 1e6 if path and os.path.isfile(path) else 0.0
    except OSError:
        return 0.0


def prepare_records(config: Mapping, dataset_name: str, table_mb: float) -> int:
    """Records the prepare job is sized for: the table's size × TABLE_RECORDS_PER_MB for
    tables read from a file, else the data set's published size (the adapter registry's ``published_records``)."""
    adapter = dataset_adapter(config, dataset_name)
    if table_mb > 0:
        return max(1, int(table_mb * TABLE_RECORDS_PER_MB))
    return ADAPTERS[adapter].published_records or 100_000


def record_bytes(config: Mapping, dataset_name: str) -> int:
    """Bytes of one record's model input: channels × image_size² (uint8 images), leads ×
    sampling rate × 10 s × 4 (float32 signals), 0 for tables (counted by the file size)."""
    spec = dataset(config, dataset_name)
    modality = dataset_modality(config, dataset_name)
    if modality == "image":
        return int(spec["channels"]) * int(spec["image_size"]) ** 2
    if modality == "signal":
        opts = spec.get("options") or {}
        return len(opts.get("leads") or range(12)) * int(opts.get("sampling_rate", 100)) * 10 * 4
    return 0


def prepare_mem_mb(config: Mapping, dataset_name: str, table_mb: float, attempt: int) -> int:
    """Memory (MB) of prepare_dataset:

    (light_mem_mb + prepare_mem_mb_per_worker × decoding processes + input_mem_factor × data MB)
    × retry_growth^(attempt − 1), with data MB = the table file's MB + two blocks of decoded
    inputs (2 × block_records × :func:`record_bytes`) + the index (records × 2 KB). The job's
    own process is a light one (no model, no CUDA); decoding processes are its threads when
    there are several (one thread decodes in the job's own process).
    """
    c = config["cluster"]
    spec = dataset(config, dataset_name)
    records = prepare_records(config, dataset_name, table_mb)
    blocks = 2 * min(int(spec["block_records"]), records) * record_bytes(config, dataset_name)
    data_mb = table_mb + (blocks + records * INDEX_BYTES_PER_RECORD) / 1e6
    threads = prepare_threads(config, dataset_name)
    workers = threads if threads > 1 else 0
    mb = c["light_mem_mb"] + c["prepare_mem_mb_per_worker"] * workers + c["input_mem_factor"] * data_mb
    return int(math.ceil(mb * retry_factor(config, attempt)))


def prepare_runtime(config: Mapping, dataset_name: str, table_mb: float, attempt: int) -> int:
    """Wall time (minutes) of prepare_dataset: records × prepare_seconds_per_record[adapter,
    else modality] / threads, through :func:`runtime_minutes` (startup, retry growth, minimum)."""
    costs = config["cluster"]["prepare_seconds_per_record"]
    adapter = dataset_adapter(config, dataset_name)
    modality = dataset_modality(config, dataset_name)
    if adapter not in costs and modality not in costs:
        raise ConfigError(
            f"config key cluster.prepare_seconds_per_record has no entry for adapter {adapter!r} "
            f"or modality {modality!r} of data set {dataset_name!r} (known: {sorted(costs)})"
        )
    cost = float(costs.get(adapter, costs.get(modality)))
    records = prepare_records(config, dataset_name, table_mb)
    seconds = records * cost / prepare_threads(config, dataset_name)
    return runtime_minutes(config, seconds, attempt)
