"""Checks of a configuration that the JSON schema cannot express, run by the Snakefile before any
job: cross-key checks, the profile, the device. Each failure is a :class:`ConfigError` of one
line naming the key and what was expected (docs/extending.md).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

from mia_audit.data.spec import check_dataset_spec
from mia_audit.errors import ConfigError
from mia_audit.pipeline.plan import (
    NAME_PATTERN,
    RESERVED_ATTRIBUTES,
    adaptive,
    dataset_modality,
    experiment,
    experiment_dataset,
    models_per_job,
    n_models,
    selection,
)
from mia_audit.pipeline.resources import shard_gpus, slurm_gpu_gres

_PLACEHOLDER = re.compile(r"^<[^<>]*>$")

#: keys a selection candidate may override (the experiment schema's model and train keys)
CANDIDATE_KEYS = {
    "model": {"arch", "depth", "width", "widen", "dropout", "norm", "groups", "base_width", "blocks", "pretrained",
              "params", "factory", "kwargs"},
    "train": {"epochs", "batch_size", "lr", "weight_decay", "optimizer", "momentum", "schedule", "warmup_epochs",
              "augment", "amp"},
}  # fmt: skip


def _check_selection(config: Mapping, name: str) -> None:
    spec = selection(config, name)
    if spec is None:
        return
    key = f"experiments.{name}.selection"
    exp = experiment(config, name)
    if exp.get("dp"):
        raise ConfigError(f"config key {key}: model selection trains without DP; remove it or the dp block")
    ds = exp["dataset"]
    if dataset_modality(config, ds) != "table":
        raise ConfigError(
            f"config key {key}: model selection is implemented for table data sets (MLPs); data set {ds!r} "
            f"has {dataset_modality(config, ds)} inputs"
        )
    for cand, over in spec["candidates"].items():
        for block, known in CANDIDATE_KEYS.items():
            stray = sorted(set((over or {}).get(block) or {}) - known)
            if stray:
                raise ConfigError(
                    f"config key {key}.candidates.{cand}.{block} has unknown key(s) {stray}; known: {sorted(known)}"
                )
    from mia_audit.train.selection import candidates

    for cand, merged in candidates(exp).items():
        check_model(config, name, merged["model"], f"{key}.candidates.{cand}.model")


def check_model(config: Mapping, name: str, model: Mapping, key: str) -> None:
    """An experiment's (or a selection candidate's) ``model`` block fits its family
    (:mod:`mia_audit.train.families`): only the keys the family reads; a family for the data set's
    inputs; an estimator's ``params`` known to it; a factory that imports, takes the arguments it
    is given and (``sklearn``) returns a classifier. Raises :class:`ConfigError` naming ``key``."""
    from mia_audit.settings import complete
    from mia_audit.train.families import FAMILIES

    model = complete(model, "model", key)
    arch = str(model["arch"])
    fam = FAMILIES[arch]
    if fam.keys is not None:
        stray = sorted(set(model) - {"arch"} - fam.keys)
        if stray:
            hint = "; its settings go under params" if fam.keys == {"params"} else ""
            raise ConfigError(
                f"config key {key} has key(s) {stray} that model.arch {arch!r} does not read "
                f"(it reads {sorted(fam.keys)}){hint}"
            )
    ds = experiment_dataset(config, name)
    modality = dataset_modality(config, ds)
    if fam.modality is not None and fam.modality != modality:
        raise ConfigError(
            f"config key {key}.arch: {arch!r} takes {fam.modality} inputs, but data set {ds!r} has {modality} inputs"
        )
    exp = experiment(config, name)
    if fam.kind == "estimator":
        if exp.get("dp"):
            raise ConfigError(
                f"config key experiments.{name}.dp: DP-SGD trains networks only; model.arch {arch!r} is fitted by "
                "its own library (remove the dp block, or use a network family)"
            )
        fam.build().check(model, key)
    elif arch == "torch":
        from mia_audit.train import factories

        fn = factories.resolve(model["factory"], f"{key}.factory")
        factories.check_signature(
            fn, ("input_shape", "num_outputs"), model["kwargs"], f"{key}.factory", model["factory"]
        )


def coerce_cli_strings(config: dict, schema: Mapping | str) -> dict:
    """Give ``--config`` values the types the schema expects, in place; returns ``config``.

    Snakemake parses ``--config 'cluster={gpu: true, cpus_per_job: 8}'`` with YAML's base
    loader, so every nested value arrives as a string ("true", "8"). Each string is read as
    a YAML scalar (``1e-5`` as a number too); when that gives a boolean, integer, number or
    null that the schema admits at the key (its ``type`` or ``enum``, through ``$ref``,
    ``allOf``, ``anyOf`` and ``oneOf``), the typed value replaces the string. Anything else
    stays a string, for the schema validation to judge. ``schema`` is the schema or the
    path of its YAML file.
    """
    if isinstance(schema, str):
        import yaml

        with open(schema) as fh:
            schema = yaml.safe_load(fh)
    _coerce(config, schema, schema.get("$defs", {}))
    return config


def _subschemas(node: Mapping, defs: Mapping) -> list[Mapping]:
    """``node`` and everything it combines (``$ref``, ``allOf``, ``anyOf``, ``oneOf``), resolved."""
    out, todo = [], [node]
    while todo:
        cur = todo.pop()
        if not isinstance(cur, Mapping):
            continue
        ref = cur.get("$ref", "")
        if ref.startswith("#/$defs/"):
            todo.append(defs.get(ref.split("/")[-1], {}))
        for key in ("allOf", "anyOf", "oneOf"):
            todo.extend(cur.get(key, []))
        out.append(cur)
    return out


def _accepts(node: Mapping, value) -> bool:
    """Whether a schema node's ``type``/``enum`` admit a non-string YAML scalar."""
    t = node.get("type")
    types = set(t) if isinstance(t, list) else {t} if t else set()
    kind = (
        "boolean"
        if isinstance(value, bool)
        else "integer"
        if isinstance(value, int)
        else "number"
        if isinstance(value, float)
        else "null"
        if value is None
        else None
    )
    if kind is None:
        return False
    if "enum" in node:
        return any(value == e and type(value) is type(e) for e in node["enum"])
    return kind in types or (kind == "integer" and "number" in types)


