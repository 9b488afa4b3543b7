"""The workflow's plan: pure functions of the validated configuration.

Everything the rules need to know before a job runs lives here, so that it is tested by
import (``tests/test_plan.py``) instead of inside the Snakefile: cross-key checks the JSON
schema cannot express, shard arithmetic, the list of final targets, the order of the DP
comparison, and the cluster resources of the shard jobs. ``workflow/rules/common.smk``
only wraps these functions for Snakemake's wildcards.

Every function takes ``config``, the configuration *after* schema validation (defaults
filled in by ``snakemake.utils.validate``), and reads each config key in one place
(:func:`n_models`, :func:`models_per_job`, …). Imports stay light: this module is loaded
each time the Snakefile is parsed.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import re
import shutil
import subprocess
from collections.abc import Mapping

from .errors import DataError
from .layout import model_inputs_array, table_path

#: file names under {dataset}/{experiment}/subgroups/ that are not attribute tables
RESERVED_ATTRIBUTES = frozenset({"composition", "tests_unadjusted"})
#: names of config entries that become file or folder names
NAME_PATTERN = r"[A-Za-z0-9_-]+"
_PLACEHOLDER = re.compile(r"^<[^<>]*>$")


class ConfigError(DataError):
    """A configuration that passes the schema but cannot run: names the key and what was expected."""


# --------------------------------------------------------------------------- config readers


def results(config: Mapping) -> str:
    """The results folder (config key ``results``)."""
    return str(config["results"])


def experiment(config: Mapping, name: str) -> dict:
    """The config block ``experiments.<name>``."""
    try:
        return config["experiments"][name]
    except KeyError:
        raise ConfigError(
            f"config key experiments.{name} does not exist (known: {sorted(config['experiments'])})"
        ) from None


def experiment_dataset(config: Mapping, name: str) -> str:
    """The data set an experiment trains on (``experiments.<name>.dataset``)."""
    return experiment(config, name)["dataset"]


def dataset(config: Mapping, name: str) -> dict:
    """The config block ``datasets.<name>``."""
    try:
        return config["datasets"][name]
    except KeyError:
        raise ConfigError(f"config key datasets.{name} does not exist (known: {sorted(config['datasets'])})") from None


def experiment_for(config: Mapping, dataset_name: str, name: str) -> dict:
    """The block of experiment ``name``, checked to run on ``dataset_name`` (a path's two wildcards)."""
    exp = experiment(config, name)
    if exp["dataset"] != dataset_name:
        raise ConfigError(f"experiment {name!r} runs on data set {exp['dataset']!r}, not {dataset_name!r}")
    return exp


def n_models(config: Mapping, experiment_name: str) -> int:
    """Target models of an experiment: ``datasets.<its data set>.n_models``."""
    return int(dataset(config, experiment_dataset(config, experiment_name))["n_models"])


def models_per_job(config: Mapping, experiment_name: str) -> int:
    """Models trained together in one job (``experiments.<name>.models_per_job``)."""
    return int(experiment(config, experiment_name)["models_per_job"])


def n_shards(config: Mapping, experiment_name: str) -> int:
    """Shards (train/query jobs) of an experiment: n_models / models_per_job."""
    return n_models(config, experiment_name) // models_per_job(config, experiment_name)


def shard_models(config: Mapping, experiment_name: str, shard: int) -> list[int]:
    """Global model indices [start, stop) of one shard."""
    per_job = models_per_job(config, experiment_name)
    start = int(shard) * per_job
    return [start, start + per_job]


def experiments_of(config: Mapping, dataset_name: str) -> list[str]:
    """Names of the experiments that train on a data set, in config order."""
    return [n for n, e in config["experiments"].items() if e["dataset"] == dataset_name]


def datasets_in_use(config: Mapping) -> list[str]:
    """Data sets that at least one experiment trains on, sorted."""
    return sorted({e["dataset"] for e in config["experiments"].values()})


def query_views(config: Mapping, experiment_name: str) -> list[str]:
    """The experiment's query views (``query.views``; default ``[original]``)."""
    return list((experiment(config, experiment_name).get("query") or {}).get("views", ["original"]))


def adaptive(config: Mapping, experiment_name: str) -> dict | None:
    """The adaptive block of an experiment's data set (``datasets.<name>.adaptive``), or None
    for the fixed design."""
    return dataset(config, experiment_dataset(config, experiment_name)).get("adaptive") or None


def wave_models(config: Mapping, experiment_name: str) -> int:
    """Models per wave of an adaptive experiment (``adaptive.wave_models``)."""
    spec = adaptive(config, experiment_name)
    if spec is None:
        raise ConfigError(f"experiment {experiment_name!r} has no adaptive block (datasets.<name>.adaptive)")
    return int(spec["wave_models"])


def n_waves(config: Mapping, experiment_name: str) -> int:
    """Waves of an adaptive experiment at most: n_models (the cap) / wave_models."""
    return n_models(config, experiment_name) // wave_models(config, experiment_name)


def wave_shards(config: Mapping, experiment_name: str, wave: int) -> list[int]:
    """Shards trained in wave ``wave`` (0-based) of an adaptive experiment."""
    per_wave = wave_models(config, experiment_name) // models_per_job(config, experiment_name)
    return list(range(int(wave) * per_wave, (int(wave) + 1) * per_wave))


def next_wave(config: Mapping, experiment_name: str, decisions: list[Mapping]) -> int | None:
    """The wave to assess next, given the decisions of the waves so far (in order), or None when
    the last one stopped the audit (or every wave up to the cap is done)."""
    if decisions and decisions[-1].get("stop"):
        return None
    if len(decisions) >= n_waves(config, experiment_name):
        return None
    return len(decisions)


def wave_decision(path) -> dict:
    """A wave's decision file (JSON written by the assess_wave checkpoint)."""
    with open(path) as fh:
        return json.load(fh)


def selection(config: Mapping, experiment_name: str) -> dict | None:
    """The experiment's model-selection block (``experiments.<name>.selection``), or None."""
    return experiment(config, experiment_name).get("selection") or None


def selection_dir(config: Mapping, dataset_name: str, experiment_name: str) -> str:
    return f"{results(config)}/{dataset_name}/{experiment_name}/selection"


def selection_choice(config: Mapping, dataset_name: str, experiment_name: str) -> list[str]:
    """``[{experiment}/selection/chosen.json]`` of an experiment with selection, else [] (an
    input of the jobs that need the chosen settings)."""
    if selection(config, experiment_name) is None:
        return []
    return [f"{selection_dir(config, dataset_name, experiment_name)}/chosen.json"]


def baselines_enabled(config: Mapping, dataset_name: str) -> bool:
    """Whether the scikit-learn baselines run for a data set: a table data set with
    ``baselines.member_sets`` > 0."""
    spec = dataset(config, dataset_name)
    return (
        dataset_modality(config, dataset_name) == "table"
        and int((spec.get("baselines") or {}).get("member_sets", 10)) > 0
    )


def baselines_table(config: Mapping, dataset_name: str) -> list[str]:
    """``[{dataset}/baselines.tsv]`` when the data set has baselines, else []."""
    return [f"{results(config)}/{dataset_name}/baselines.tsv"] if baselines_enabled(config, dataset_name) else []


#: keys a selection candidate may override (the experiment schema's model and train keys)
CANDIDATE_KEYS = {
    "model": {"arch", "depth", "width", "widen", "dropout", "norm", "groups", "base_width", "blocks", "pretrained"},
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


def subgroups(config: Mapping, dataset_name: str) -> dict:
    """The data set's subgroup attributes (``datasets.<name>.subgroups``), never None."""
    return dict(dataset(config, dataset_name).get("subgroups") or {})


def subgroup_attribute_pattern(config: Mapping) -> str:
    """Regex of every configured attribute name (keeps ``{attribute}`` off other file names)."""
    names = sorted({a for spec in config["datasets"].values() for a in (spec.get("subgroups") or {})})
    return "|".join(re.escape(a) for a in names) if names else "(?!)"


def access_levels(config: Mapping, dataset_name: str) -> dict:
    """The data set's partial-access levels other than full (``access_levels``), never None."""
    return dict(dataset(config, dataset_name).get("access_levels") or {})


def dataset_digest(config: Mapping, dataset_name: str) -> str:
    """16 hex digits of the SHA-256 of the data set's config block (canonical JSON, defaults filled in)."""
    blob = json.dumps(dataset(config, dataset_name), sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def validation_report(config: Mapping, dataset_name: str) -> str:
    """``{results}/{dataset}/validation/{digest}.json``: the checks' report of the data set as configured.

    One report per configuration (:func:`dataset_digest`): going back to a configuration that
    passed finds its report in place, so a failed check of another configuration never makes
    Snakemake prepare the data set again.
    """
    return f"{results(config)}/{dataset_name}/validation/{dataset_digest(config, dataset_name)}.json"


def dataset_source(config: Mapping, dataset_name: str) -> str | list:
    """The input of the prepare job: the table file (adapter ``table``), nothing (generated
    data) or the data directory (the other adapters)."""
    spec = dataset(config, dataset_name)
    adapter = spec.get("adapter", "table")
    if adapter == "table":
        return str(table_path(spec))
    if adapter == "synthetic_images":  # generated from the config: no input file
        return []
    return spec["root"]


# --------------------------------------------------------------------------- command-line values


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


# --------------------------------------------------------------------------- checks


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
        if exp.get("dp") and model["arch"] != "mlp" and model.get("norm") != "group":
            raise ConfigError(
                f"config key experiments.{name}.model.norm must be 'group' for DP training of "
                f"model.arch {model['arch']!r} (BatchNorm mixes the records of a batch and is not "
                f"DP-compatible), got {model.get('norm')!r}"
            )
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


def check_subgroup_settings(s: Mapping) -> None:
    """The tail rule of ``subgroups`` has the key it needs (count, threshold), and auto's limit
    is not beyond its start. Raises :class:`ConfigError`."""
    rule = s.get("tail", "auto")
    for key in ("count", "threshold"):
        if rule == key and s.get(key) is None:
            raise ConfigError(
                f"config key subgroups.tail = {key} needs subgroups.{key} "
                f"({'a number of units' if key == 'count' else 'an AUC'}, or {{record: …, patient: …}})"
            )
    if rule == "auto" and s.get("auto_min_quantile", 0.8) > s.get("quantile", 0.99):
        raise ConfigError(
            f"config key subgroups.auto_min_quantile = {s['auto_min_quantile']} must not exceed "
            f"subgroups.quantile = {s.get('quantile', 0.99)}: tail auto grows the tail from the quantile one up to it"
        )


def check_dataset_spec(name: str, spec: Mapping) -> None:
    """Checks of one ``datasets.<name>`` block that need no data: what the table keys name must
    fit together (label not a feature, categorical/dates/ranges among the features, subgroup
    bins with matching labels, filters with a condition). Raises :class:`ConfigError`."""
    key = f"datasets.{name}"
    features = list(spec.get("features") or [])
    categorical = list(spec.get("categorical") or [])
    label = (spec.get("label") or {}).get("column")
    if label is not None and label in features:
        raise ConfigError(
            f"config key {key}.features lists the label column {label!r} (config key {key}.label.column): "
            "the outcome would be an input of the models; remove it from features"
        )
    for sub, names in (("categorical", categorical), ("dates", list(spec.get("dates") or {}))):
        stray = [c for c in names if c not in features]
        if stray:
            raise ConfigError(f"config key {key}.{sub} names {stray}, which are not in {key}.features")
    both = sorted(set(categorical) & set(spec.get("dates") or {}))
    if both:
        raise ConfigError(f"config key {key}: {both} are listed under both categorical and dates; keep one")
    for col, bounds in (spec.get("ranges") or {}).items():
        if col not in features or col in categorical:
            raise ConfigError(
                f"config key {key}.ranges.{col}: plausibility ranges apply to numeric features "
                f"(or dates), and {col!r} is {'categorical' if col in categorical else 'not in features'}"
            )
        low, high = bounds
        if low is not None and high is not None and not low < high:
            raise ConfigError(f"config key {key}.ranges.{col} = [{low}, {high}]: expected low < high")
    for i, flt in enumerate(spec.get("filters") or []):
        conditions = set(flt) - {"column"}
        if not conditions or (conditions == {"drop_missing"} and not flt["drop_missing"]):
            raise ConfigError(
                f"config key {key}.filters[{i}] (column {flt.get('column')!r}) has no condition; "
                "give keep, drop, min, max or drop_missing: true"
            )
        lo, hi = flt.get("min"), flt.get("max")
        if lo is not None and hi is not None and lo > hi:
            raise ConfigError(f"config key {key}.filters[{i}]: min = {lo} is above max = {hi}")
    for attr, sg in (spec.get("subgroups") or {}).items():
        bins = sg.get("bins")
        if bins is None:
            if sg.get("labels") is not None:
                raise ConfigError(f"config key {key}.subgroups.{attr}.labels needs bins (the edges they name)")
            continue
        if any(b >= a for a, b in zip(bins[1:], bins[:-1], strict=True)):
            raise ConfigError(f"config key {key}.subgroups.{attr}.bins = {bins}: edges must increase strictly")
        labels = sg.get("labels")
        if labels is not None and len(labels) != len(bins) - 1:
            raise ConfigError(
                f"config key {key}.subgroups.{attr}: {len(labels)} labels for {len(bins) - 1} bins "
                f"(edges {bins}); give one label per bin"
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


def describe_schema_error(error) -> str:
    """One line for a :class:`jsonschema.ValidationError` of the config: the key, the offending
    value and what the schema expects (never the schema itself)."""
    path = ".".join(str(p) for p in error.absolute_path) or "(top level)"
    if error.validator == "additionalProperties":
        known = sorted((error.schema.get("properties") or {}).keys())
        extra = sorted(set(error.instance) - set(known)) if isinstance(error.instance, Mapping) else []
        where = f"config key {path}" if error.absolute_path else "the config"
        return f"{where} has unknown key(s) {extra}; known keys: {', '.join(known)}"
    if error.validator == "propertyNames":
        return f"config key {path}: {error.message} (names may hold only letters, digits, '_' and '-')"
    message = error.message if len(error.message) <= 300 else error.message[:297] + "..."
    hint = error.schema.get("description") if isinstance(error.schema, Mapping) else None
    out = f"config key {path}: {message}"
    if hint and error.validator in ("enum", "type", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        out += f" ({' '.join(str(hint).split())[:200]})"
    return out


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


# --------------------------------------------------------------------------- paths and targets


def exp_dir(config: Mapping, dataset_name: str, experiment_name: str) -> str:
    return f"{results(config)}/{dataset_name}/{experiment_name}"


def shard_weights(config: Mapping, dataset_name: str, experiment_name: str) -> list[str]:
    base = exp_dir(config, dataset_name, experiment_name)
    return [f"{base}/models/shard_{k}.safetensors" for k in range(n_shards(config, experiment_name))]


def shard_metrics(config: Mapping, dataset_name: str, experiment_name: str) -> list[str]:
    base = exp_dir(config, dataset_name, experiment_name)
    return [f"{base}/models/shard_{k}_metrics.tsv" for k in range(n_shards(config, experiment_name))]


def shard_queries(config: Mapping, dataset_name: str, experiment_name: str) -> list[str]:
    base = exp_dir(config, dataset_name, experiment_name)
    return [f"{base}/query/shard_{k}.json" for k in range(n_shards(config, experiment_name))]


def access_cube(config: Mapping, dataset_name: str, experiment_name: str, level: str) -> str:
    return f"{exp_dir(config, dataset_name, experiment_name)}/access/{level}/cube.zarr"


def access_cubes(config: Mapping, dataset_name: str, experiment_name: str) -> list[str]:
    return [access_cube(config, dataset_name, experiment_name, lv) for lv in access_levels(config, dataset_name)]


def access_query_spec(config: Mapping, dataset_name: str, experiment_name: str) -> dict:
    """{level: (level spec, cube path)} for the query job."""
    return {
        lv: (dict(spec), access_cube(config, dataset_name, experiment_name, lv))
        for lv, spec in access_levels(config, dataset_name).items()
    }


def figure_files(config: Mapping, stem: str) -> list[str]:
    """``results/figures/{stem}.png`` and ``.pdf``."""
    return [f"{results(config)}/figures/{stem}.{ext}" for ext in ("png", "pdf")]


def subgroup_experiment_targets(config: Mapping, dataset_name: str, experiment_name: str) -> list[str]:
    base = exp_dir(config, dataset_name, experiment_name)
    fig = f"{dataset_name}/{experiment_name}"
    out = [f"{base}/subgroups/composition.tsv"]
    for attr in subgroups(config, dataset_name):
        out += [f"{base}/subgroups/{attr}.tsv", *figure_files(config, f"{fig}/subgroups_{attr}")]
    for name in ("record_auc", "se"):
        out += figure_files(config, f"{fig}/{name}")
    return out


#: figures of every experiment (rule plot_experiment), besides one ``subgroups_{attribute}`` per
#: subgroup attribute of its data set, drawn after ``patient_intervals``
EXPERIMENT_FIGURES = ("risk_contrast", "attack_roc", "record_auc", "se", "binormal_check", "patient_intervals")


def figure_names(attributes) -> list[str]:
    """Names of an experiment's figures given its data set's subgroup attributes:
    :data:`EXPERIMENT_FIGURES`, ``subgroups_{attribute}`` per attribute, then ``convergence``."""
    return [*EXPERIMENT_FIGURES, *(f"subgroups_{attr}" for attr in attributes), "convergence"]


def experiment_figures(config: Mapping, dataset_name: str) -> list[str]:
    """Names of the figures of each experiment of the data set, under
    ``figures/{dataset}/{experiment}/`` (one job, rule plot_experiment, draws them all)."""
    return figure_names(subgroups(config, dataset_name))


def experiment_figure_rules(config: Mapping) -> list[tuple[str, list[str], list[str]]]:
    """``(rule name, data sets, attributes)`` of the rules that draw the experiment figures.

    A rule's outputs cannot depend on its wildcards, and each data set has its own subgroup
    attributes (one figure each), so data sets in use with the same attributes share a rule:
    ``plot_experiment`` for those of the first data set (all of them in every bundled config
    and preset), ``plot_experiment_{first data set of the group}`` for each other group.
    """
    by_attrs: dict[tuple[str, ...], list[str]] = {}
    for ds in datasets_in_use(config):
        by_attrs.setdefault(tuple(subgroups(config, ds)), []).append(ds)
    return [
        ("plot_experiment" if i == 0 else f"plot_experiment_{names[0]}".replace("-", "_"), names, list(attrs))
        for i, (attrs, names) in enumerate(by_attrs.items())
    ]


def access_targets(config: Mapping, dataset_name: str, experiment_name: str) -> list[str]:
    base = f"{exp_dir(config, dataset_name, experiment_name)}/audit"
    return [
        f"{base}/access_{lv}/{name}"
        for lv in access_levels(config, dataset_name)
        for name in ("record_risk.parquet", "patient_risk.parquet")
    ]


def experiment_targets(config: Mapping, dataset_name: str, experiment_name: str) -> list[str]:
    """Final outputs of one experiment: audit tables, model metrics and its figures."""
    base = exp_dir(config, dataset_name, experiment_name)
    fig = f"{dataset_name}/{experiment_name}"
    return [
        f"{base}/audit/record_risk.parquet",
        f"{base}/audit/patient_risk.parquet",
        f"{base}/audit/patient_thresholds.tsv",
        f"{base}/audit/aggregate_attacks.tsv",
        f"{base}/models/metrics.tsv",
        f"{base}/models/utility.tsv",
        *(
            [f"{selection_dir(config, dataset_name, experiment_name)}/selection.tsv"]
            if selection(config, experiment_name)
            else []
        ),
        *figure_files(config, f"{fig}/risk_contrast"),
        *figure_files(config, f"{fig}/attack_roc"),
        *figure_files(config, f"{fig}/binormal_check"),
        *figure_files(config, f"{fig}/patient_intervals"),
        *subgroup_experiment_targets(config, dataset_name, experiment_name),
        *convergence_targets(config, dataset_name, experiment_name),
        *adaptive_targets(config, dataset_name, experiment_name),
    ]


def wave_decisions(config: Mapping, dataset_name: str, experiment_name: str, waves: int) -> list[str]:
    """Decision files of the first ``waves`` waves of an adaptive experiment."""
    base = exp_dir(config, dataset_name, experiment_name)
    return [f"{base}/adaptive/wave_{w}.json" for w in range(int(waves))]


def wave_queries(config: Mapping, dataset_name: str, experiment_name: str, wave: int) -> list[str]:
    """Query outputs of every shard of waves 0..``wave`` (what the assessment of ``wave`` reads)."""
    queries = shard_queries(config, dataset_name, experiment_name)
    return [queries[k] for w in range(int(wave) + 1) for k in wave_shards(config, experiment_name, w)]


def wave_metrics(config: Mapping, dataset_name: str, experiment_name: str, waves: int) -> list[str]:
    """Model metrics of every shard of the first ``waves`` waves."""
    metrics = shard_metrics(config, dataset_name, experiment_name)
    return [metrics[k] for w in range(int(waves)) for k in wave_shards(config, experiment_name, w)]


def convergence_targets(config: Mapping, dataset_name: str, experiment_name: str) -> list[str]:
    """The convergence analysis of one experiment: its two tables and its figure."""
    base = exp_dir(config, dataset_name, experiment_name)
    return [
        f"{base}/audit/convergence.tsv",
        f"{base}/audit/convergence_summary.tsv",
        *figure_files(config, f"{dataset_name}/{experiment_name}/convergence"),
    ]


def adaptive_targets(config: Mapping, dataset_name: str, experiment_name: str) -> list[str]:
    """``audit/adaptive.tsv`` of an adaptive experiment (none for the fixed design)."""
    if adaptive(config, experiment_name) is None:
        return []
    return [f"{exp_dir(config, dataset_name, experiment_name)}/audit/adaptive.tsv"]


def unadjusted_subgroup_tests(config: Mapping) -> list[str]:
    """Every experiment's unadjusted subgroup tests (one family for the p-value adjustment)."""
    return [
        f"{exp_dir(config, exp['dataset'], name)}/subgroups/tests_unadjusted.tsv"
        for name, exp in config["experiments"].items()
    ]


def subgroup_tables(config: Mapping) -> list[dict]:
    """Every experiment's tables cut from the run-wide adjusted test table (job ``adjust_subgroups``).

    One entry ``{dataset, experiment, attribute, path}`` per table, experiment by experiment in
    config order: ``subgroups/composition.tsv`` (``attribute`` None), then ``subgroups/{attribute}.tsv``
    for each attribute of the experiment's data set (none for a data set without subgroups).
    """
    out = []
    for name, exp in config["experiments"].items():
        ds = exp["dataset"]
        base = f"{exp_dir(config, ds, name)}/subgroups"
        out.append({"dataset": ds, "experiment": name, "attribute": None, "path": f"{base}/composition.tsv"})
        out += [
            {"dataset": ds, "experiment": name, "attribute": attr, "path": f"{base}/{attr}.tsv"}
            for attr in subgroups(config, ds)
        ]
    return out


def subgroup_run_targets(config: Mapping) -> list[str]:
    r = results(config)
    out = [
        f"{r}/meta/subgroup_tests.tsv",
        f"{r}/meta/meta_analysis.tsv",
        f"{r}/meta/meta_summary.tsv",
        *figure_files(config, "meta_analysis"),
    ]
    for ds in datasets_in_use(config):
        out += figure_files(config, f"{ds}/esf_by_experiment")
    return out


def external_targets(config: Mapping) -> list[str]:
    return [f"{results(config)}/external/{name}/summary.tsv" for name in config.get("external_attacks") or {}]


def public_model_targets(config: Mapping) -> list[str]:
    """Outputs of every audit under config key public_models (none when the key is absent)."""
    out = []
    for name in config.get("public_models") or {}:
        base = f"{results(config)}/public/{name}"
        out += [
            f"{base}/scores.parquet",
            f"{base}/patient_scores.parquet",
            f"{base}/summary.tsv",
            *figure_files(config, f"public/{name}/roc"),
        ]
    return out


# --------------------------------------------------------------------------- differential privacy


def _epsilon(value) -> float:
    return math.inf if str(value).lower() == "inf" else float(value)


def epsilon_label(epsilon) -> str:
    """'no DP' for None, 'ε = ∞ (no noise)' for inf, else 'ε = <value>'."""
    if epsilon is None:
        return "no DP"
    e = _epsilon(epsilon)
    return "ε = ∞ (no noise)" if math.isinf(e) else f"ε = {e:g}"


def epsilon_sort_key(epsilon) -> float:
    """Order of a DP comparison: no DP, ε = ∞, then decreasing ε."""
    return -math.inf if epsilon is None else -_epsilon(epsilon)


def dp_level(exp: Mapping) -> str:
    """The DP level of an experiment block with a ``dp`` block (``record`` unless set)."""
    return exp["dp"].get("level", "record")


def dp_comparison(config: Mapping, dataset_name: str, level: str | None = None) -> list[dict]:
    """Experiments of one DP comparison in plotting order (:func:`epsilon_sort_key`).

    Entries ``{experiment, level, epsilon}``: the data set's non-DP experiments with the same
    model block as one of its DP experiments (``level`` ``none``, ``epsilon`` None), then the
    DP experiments at ``level`` (every level when None).
    """
    exps = {n: e for n, e in config["experiments"].items() if e["dataset"] == dataset_name}
    dp_exps = {n: e for n, e in exps.items() if e.get("dp")}
    models = [e["model"] for e in dp_exps.values()]
    out = [
        {"experiment": n, "level": "none", "epsilon": None}
        for n, e in exps.items()
        if not e.get("dp") and e["model"] in models
    ]
    for n, e in dp_exps.items():
        if level is None or dp_level(e) == level:
            out.append({"experiment": n, "level": dp_level(e), "epsilon": e["dp"]["epsilon"]})
    return sorted(out, key=lambda d: epsilon_sort_key(d["epsilon"]))


def dp_paths(config: Mapping, dataset_name: str, name: str, level: str | None = None) -> list[str]:
    """``{results}/{dataset}/{experiment}/{name}`` for every experiment of a DP comparison."""
    return [
        f"{exp_dir(config, dataset_name, d['experiment'])}/{name}" for d in dp_comparison(config, dataset_name, level)
    ]


def dp_targets(config: Mapping) -> list[str]:
    """Per data set with DP experiments: dp_utility.tsv and the dp_esf_{level} figures."""
    out = []
    dp_exps = [e for e in config["experiments"].values() if e.get("dp")]
    for ds in sorted({e["dataset"] for e in dp_exps}):
        levels = sorted({dp_level(e) for e in dp_exps if e["dataset"] == ds})
        out.append(f"{results(config)}/{ds}/dp_utility.tsv")
        for lv in levels:
            out += figure_files(config, f"{ds}/dp_esf_{lv}")
    return out


def run_targets(config: Mapping) -> list[str]:
    """What the report says about the run: its configuration and the software versions."""
    return [f"{results(config)}/run/config.yaml", f"{results(config)}/run/software.tsv"]


def all_targets(config: Mapping) -> list[str]:
    """Every final output of the run (rule ``all``)."""
    out = external_targets(config) + run_targets(config)
    for name, exp in config["experiments"].items():
        out += experiment_targets(config, exp["dataset"], name)
        out += access_targets(config, exp["dataset"], name)
    for ds in datasets_in_use(config):
        out += baselines_table(config, ds)
    return out + subgroup_run_targets(config) + dp_targets(config) + public_model_targets(config)


# --------------------------------------------------------------------------- cluster resources
#
# Resources of the shard jobs (train_models, query_models), from the experiment's config and
# the ``cluster`` section. Snakemake passes ``attempt`` (1, 2, …), so a retried job asks for
# more memory and time. Functions that read the model inputs' shape raise FileNotFoundError
# before prepare_dataset has run, which Snakemake shows as "<TBD>" in a dry run and
# evaluates when the job is scheduled.


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


def retry_factor(config: Mapping, attempt: int) -> float:
    """``cluster.retry_growth`` ^ (attempt − 1)."""
    return float(config["cluster"]["retry_growth"]) ** (int(attempt) - 1)


def shard_mem_mb(config: Mapping, experiment_name: str, inputs_path, attempt: int) -> int:
    """Memory (MB) of one train/query job:

    (mem_mb_base + mem_mb_per_model × models_per_job + input_mem_factor × inputs MB)
    × retry_growth^(attempt − 1), where inputs MB is the stored size of the model inputs
    (records × features/pixels/samples × bytes per value) / 10⁶.
    """
    c = config["cluster"]
    input_mb = model_inputs_array(inputs_path)[1] / 1e6
    mb = (
        c["mem_mb_base"]
        + c["mem_mb_per_model"] * models_per_job(config, experiment_name)
        + c["input_mem_factor"] * input_mb
    )
    return int(math.ceil(mb * retry_factor(config, attempt)))


def runtime_minutes(config: Mapping, seconds: float, attempt: int) -> int:
    """max(runtime_min_minutes, (startup_seconds + seconds) / 60) × retry_growth^(attempt − 1),
    in whole minutes: a retried job gets more time even when its first request was the minimum."""
    c = config["cluster"]
    minutes = max(float(c["runtime_min_minutes"]), (c["startup_seconds"] + seconds) / 60)
    return int(math.ceil(round(minutes * retry_factor(config, attempt), 9)))


def train_seconds(config: Mapping, experiment_name: str, records: int, epochs: int | None = None) -> float:
    """models_per_job × epochs × seconds_per_model_epoch[arch] × records / 1000."""
    if epochs is None:
        epochs = (experiment(config, experiment_name).get("train") or {}).get("epochs", 100)
    return models_per_job(config, experiment_name) * epochs * arch_cost(config, experiment_name) * records / 1000


def train_runtime(config: Mapping, experiment_name: str, inputs_path, attempt: int) -> int:
    """Wall time (minutes) of one train job: :func:`train_seconds` through :func:`runtime_minutes`."""
    records = model_inputs_array(inputs_path)[0][0]
    return runtime_minutes(config, train_seconds(config, experiment_name, records), attempt)


def query_runtime(config: Mapping, experiment_name: str, inputs_path, attempt: int) -> int:
    """Wall time (minutes) of one query job: as :func:`train_runtime` with one epoch's cost."""
    records = model_inputs_array(inputs_path)[0][0]
    return runtime_minutes(config, train_seconds(config, experiment_name, records, epochs=1), attempt)


def shard_gpus(config: Mapping, gpu_gres=slurm_gpu_gres) -> int:
    """GPUs per train/query job: cluster.gpus_per_job when a GPU is requested, else 0."""
    return int(config["cluster"]["gpus_per_job"]) if cluster_gpu_requested(config, gpu_gres) else 0


def shard_gpu_model(config: Mapping, gpu_gres=slurm_gpu_gres) -> str:
    """GPU type for --gpus=TYPE:N (cluster.gpu_model); empty = any type."""
    model = config["cluster"]["gpu_model"]
    return str(model) if model and cluster_gpu_requested(config, gpu_gres) else ""


def shard_cpus(config: Mapping, experiment_name: str | None = None) -> int:
    """CPUs per train/query/select job: cluster.cpus_per_job, or cluster.table_cpus_per_job
    for an experiment on a table data set."""
    if experiment_name is not None and dataset_modality(config, experiment_dataset(config, experiment_name)) == "table":
        return int(config["cluster"]["table_cpus_per_job"])
    return int(config["cluster"]["cpus_per_job"])


def torch_threads(threads: int, environ: Mapping[str, str] | None = None) -> int:
    """PyTorch threads of a shard job: Snakemake's ``threads`` for the job (the rule's
    ``cluster.cpus_per_job``, capped by ``--cores``), and never more than the CPUs SLURM
    granted the job (``SLURM_CPUS_PER_TASK``, i.e. the ``cpus_per_task`` resource, also when
    a profile overrides it), so that torch does not oversubscribe the allocation."""
    import os

    environ = os.environ if environ is None else environ
    n = max(1, int(threads))
    granted = str(environ.get("SLURM_CPUS_PER_TASK", "")).strip()
    return min(n, int(granted)) if granted.isdigit() and int(granted) > 0 else n


# --------------------------------------------------------------------------- the prepare job
#
# prepare_dataset decodes images/signals with ``threads`` worker processes and streams them to
# inputs.zarr two blocks at a time (mia_audit.adapters.pipeline); tables are read whole.

#: adapter → modality of its inputs (tests/test_plan.py checks this against the adapters)
ADAPTER_MODALITY = {
    "table": "table",
    "mimic_iv_ed": "table",
    "ptbxl": "signal",
    "chexpert": "image",
    "mimic_cxr": "image",
    "embed": "image",
    "fitzpatrick17k": "image",
    "fairvision": "image",
    "synthetic_images": "image",
}

#: records of each published data set (its size as released; only sizes the prepare job's
#: runtime request, which grows on each retry)
PUBLISHED_RECORDS = {
    "chexpert": 224_316,
    "mimic_cxr": 377_110,
    "embed": 480_000,
    "fitzpatrick17k": 16_577,
    "fairvision": 30_000,
    "ptbxl": 21_799,
    "mimic_iv_ed": 425_087,
    "synthetic_images": 1_000,
}

#: table records per MB of the table file (≈ 100 bytes per CSV row), for tables without a count
TABLE_RECORDS_PER_MB = 10_000
#: memory (bytes) per record of the index and records tables held by the prepare job
INDEX_BYTES_PER_RECORD = 2_000


def dataset_adapter(config: Mapping, dataset_name: str) -> str:
    return str(dataset(config, dataset_name).get("adapter", "table"))


def dataset_modality(config: Mapping, dataset_name: str) -> str:
    """``table``, ``image`` or ``signal``: what the data set's adapter prepares."""
    adapter = dataset_adapter(config, dataset_name)
    try:
        return ADAPTER_MODALITY[adapter]
    except KeyError:
        raise ConfigError(
            f"config key datasets.{dataset_name}.adapter: {adapter!r} is not a known adapter "
            f"(known: {sorted(ADAPTER_MODALITY)})"
        ) from None


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
    tables read from a file, else the data set's published size (:data:`PUBLISHED_RECORDS`)."""
    adapter = dataset_adapter(config, dataset_name)
    if table_mb > 0:
        return max(1, int(table_mb * TABLE_RECORDS_PER_MB))
    return PUBLISHED_RECORDS.get(adapter, 100_000)


def record_bytes(config: Mapping, dataset_name: str) -> int:
    """Bytes of one record's model input: channels × image_size² (uint8 images), leads ×
    sampling rate × 10 s × 4 (float32 signals), 0 for tables (counted by the file size)."""
    spec = dataset(config, dataset_name)
    modality = dataset_modality(config, dataset_name)
    if modality == "image":
        return int(spec.get("channels", 1)) * int(spec.get("image_size", 64)) ** 2
    if modality == "signal":
        opts = spec.get("options") or {}
        return len(opts.get("leads") or range(12)) * int(opts.get("sampling_rate", 100)) * 10 * 4
    return 0


def prepare_mem_mb(config: Mapping, dataset_name: str, table_mb: float, attempt: int) -> int:
    """Memory (MB) of prepare_dataset:

    (mem_mb_base + prepare_mem_mb_per_worker × threads + input_mem_factor × data MB)
    × retry_growth^(attempt − 1), with data MB = the table file's MB + two blocks of decoded
    inputs (2 × block_records × :func:`record_bytes`) + the index (records × 2 KB).
    """
    c = config["cluster"]
    spec = dataset(config, dataset_name)
    records = prepare_records(config, dataset_name, table_mb)
    blocks = 2 * min(int(spec.get("block_records", 1024)), records) * record_bytes(config, dataset_name)
    data_mb = table_mb + (blocks + records * INDEX_BYTES_PER_RECORD) / 1e6
    threads = prepare_threads(config, dataset_name)
    mb = c["mem_mb_base"] + c["prepare_mem_mb_per_worker"] * threads + c["input_mem_factor"] * data_mb
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
