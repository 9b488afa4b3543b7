"""The workflow's plan: pure functions of the validated configuration.

Everything the rules need to know before a job runs lives here, so that it is tested by
import (``tests/pipeline/test_plan.py``) instead of inside the Snakefile: cross-key checks the JSON
schema cannot express, shard arithmetic, the list of final targets, the order of the DP
comparison, and the cluster resources of the shard jobs. ``workflow/rules/common.smk``
only wraps these functions for Snakemake's wildcards.

Every function takes ``config``, the configuration *after* schema validation (defaults
filled in by ``snakemake.utils.validate``), and reads each config key in one place
(:func:`n_models`, :func:`models_per_job`, …). Imports stay light: this module is loaded
each time the Snakefile is parsed.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping

from mia_audit.data.adapters.base import adapter_info
from mia_audit.data.layout import table_path
from mia_audit.data.sources import content_key
from mia_audit.errors import ConfigError, DataError
from mia_audit.plots.registry import experiment_drawings, experiment_table_files

#: file names under {dataset}/{experiment}/subgroups/ that are not attribute tables
RESERVED_ATTRIBUTES = frozenset({"composition", "tests_unadjusted", "exposure_model"})
#: names of config entries that become file or folder names
NAME_PATTERN = r"[A-Za-z0-9_-]+"
#: names of model-selection candidates (config/schema.yaml selection.candidates), folder names
CANDIDATE_PATTERN = r"[A-Za-z0-9_.-]+"


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


def experiment_paths(config: Mapping, dataset_name: str, name: str) -> list[str]:
    """``{results}/{dataset}/{experiment}/{name}`` of every experiment of a data set, in config order."""
    return [f"{exp_dir(config, dataset_name, e)}/{name}" for e in experiments_of(config, dataset_name)]


def datasets_in_use(config: Mapping) -> list[str]:
    """Data sets that at least one experiment trains on, sorted."""
    return sorted({e["dataset"] for e in config["experiments"].values()})


def query_views(config: Mapping, experiment_name: str) -> list[str]:
    """The experiment's query views (``query.views``; default ``[original]``)."""
    return list(experiment(config, experiment_name)["query"]["views"])


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


def dataset_adapter(config: Mapping, dataset_name: str) -> str:
    return str(dataset(config, dataset_name)["adapter"])


def dataset_modality(config: Mapping, dataset_name: str) -> str:
    """``table``, ``image`` or ``signal``: what the data set's adapter prepares (the adapter registry)."""
    return adapter_info(dataset_adapter(config, dataset_name), f"datasets.{dataset_name}.adapter").modality


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
    return dataset_modality(config, dataset_name) == "table" and int(spec["baselines"]["member_sets"]) > 0


def baselines_table(config: Mapping, dataset_name: str) -> list[str]:
    """``[{dataset}/baselines.tsv]`` when the data set has baselines, else []."""
    return [f"{results(config)}/{dataset_name}/baselines.tsv"] if baselines_enabled(config, dataset_name) else []


def audit_tied(config: Mapping, dataset_name: str, experiment_name: str) -> bool:
    """Whether the candidates tied with the chosen one are audited (``selection.audit_tied``:
    ``auto`` = for a table data set): False for an experiment without selection."""
    spec = selection(config, experiment_name)
    if spec is None:
        return False
    flag = spec["audit_tied"]
    if flag == "auto":
        return dataset(config, dataset_name)["adapter"] == "table"
    return bool(flag)


def tied_others(chosen_path) -> list[str]:
    """The candidates tied with the chosen one but itself, from ``selection/chosen.json`` (config order)."""
    with open(chosen_path) as fh:
        chosen = json.load(fh)
    return [c for c in chosen.get("tied", []) if c != chosen["candidate"]]


def candidate_files(config: Mapping, dataset_name: str, experiment_name: str, names, file: str) -> list[str]:
    """``{experiment}/candidates/{candidate}/{file}`` of each candidate in ``names``."""
    base = exp_dir(config, dataset_name, experiment_name)
    return [f"{base}/candidates/{n}/{file}" for n in names]