def _coerce_scalar(value: str, nodes: list[Mapping]):
    import yaml

    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError:
        return value
    if isinstance(parsed, str):
        try:
            parsed = float(value)
        except ValueError:
            return value
        if not math.isfinite(parsed):  # "inf", "nan": keep the words (e.g. dp.epsilon: inf)
            return value
    if isinstance(parsed, list | dict) or not any(_accepts(n, parsed) for n in nodes):
        return value
    return parsed


def _coerce(value, node: Mapping, defs: Mapping):
    nodes = _subschemas(node, defs)
    if isinstance(value, dict):
        for key in list(value):
            sub = [n["properties"][key] for n in nodes if key in n.get("properties", {})]
            sub += [
                n["additionalProperties"]
                for n in nodes
                if not sub and isinstance(n.get("additionalProperties"), Mapping)
            ]
            if sub:
                value[key] = _coerce(value[key], {"allOf": sub}, defs)
        return value
    if isinstance(value, list):
        items = [n["items"] for n in nodes if isinstance(n.get("items"), Mapping)]
        return [_coerce(v, {"allOf": items}, defs) for v in value] if items else value
    if isinstance(value, str):
        return _coerce_scalar(value, nodes)
    return value


def check_config(config: Mapping) -> None:
    """Cross-key checks the JSON schema cannot express; raise :class:`ConfigError` before any job."""
    for name, exp in config["experiments"].items():
        ds = exp["dataset"]
        if ds not in config["datasets"]:
            raise ConfigError(
                f"config key experiments.{name}.dataset names {ds!r}, which is not a key of "
                f"datasets (known: {sorted(config['datasets'])})"
            )
        total, per_job = n_models(config, name), models_per_job(config, name)
        if total % per_job:
            raise ConfigError(
                f"config key experiments.{name}.models_per_job = {per_job} must divide datasets.{ds}.n_models = {total}"
            )
        n_targets = config["audit"]["n_targets"]
        if n_targets > total - 2:
            raise ConfigError(
                f"config key audit.n_targets = {n_targets} leaves fewer than 2 "
                f"reference models of the {total} models of data set {ds!r}"
            )
        _check_adaptive(config, name)
        model = exp["model"]
        networks_with_norm = ("wrn-28-2", "wrn-40-4", "wrn", "vit-b-16", "vit-l-16", "ecg-resnet1d", "ecg-xresnet1d")
        if exp.get("dp") and model["arch"] in networks_with_norm and model.get("norm") != "group":
            raise ConfigError(
                f"config key experiments.{name}.model.norm must be 'group' for DP training of "
                f"model.arch {model['arch']!r} (BatchNorm mixes the records of a batch and is not "
                f"DP-compatible), got {model.get('norm')!r}"
            )
        check_model(config, name, model, f"experiments.{name}.model")
        _check_selection(config, name)
    check_subgroup_settings(config.get("subgroups") or {})
    for ds, spec in config["datasets"].items():
        check_dataset_spec(ds, spec)
        attrs = spec.get("subgroups") or {}
        bad = RESERVED_ATTRIBUTES & set(attrs)
        if bad:
            raise ConfigError(
                f"config key datasets.{ds}.subgroups names attribute(s) {sorted(bad)}, which are "
                f"reserved for other tables of the subgroup stage; rename them"
            )
        for attr in attrs:
            if not re.fullmatch(NAME_PATTERN, attr):
                raise ConfigError(
                    f"config key datasets.{ds}.subgroups.{attr}: attribute names may hold only "
                    f"letters, digits, '_' and '-' (they become file names)"
                )


def _flat(d, prefix="") -> dict:
    out = {}
    for k, v in (d or {}).items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and v:
            out.update(_flat(v, f"{key}."))
        else:
            out[key] = v
    return out


def settings_differences(old: Mapping, new: Mapping) -> list[str]:
    """'experiment.model.width: 16 → 64' for every key whose value differs (absent: '–')."""
    a, b = _flat(old), _flat(new)

    def short(v) -> str:
        text = str(v)
        return text if len(text) <= 60 else text[:57] + "…"

    return [
        f"{k}: {short(a.get(k, '–'))} → {short(b.get(k, '–'))}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)
    ]


def check_experiment_folders(config: Mapping) -> None:
    """One configuration per experiment folder: an experiment whose folder holds outputs made
    with other settings (its ``settings.json``, :func:`mia_audit.pipeline.plan.settings_file`) is a
    :class:`ConfigError` naming the keys that differ and the ways out, before any job runs.

    Refusing, rather than rebuilding in place, keeps every earlier result: Snakemake would
    rebuild only the outputs the new settings still name, and files of the old settings
    (a selection table, subgroup tables of a removed attribute, figures) would stay beside
    them, describing other models.
    """
    import json
    from pathlib import Path

    from mia_audit.pipeline.plan import experiment_figure_dir, experiment_settings, settings_digest, settings_file

    for name in config["experiments"]:
        path = Path(settings_file(config, name))
        if not path.exists():
            continue
        try:
            recorded = json.loads(path.read_text())
            digest, settings = recorded["digest"], recorded["settings"]
        except (OSError, ValueError, KeyError, TypeError):
            raise ConfigError(
                f"{path} cannot be read (damaged); it records the settings the outputs of experiment {name!r} were "
                f"made with: delete {path.parent} and {experiment_figure_dir(config, name)} to rebuild the experiment"
            ) from None
        if digest == settings_digest(config, name):
            continue
        diff = settings_differences(settings, experiment_settings(config, name))
        shown = "; ".join(diff[:4]) + (f"; and {len(diff) - 4} more" if len(diff) > 4 else "")
        raise ConfigError(
            f"config key experiments.{name}: {path.parent} holds the outputs of experiment {name!r} made with other "
            f"settings ({shown}); one experiment folder holds one configuration: give these settings another "
            f"experiment name or another results folder, or delete {path.parent} and "
            f"{experiment_figure_dir(config, name)} to rebuild the experiment with them"
        )