def baselines_predictions(table: str) -> str:
    """The baselines' test predictions beside their table: ``{dataset}/baselines_predictions.parquet``."""
    return table.replace("baselines.tsv", "baselines_predictions.parquet")


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


def source_key(config: Mapping, dataset_name: str) -> str:
    """SHA-256 of the content of the files the data set is read from (:func:`mia_audit.data.sources.content_key`;
    each file is hashed once per process). A source that cannot be listed keys as its error, so
    that the validation job runs and reports it."""
    try:
        return content_key(dataset(config, dataset_name))
    except DataError as err:
        return f"unreadable: {err}"


def validation_digest(config: Mapping, dataset_name: str) -> str:
    """16 hex digits of the SHA-256 of the data set's config block and of its content
    (:func:`dataset_digest`, :func:`source_key`)."""
    blob = f"{dataset_digest(config, dataset_name)}\n{source_key(config, dataset_name)}"
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def validation_report(config: Mapping, dataset_name: str) -> str:
    """``{results}/{dataset}/validation/{digest}.json``: the checks' report of the data set as
    configured and as its files are now.

    One report per configuration and content (:func:`validation_digest`): a changed table is
    validated and prepared again whatever its modification time (prepare_dataset's input names
    the new report, and Snakemake reruns a job whose inputs changed), and going back to a
    configuration and data that passed finds its report in place, so a failed check of another
    configuration never makes Snakemake prepare the data set again.
    """
    return f"{results(config)}/{dataset_name}/validation/{validation_digest(config, dataset_name)}.json"


def dataset_source(config: Mapping, dataset_name: str) -> str | list:
    """The input of the prepare job: the table file (adapter ``table``), nothing (generated
    data) or the data directory (the other adapters)."""
    spec = dataset(config, dataset_name)
    adapter = spec["adapter"]
    if adapter == "table":
        return str(table_path(spec))
    if adapter == "synthetic_images":  # generated from the config: no input file
        return []
    return spec["root"]


# --------------------------------------------------------------------------- one configuration per experiment folder

#: keys of a data set block that say where the data are or how they are decoded, not what the
#: experiment computes: a changed path or root is followed by the content-keyed validation
SETTINGS_IGNORED_DATASET_KEYS = frozenset({"path", "root", "workers", "block_records"})


def experiment_settings(config: Mapping, name: str) -> dict:
    """What an experiment's outputs are computed from: its block and its data set's block
    (defaults filled in; without the keys of :data:`SETTINGS_IGNORED_DATASET_KEYS`)."""
    exp = experiment(config, name)
    ds = {k: v for k, v in dataset(config, exp["dataset"]).items() if k not in SETTINGS_IGNORED_DATASET_KEYS}
    return json.loads(json.dumps({"experiment": exp, "dataset": ds}, sort_keys=True, default=str))