def check_subgroup_settings(s: Mapping) -> None:
    """The tail rule of ``subgroups`` has the key it needs (count, threshold), and auto's limit
    is not beyond its start. Raises :class:`ConfigError`."""
    rule = s["tail"]
    for key in ("count", "threshold"):
        if rule == key and s.get(key) is None:
            raise ConfigError(
                f"config key subgroups.tail = {key} needs subgroups.{key} "
                f"({'a number of units' if key == 'count' else 'an AUC'}, or {{record: …, patient: …}})"
            )
    if rule == "auto" and s["auto_min_quantile"] > s["quantile"]:
        raise ConfigError(
            f"config key subgroups.auto_min_quantile = {s['auto_min_quantile']} must not exceed "
            f"subgroups.quantile = {s['quantile']}: tail auto grows the tail from the quantile one up to it"
        )


def check_device(config: Mapping, executor: str | None = "local", cuda_available=None, gpu_gres=None) -> None:
    """``device: cuda`` where the train and query jobs will have no GPU is a :class:`ConfigError`.

    ``executor`` is Snakemake's (``local``, ``slurm``, …). Local jobs run on this machine:
    ``cuda_available()`` (default ``torch.cuda.is_available``, imported only here) must be
    true. Cluster jobs run elsewhere: they must ask the scheduler for a GPU
    (:func:`shard_gpus` > 0, config key ``cluster.gpu``).
    """
    if config["device"] != "cuda":
        return
    if executor in (None, "local", "dryrun", "touch"):
        if cuda_available is None:
            import torch

            cuda_available = torch.cuda.is_available
        if not cuda_available():
            raise ConfigError(
                "config key device is 'cuda' but this machine has no CUDA device; set device: auto "
                "(uses a GPU where there is one, else the CPU) or device: cpu"
            )
    elif shard_gpus(config, gpu_gres or slurm_gpu_gres) == 0:
        raise ConfigError(
            f"config key device is 'cuda' but the train and query jobs ask the {executor} cluster for no GPU "
            f"(cluster.gpu: {config['cluster']['gpu']}); set cluster.gpu: true, or device: auto"
        )


def _check_adaptive(config: Mapping, name: str) -> None:
    spec = adaptive(config, name)
    if spec is None:
        return
    ds = experiment_dataset(config, name)
    total, wave, per_job = n_models(config, name), int(spec["wave_models"]), models_per_job(config, name)
    key = f"datasets.{ds}.adaptive"
    if wave % 4:
        raise ConfigError(
            f"config key {key}.wave_models = {wave} must be a multiple of 4 (balanced waves split into balanced halves)"
        )
    if total % wave:
        raise ConfigError(
            f"config key {key}.wave_models = {wave} must divide datasets.{ds}.n_models = {total} (the cap)"
        )
    if wave % per_job:
        raise ConfigError(
            f"config key experiments.{name}.models_per_job = {per_job} must divide {key}.wave_models = {wave}"
        )
    smallest = min(total, max(wave, int(spec["min_models"])))
    n_targets = config["audit"]["n_targets"]
    if n_targets > wave - 2:
        raise ConfigError(
            f"config key audit.n_targets = {n_targets} leaves fewer than 2 reference models of an adaptive "
            f"audit that may stop after one wave of {key}.wave_models = {wave} (at {smallest} models)"
        )


def check_profile_placeholders(default_resources: Mapping | None, overwrite_resources: Mapping | None) -> None:
    """Fail before any job when a profile still holds a template value such as ``"<partition>"``.

    ``default_resources`` maps resource → value (Snakemake's parsed or raw form);
    ``overwrite_resources`` maps rule → such a mapping (the profile's ``set-resources``).
    """
    sources = [("default-resources", default_resources or {})]
    for rule_name, res in (overwrite_resources or {}).items():
        sources.append((f"set-resources of rule {rule_name}", res))
    for where, mapping in sources:
        items = mapping.items() if hasattr(mapping, "items") else []
        for key, value in items:
            raw = getattr(value, "raw", value)
            if isinstance(raw, str) and _PLACEHOLDER.match(raw.strip().strip("'\"")):
                raise ConfigError(
                    f"profile value {key}={raw} in {where} is a template placeholder; edit the "
                    f"profile (e.g. profiles/slurm/config.yaml) to name your cluster's {key}, "
                    "or pass it on the command line: --default-resources "
                    "slurm_partition=NAME slurm_account=NAME (see docs/hpc.md)"
                )


def cluster_requests(config: Mapping, cores: int | None, group_components: Mapping | None = None) -> list:
    """What the heavy jobs (and the shard groups) of a configuration ask of a node, as
    :class:`mia_audit.pipeline.slurm.Request`, with the config key behind each figure. CPUs are
    capped by ``cores`` (the profile's, as Snakemake caps threads); memory and time are the first
    attempt's, from the prepared inputs where they exist, else from the data set's estimate."""
    from mia_audit.pipeline import plan, resources
    from mia_audit.pipeline.slurm import Request

    cap = (lambda n: min(n, int(cores))) if cores else (lambda n: n)
    shards_per_group = int((group_components or {}).get("shards", 1) or 1)
    out = []
    for ds in config["datasets"]:
        if not plan.experiments_of(config, ds):
            continue
        table_mb = resources.source_mb(plan.dataset_source(config, ds))
        key = (
            f"datasets.{ds}.workers" if plan.dataset(config, ds).get("workers") is not None else "cluster.prepare_cpus"
        )
        out.append(
            Request(
                what=f"prepare_dataset of data set {ds}",
                rule="prepare_dataset",
                cpus=cap(resources.prepare_threads(config, ds)),
                cpus_key=f"config key {key}",
                mem_mb=resources.prepare_mem_mb(config, ds, table_mb, 1),
                mem_key=f"the size of data set {ds} (config keys cluster.prepare_mem_mb_per_worker, light_mem_mb)",
                runtime_min=resources.prepare_runtime(config, ds, table_mb, 1),
                runtime_key=f"the size of data set {ds} (config key cluster.prepare_seconds_per_record)",
            )
        )
    for name in config["experiments"]:
        ds = plan.experiment_dataset(config, name)
        inputs = f"{plan.results(config)}/{ds}/inputs.zarr"
        table = plan.dataset_modality(config, ds) == "table"
        per_job = plan.models_per_job(config, name)
        train = resources.train_runtime(config, name, inputs, 1)
        query = resources.query_runtime(config, name, inputs, 1)
        shards = min(shards_per_group, plan.n_shards(config, name))
        out.append(
            Request(
                what=f"train_models/query_models of experiment {name}",
                rule="train_models",
                cpus=cap(resources.shard_cpus(config, name)),
                cpus_key=f"config key cluster.{'table_cpus_per_job' if table else 'cpus_per_job'}",
                mem_mb=resources.shard_mem_mb(config, name, inputs, 1),
                mem_key=f"config key experiments.{name}.models_per_job = {per_job} (× cluster.mem_mb_per_model)",
                runtime_min=shards * (train + query),
                runtime_key=(
                    f"config key experiments.{name}.models_per_job = {per_job} (with the workflow profile's "
                    f"group-components shards = {shards_per_group}: a shard group runs its shards one after another)"
                ),
                gpus=resources.shard_gpus(config),
                gpu_type=resources.shard_gpu_model(config),
            )
        )
    return out


def check_cluster_requests(
    config: Mapping,
    cores: int | None,
    default_resources=None,
    overwrite_resources=None,
    group_components: Mapping | None = None,
    cluster=None,
) -> bool:
    """Before any submission: every heavy job's request fits a node of its SLURM partition as
    ``sinfo`` reports it (CPUs, memory, GPUs, time limit); else a :class:`ConfigError` of one
    line naming the key to change. ``cluster``: :func:`mia_audit.pipeline.slurm.partitions`'
    answer (read here when None). Returns False where sinfo could not be read (no check)."""
    from mia_audit.pipeline import slurm

    cluster = cluster if cluster is not None else slurm.partitions()
    if cluster is None:
        return False
    requests = cluster_requests(config, cores, group_components)
    slurm.check_requests(requests, cluster, default_resources, overwrite_resources)
    return True