def settings_digest(config: Mapping, name: str) -> str:
    """16 hex digits of the SHA-256 of :func:`experiment_settings` (canonical JSON)."""
    blob = json.dumps(experiment_settings(config, name), sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def settings_file(config: Mapping, name: str) -> str:
    """``{results}/{dataset}/{experiment}/settings.json``: the settings the folder's outputs were made with."""
    return f"{exp_dir(config, experiment_dataset(config, name), name)}/settings.json"


def experiment_figure_dir(config: Mapping, name: str) -> str:
    return f"{results(config)}/figures/{experiment_dataset(config, name)}/{name}"


def staged_dataset(spec: Mapping, source) -> dict:
    """A data set's config block reading its data where the job was given it: the job's input
    (:func:`dataset_source`: the table file, or the data directory), which a storage plugin may
    have staged elsewhere than the configured path (no shared file system)."""
    spec = dict(spec)
    if not source:  # generated data: no input
        return spec
    source = str(source if isinstance(source, str) else source[0])
    if spec["adapter"] == "table":
        spec["path"] = source
        spec.pop("root", None)  # the input is the resolved file
    else:
        spec["root"] = source
    return spec


# --------------------------------------------------------------------------- command-line values


# --------------------------------------------------------------------------- checks


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


def access_cube(config: Mapping, dataset_name: str, experiment_name: str, level: str, skeleton: bool = False) -> str:
    """A partial-access level's cube (assembled by assemble_access_cube), or its skeleton."""
    name = "cube_skeleton.zarr" if skeleton else "cube.zarr"
    return f"{exp_dir(config, dataset_name, experiment_name)}/access/{level}/{name}"


def access_cubes(config: Mapping, dataset_name: str, experiment_name: str, skeleton: bool = False) -> list[str]:
    """The partial-access cubes of an experiment (with ``skeleton``: their skeletons)."""
    return [
        access_cube(config, dataset_name, experiment_name, lv, skeleton) for lv in access_levels(config, dataset_name)
    ]


def access_query_spec(config: Mapping, dataset_name: str, experiment_name: str) -> dict:
    """{level: (level spec, cube skeleton path)} for the query job."""
    return {
        lv: (dict(spec), access_cube(config, dataset_name, experiment_name, lv, skeleton=True))
        for lv, spec in access_levels(config, dataset_name).items()
    }


def figure_files(config: Mapping, stem: str) -> list[str]:
    """``results/figures/{stem}.png`` and ``.pdf``."""
    return [f"{results(config)}/figures/{stem}.{ext}" for ext in ("png", "pdf")]


def subgroup_tested(config: Mapping, experiment_name: str) -> bool:
    """Whether the experiment's tails are tested for subgroup composition (``subgroup_tests``,
    default true): an experiment left out has no tail tables or figures and no test in the
    run-wide adjustment, so adding it to a run changes no other experiment's subgroup table
    (its exposure model, a regression of its own patients, is fitted all the same)."""
    from mia_audit import settings

    return bool(settings.value(experiment(config, experiment_name), "subgroup_tests", "experiment"))


def experiment_subgroups(config: Mapping, dataset_name: str, experiment_name: str) -> dict:
    """The subgroup attributes an experiment is tested for: its data set's, or none when
    :func:`subgroup_tested` is false."""
    return subgroups(config, dataset_name) if subgroup_tested(config, experiment_name) else {}


def subgroup_experiment_targets(config: Mapping, dataset_name: str, experiment_name: str) -> list[str]:
    base = exp_dir(config, dataset_name, experiment_name)
    fig = f"{dataset_name}/{experiment_name}"
    # the exposure model of every experiment (one regression of its own); the tail tests only
    # of those in the run-wide family (subgroup_tested)
    out = [f"{base}/subgroups/exposure_model.tsv", *figure_files(config, f"{fig}/exposure_model")]
    if subgroup_tested(config, experiment_name):
        out.append(f"{base}/subgroups/composition.tsv")
    for attr in experiment_subgroups(config, dataset_name, experiment_name):
        out += [f"{base}/subgroups/{attr}.tsv", *figure_files(config, f"{fig}/subgroups_{attr}")]
    for name in ("record_auc", "se"):
        out += figure_files(config, f"{fig}/{name}")
    return out


#: figures of every experiment (rule plot_experiment), besides one ``subgroups_{attribute}`` per
#: subgroup attribute of its data set, drawn after ``patient_intervals``
def figure_names(attributes) -> list[str]:
    """Names of an experiment's figures given its data set's subgroup attributes (the figure registry)."""
    return [d.name for d in experiment_drawings(attributes)]


def experiment_figure_captions(attributes) -> dict[str, str]:
    """Figure name → its caption file under workflow/report/ (the figure registry)."""
    return {d.name: d.figure.caption for d in experiment_drawings(attributes)}


def experiment_figure_inputs(config: Mapping, attributes) -> dict[str, str]:
    """Table key → path pattern (``{dataset}``/``{experiment}`` wildcards) of every table the
    experiment's figures read (the figure registry)."""
    base = f"{results(config)}/{{dataset}}/{{experiment}}"
    return {k: f"{base}/{path}" for k, (path, _) in experiment_table_files(attributes).items()}


def experiment_figures(config: Mapping, dataset_name: str, experiment_name: str | None = None) -> list[str]:
    """Names of the figures of each experiment of the data set (or of one experiment, which may
    be left out of the subgroup tests), under ``figures/{dataset}/{experiment}/`` (one job, rule
    plot_experiment, draws them all)."""
    if experiment_name is not None:
        return figure_names(experiment_subgroups(config, dataset_name, experiment_name))
    return figure_names(subgroups(config, dataset_name))


def experiment_figure_rules(config: Mapping) -> list[tuple[str, list[str], list[str], list[str]]]:
    """``(rule name, data sets, experiments, attributes)`` of the rules that draw the experiment
    figures.

    A rule's outputs cannot depend on its wildcards, and each experiment is tested for its data
    set's subgroup attributes or for none (:func:`experiment_subgroups`; one figure each), so
    experiments with the same attributes share a rule: ``plot_experiment`` for the first
    experiment's group (all of them in the default), ``plot_experiment_{first data set of the
    group}`` for each other group (``_subgroups_off`` added for a group without attributes whose
    data set already named one). An experiment belongs to one data set, so the rules' wildcard
    constraints (data sets, experiments) never match the same figure twice.
    """
    by_attrs: dict[tuple[str, ...], tuple[list[str], list[str]]] = {}
    for ds in datasets_in_use(config):
        for name in experiments_of(config, ds):
            names, exps = by_attrs.setdefault(tuple(experiment_subgroups(config, ds, name)), ([], []))
            if ds not in names:
                names.append(ds)
            exps.append(name)
    out, taken = [], set()
    for i, (attrs, (names, exps)) in enumerate(by_attrs.items()):
        rule = "plot_experiment" if i == 0 else f"plot_experiment_{names[0]}".replace("-", "_")
        if rule in taken:
            rule += "_subgroups_off"
        taken.add(rule)
        out.append((rule, names, exps, list(attrs)))
    return out


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
        f"{base}/audit/headline.tsv",
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
        if subgroup_tested(config, name)
    ]


def subgroup_tables(config: Mapping) -> list[dict]:
    """Every experiment's tables cut from the run-wide adjusted test table (job ``adjust_subgroups``).

    One entry ``{dataset, experiment, attribute, path}`` per table, experiment by experiment in
    config order: ``subgroups/composition.tsv`` (``attribute`` None), then ``subgroups/{attribute}.tsv``
    for each attribute of the experiment's data set (none for a data set without subgroups).
    """
    out = []
    for name, exp in config["experiments"].items():
        if not subgroup_tested(config, name):
            continue
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
    return exp["dp"]["level"]


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


def dp_canary_experiments(config: Mapping, dataset_name: str) -> list[dict]:
    """The DP experiments of a data set with canaries (``dp.canaries``), in the order of
    :func:`dp_comparison`, each entry with its ``shards``."""
    return [
        {**d, "shards": n_shards(config, d["experiment"])}
        for d in dp_comparison(config, dataset_name)
        if d["level"] != "none" and experiment(config, d["experiment"])["dp"].get("canaries") is not None
    ]


def dp_targets(config: Mapping) -> list[str]:
    """Per data set with DP experiments: dp_utility.tsv and the dp_esf_{level} figures; with
    canaries also dp_empirical.tsv and the dp_bounds figure."""
    out = []
    dp_exps = [e for e in config["experiments"].values() if e.get("dp")]
    for ds in sorted({e["dataset"] for e in dp_exps}):
        levels = sorted({dp_level(e) for e in dp_exps if e["dataset"] == ds})
        out.append(f"{results(config)}/{ds}/dp_utility.tsv")
        for lv in levels:
            out += figure_files(config, f"{ds}/dp_esf_{lv}")
        if dp_canary_experiments(config, ds):
            out += [f"{results(config)}/{ds}/dp_empirical.tsv", *figure_files(config, f"{ds}/dp_bounds")]
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


# --------------------------------------------------------------------------- the prepare job
#
# prepare_dataset decodes images/signals with ``threads`` worker processes and streams them to
# inputs.zarr two blocks at a time (mia_audit.data.prepare); tables are read whole.
