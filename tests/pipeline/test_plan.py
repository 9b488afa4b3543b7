"""The workflow's plan (workflow/mia_audit/pipeline/plan.py), tested by import.

Resource formulas are recomputed here independently from docs/hpc.md; targets, shard
arithmetic and the config checks are checked on the bundled default and on small variants.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from workflow_config import deep_update, default_config, small_config, validated

from mia_audit import device, errors, settings
from mia_audit.errors import DataError
from mia_audit.pipeline import checks, plan, resources

REPO = Path(__file__).resolve().parents[2]


def cfg_with(overrides: dict) -> dict:
    return validated(deep_update(default_config(), overrides))


def cluster_cfg(cluster: dict) -> dict:
    """200 MLPs in shards of 10, 50 epochs, with the given cluster settings."""
    return validated(deep_update(small_config(n_models=200, per_job=10, epochs=50), {"cluster": cluster}))


def fake_inputs(root: Path, shape=(2000, 25), variable="features", dtype="float32") -> Path:
    path = root / "inputs.zarr"
    (path / variable).mkdir(parents=True)
    (path / variable / "zarr.json").write_text(json.dumps({"shape": list(shape), "data_type": dtype}))
    return path


# --------------------------------------------------------------------------- shards and targets


def test_shards_of_the_default() -> None:
    cfg = validated(default_config())
    per_job, total = cfg["experiments"]["mlp"]["models_per_job"], cfg["datasets"]["pbc"]["n_models"]
    assert plan.n_shards(cfg, "mlp") == total // per_job
    assert plan.shard_models(cfg, "mlp", 1) == [per_job, 2 * per_job]
    assert plan.shard_weights(cfg, "pbc", "mlp")[-1] == (
        f"results/pbc/mlp/models/shard_{total // per_job - 1}.safetensors"
    )
    assert len(plan.shard_queries(cfg, "pbc", "mlp")) == plan.n_shards(cfg, "mlp")


def test_all_targets_of_the_default_cover_every_stage() -> None:
    cfg = validated(default_config())
    targets = plan.all_targets(cfg)
    assert len(targets) == len(set(targets))
    must = [
        "results/pbc/mlp/audit/record_risk.parquet",
        "results/pbc/mlp/audit/aggregate_attacks.tsv",
        "results/pbc/mlp/models/metrics.tsv",
        "results/figures/pbc/mlp/risk_contrast.pdf",
        "results/pbc/mlp/subgroups/age.tsv",
        "results/figures/pbc/mlp/subgroups_sex.png",
        "results/run/config.yaml",
        "results/run/software.tsv",
        "results/meta/meta_summary.tsv",
        "results/figures/pbc/esf_by_experiment.png",
    ]
    assert set(must) <= set(targets)
    assert not [t for t in targets if "dp_" in t or "/public/" in t or "/external/" in t]
    # every figure comes as png and pdf
    pngs = {t[:-4] for t in targets if t.endswith(".png")}
    assert pngs == {t[:-4] for t in targets if t.endswith(".pdf")}


def test_one_figure_job_per_experiment_draws_exactly_its_target_figures() -> None:
    """plot_experiment's figures are every per-experiment figure of the targets, whatever the
    data set's subgroup attributes (none, or different ones in another data set: its own rule)."""
    from mia_audit.plots.registry import EXPERIMENT_FIGURES, experiment_drawings

    base = default_config()
    pbc2 = {k: v for k, v in base["datasets"]["pbc"].items() if k != "subgroups"}
    cfg = validated(
        deep_update(
            base,
            {
                "datasets": {"pbc2": pbc2},
                "experiments": {"mlp_pbc2": {**base["experiments"]["mlp"], "dataset": "pbc2"}},
            },
        )
    )
    rules = plan.experiment_figure_rules(cfg)
    assert rules == [
        ("plot_experiment", ["pbc"], ["mlp", "mlp_wide", "gbm"], ["sex", "stage", "trt", "age"]),
        ("plot_experiment_pbc2", ["pbc2"], ["mlp_pbc2"], []),
    ]
    targets = plan.all_targets(cfg)
    for name, exp in cfg["experiments"].items():
        ds = exp["dataset"]
        drawn = {f for n in plan.experiment_figures(cfg, ds) for f in plan.figure_files(cfg, f"{ds}/{name}/{n}")}
        assert drawn == {t for t in targets if t.startswith(f"results/figures/{ds}/{name}/")}
        assert [d.name for d in experiment_drawings(plan.subgroups(cfg, ds))] == plan.experiment_figures(cfg, ds)
    assert plan.experiment_figures(cfg, "pbc2") == [f.name for f in EXPERIMENT_FIGURES if not f.per_attribute]
    # data sets with the same attributes share the one rule the default has
    assert plan.experiment_figure_rules(validated(default_config())) == [
        ("plot_experiment", ["pbc"], ["mlp", "mlp_wide", "gbm"], ["sex", "stage", "trt", "age"])
    ]


def test_an_experiment_left_out_of_the_subgroup_tests_changes_no_other_subgroup_table() -> None:
    """subgroup_tests: false (the DP preset's comparison experiments): no subgroup tables,
    figures or tests of its own, the run-wide family of the others unchanged, and its figures
    drawn by a rule of their own."""
    base = validated(default_config())
    extra = {**default_config()["experiments"]["mlp"], "subgroup_tests": False}
    extra.pop("selection")
    cfg = validated(deep_update(default_config(), {"experiments": {"quiet": extra}}))
    assert plan.unadjusted_subgroup_tests(cfg) == plan.unadjusted_subgroup_tests(base)
    assert plan.subgroup_tables(cfg) == plan.subgroup_tables(base)
    quiet = [t for t in plan.all_targets(cfg) if "/quiet/subgroups" in t or "quiet/subgroups_" in t]
    assert quiet == ["results/pbc/quiet/subgroups/exposure_model.tsv"]  # its own regression only
    assert plan.experiment_figure_rules(cfg) == [
        ("plot_experiment", ["pbc"], ["mlp", "mlp_wide", "gbm"], ["sex", "stage", "trt", "age"]),
        ("plot_experiment_pbc", ["pbc"], ["quiet"], []),
    ]
    drawn = {f for n in plan.experiment_figures(cfg, "pbc", "quiet") for f in plan.figure_files(cfg, f"pbc/quiet/{n}")}
    assert drawn == {t for t in plan.all_targets(cfg) if t.startswith("results/figures/pbc/quiet/")}


def test_dp_comparison_order_and_targets() -> None:
    mlp = default_config()["experiments"]["mlp"]
    exps = {"base": mlp}
    for name, eps, level in (
        ("e1", 1, "record"),
        ("einf", "inf", "record"),
        ("e10", 10, "record"),
        ("p10", 10, "patient"),
    ):
        exps[name] = {**mlp, "dp": {"epsilon": eps, "level": level}}
    cfg = validated({**default_config(), "experiments": exps})
    order = [d["experiment"] for d in plan.dp_comparison(cfg, "pbc", "record")]
    assert order == ["base", "einf", "e10", "e1"]
    assert [d["experiment"] for d in plan.dp_comparison(cfg, "pbc", "patient")] == ["base", "p10"]
    assert plan.epsilon_label(None) == "no DP" and plan.epsilon_label("inf").startswith("ε = ∞")
    t = plan.dp_targets(cfg)
    assert "results/pbc/dp_utility.tsv" in t and "results/figures/pbc/dp_esf_patient.pdf" in t


def test_access_levels_add_cubes_and_audits() -> None:
    cfg = cfg_with({"datasets": {"pbc": {"access_levels": {"labs": {"known": ["bili", "albumin"]}}}}})
    assert plan.access_cubes(cfg, "pbc", "mlp") == ["results/pbc/mlp/access/labs/cube.zarr"]
    spec = plan.access_query_spec(cfg, "pbc", "mlp")
    assert spec["labs"][1] == "results/pbc/mlp/access/labs/cube_skeleton.zarr"  # the query job reads the skeleton
    assert "results/pbc/mlp/audit/access_labs/patient_risk.parquet" in plan.all_targets(cfg)


def test_convergence_is_a_target_of_every_experiment_and_waves_only_of_adaptive_ones() -> None:
    targets = plan.all_targets(validated(default_config()))
    assert "results/pbc/mlp/audit/convergence.tsv" in targets
    assert "results/figures/pbc/mlp/convergence.pdf" in targets
    assert not [t for t in targets if "adaptive" in t]
    cfg = cfg_with(
        {"datasets": {"pbc": {"adaptive": {"wave_models": 40}}}, "experiments": {"mlp": {"models_per_job": 20}}}
    )
    assert "results/pbc/mlp/audit/adaptive.tsv" in plan.all_targets(cfg)


def test_subgroup_tables_are_every_per_experiment_table_of_the_targets() -> None:
    """adjust_subgroups writes every {dataset}/{experiment}/subgroups/*.tsv target, and a data
    set without subgroups gives its experiments a composition table only."""
    base = default_config()
    bare = {k: v for k, v in base["datasets"]["pbc"].items() if k != "subgroups"}
    cfg = validated(
        {
            **base,
            "datasets": {**base["datasets"], "bare": bare},
            "experiments": {**base["experiments"], "flat": {**base["experiments"]["mlp"], "dataset": "bare"}},
        }
    )
    tables = plan.subgroup_tables(cfg)
    paths = [t["path"] for t in tables]
    assert len(paths) == len(set(paths))
    # every subgroup table but the exposure model (fit_exposure_model writes it, unadjusted)
    targets = {
        t
        for t in plan.all_targets(cfg)
        if re.search(r"/subgroups/[^/]+\.tsv$", t) and not t.endswith("/exposure_model.tsv")
    }
    assert set(paths) == targets
    attrs = sorted(base["datasets"]["pbc"]["subgroups"])
    for exp in base["experiments"]:
        mine = [t for t in tables if t["experiment"] == exp]
        assert {t["dataset"] for t in mine} == {"pbc"}
        assert sorted(t["attribute"] for t in mine if t["attribute"]) == attrs
        assert f"results/pbc/{exp}/subgroups/composition.tsv" in paths
    assert [t for t in tables if t["experiment"] == "flat"] == [
        {
            "dataset": "bare",
            "experiment": "flat",
            "attribute": None,
            "path": "results/bare/flat/subgroups/composition.tsv",
        }
    ]
    # the outputs of the run-wide job do not clash with its input or with the figure rule's wildcard
    assert not set(paths) & set(plan.unadjusted_subgroup_tests(cfg))
    pattern = plan.subgroup_attribute_pattern(cfg)
    assert all(re.fullmatch(pattern, t["attribute"]) for t in tables if t["attribute"])
    assert not re.fullmatch(pattern, "composition")


def test_waves_of_an_adaptive_experiment() -> None:
    cfg = cfg_with(
        {"datasets": {"pbc": {"adaptive": {"wave_models": 40}}}, "experiments": {"mlp": {"models_per_job": 20}}}
    )
    assert plan.adaptive(cfg, "mlp")["min_models"] == 80  # schema default
    assert plan.n_waves(cfg, "mlp") == 5 and plan.wave_shards(cfg, "mlp", 1) == [2, 3]
    assert plan.wave_queries(cfg, "pbc", "mlp", 1) == [f"results/pbc/mlp/query/shard_{k}.json" for k in range(4)]
    assert plan.wave_metrics(cfg, "pbc", "mlp", 1) == [f"results/pbc/mlp/models/shard_{k}_metrics.tsv" for k in (0, 1)]
    assert plan.wave_decisions(cfg, "pbc", "mlp", 2) == [f"results/pbc/mlp/adaptive/wave_{w}.json" for w in (0, 1)]
    go, stop = {"stop": False}, {"stop": True}
    assert plan.next_wave(cfg, "mlp", []) == 0
    assert plan.next_wave(cfg, "mlp", [go, go]) == 2
    assert plan.next_wave(cfg, "mlp", [go, stop]) is None
    assert plan.next_wave(cfg, "mlp", [go] * 5) is None  # the cap
    assert plan.adaptive(validated(default_config()), "mlp") is None


@pytest.mark.parametrize(
    "adaptive, per_job, n_targets, message",
    [
        ({"wave_models": 48}, 8, 2, r"adaptive\.wave_models = 48 must divide datasets\.pbc\.n_models = 200"),
        ({"wave_models": 40}, 50, 2, r"models_per_job = 50 must divide datasets\.pbc\.adaptive\.wave_models = 40"),
        ({"wave_models": 8}, 4, 10, r"audit\.n_targets = 10 leaves fewer than 2 reference models of an adaptive"),
    ],
)
def test_adaptive_checks_name_the_key(adaptive, per_job, n_targets, message) -> None:
    cfg = cfg_with(
        {
            "datasets": {"pbc": {"adaptive": adaptive}},
            "experiments": {"mlp": {"models_per_job": per_job}},
            "audit": {"n_targets": n_targets},
        }
    )
    with pytest.raises(errors.ConfigError, match=message):
        checks.check_config(cfg)


# --------------------------------------------------------------------------- checks


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"experiments": {"mlp": {"models_per_job": 30}}}, r"experiments\.mlp\.models_per_job = 30 must divide"),
        ({"experiments": {"mlp": {"dataset": "nope"}}}, r"experiments\.mlp\.dataset names 'nope'"),
        ({"audit": {"n_targets": 199}}, r"audit\.n_targets = 199 leaves fewer than 2"),
        ({"datasets": {"pbc": {"subgroups": {"composition": {"column": "sex"}}}}}, r"reserved"),
        ({"subgroups": {"tail": "count"}}, r"subgroups\.tail = count needs subgroups\.count"),
        ({"subgroups": {"tail": "threshold"}}, r"subgroups\.tail = threshold needs subgroups\.threshold"),
        ({"subgroups": {"tail": "auto", "auto_min_quantile": 0.995}}, r"subgroups\.auto_min_quantile = 0\.995"),
    ],
)
def test_config_checks_name_the_key(overrides, message) -> None:
    cfg = deep_update(default_config(), overrides)
    with pytest.raises(errors.ConfigError, match=message):
        checks.check_config(cfg)
    assert issubclass(errors.ConfigError, DataError)  # reported as one line by the scripts


def test_dp_needs_group_norm_for_image_models() -> None:
    cfg = deep_update(
        default_config(),
        {"experiments": {"mlp": {"model": {"arch": "wrn-28-2", "norm": "batch"}, "dp": {"epsilon": 1}}}},
    )
    with pytest.raises(errors.ConfigError, match=r"model\.norm must be 'group'"):
        checks.check_config(cfg)


def test_placeholder_in_profile_is_refused() -> None:
    with pytest.raises(errors.ConfigError, match=r"slurm_partition=<partition>.*placeholder"):
        checks.check_profile_placeholders({"slurm_partition": "<partition>"}, {})
    with pytest.raises(errors.ConfigError, match=r"set-resources of rule train_models"):
        checks.check_profile_placeholders({}, {"train_models": {"slurm_account": "'<account>'"}})
    checks.check_profile_placeholders({"slurm_partition": "gpu", "mem_mb": 4000}, None)


# --------------------------------------------------------------------------- cluster resources


def test_memory_and_runtime_grow_with_attempts(tmp_path: Path) -> None:
    cfg = cluster_cfg({"gpu": False, "retry_growth": 2.0, "runtime_min_minutes": 10})
    inputs = fake_inputs(tmp_path)
    input_mb = 2000 * 25 * 4 / 1e6
    for attempt in (1, 2, 3):
        f = 2.0 ** (attempt - 1)
        assert resources.shard_mem_mb(cfg, "mlp", inputs, attempt) == math.ceil((1500 + 1 * 10 + 4 * input_mb) * f)
        train_s = 45 + 10 * 50 * 0.01 * 2000 / 1000  # 55 s (startup_seconds 45): below the 10-minute minimum
        assert resources.train_runtime(cfg, "mlp", inputs, attempt) == math.ceil(max(10, train_s / 60) * f)
        query_s = 45 + 10 * 0.01 * 2000 / 1000
        assert resources.query_runtime(cfg, "mlp", inputs, attempt) == math.ceil(max(10, query_s / 60) * f)
    assert resources.train_runtime(cfg, "mlp", inputs, 4) == 80  # the minimum grows too: 10 min × 2³
    cfg["cluster"]["runtime_min_minutes"] = 1  # the default
    assert resources.train_runtime(cfg, "mlp", inputs, 1) == 1  # 55 s: the 1-minute minimum
    cfg["cluster"]["startup_seconds"] = 60
    assert resources.train_runtime(cfg, "mlp", inputs, 1) == 2  # 70 s: 2 min, above the minimum


def test_memory_counts_stored_image_bytes(tmp_path: Path) -> None:
    cfg = cluster_cfg({"input_mem_factor": 3})
    inputs = fake_inputs(tmp_path, (10_000, 3, 64, 64), variable="images", dtype="uint8")
    image_mb = 10_000 * 3 * 64 * 64 / 1e6  # one byte per value
    assert resources.shard_mem_mb(cfg, "mlp", inputs, 1) == math.ceil(1500 + 1 * 10 + 3 * image_mb)


def test_jobs_are_sized_before_their_inputs_are_prepared(tmp_path: Path) -> None:
    """A job of the setup group (select_model, the cube, the baselines) is sized when the group is
    submitted, before its prepare job has written the inputs: from the data set's estimated
    records (table MB × 10,000), never a FileNotFoundError (Snakemake would leave the job out of
    the group's request)."""
    cfg = cluster_cfg({})
    missing = str(tmp_path / "nowhere.zarr")
    estimated = resources.dataset_records(cfg, "pbc", missing)
    size_mb = Path(cfg["datasets"]["pbc"]["path"]).stat().st_size / 1e6
    assert estimated == int(size_mb * resources.TABLE_RECORDS_PER_MB)
    assert 0.5 < estimated / 1945 < 2  # the bundled cohort has 1,945 records
    features = len(cfg["datasets"]["pbc"]["features"])
    assert resources.shard_mem_mb(cfg, "mlp", missing, 1) == math.ceil(1500 + 10 + 4 * estimated * features * 4 / 1e6)
    assert resources.dataset_records(cfg, "pbc", fake_inputs(tmp_path)) == 2000  # prepared: the real count


def test_light_jobs_ask_for_what_their_data_needs() -> None:
    cfg = cluster_cfg({"retry_growth": 2.0})
    cube = resources.cube_mb(cfg, "mlp", 2000)
    assert cube == 200 * 2000 * 4 / 1e6  # 200 models × 2,000 records × one view × 4 bytes
    assert resources.light_mem_mb(cfg, cube, 1) == math.ceil(1000 + 20 * cube)
    assert resources.light_mem_mb(cfg, cube, 2) == math.ceil(2 * (1000 + 20 * cube))
    assert resources.light_runtime(cfg, cube, 1) == math.ceil((45 + 10 * cube) / 60)
    assert resources.light_runtime(cfg, 0.0, 1) == 1  # whole minutes, at least one
    assert resources.light_runtime(cfg, 600.0, 1) == math.ceil((45 + 6000) / 60)


def test_gpu_request_follows_config() -> None:
    cfg = cluster_cfg({"gpu": True, "gpus_per_job": 2, "gpu_model": "h200"})
    assert (resources.shard_gpus(cfg), resources.shard_gpu_model(cfg)) == (2, "h200")
    cfg = cluster_cfg({"gpu": False, "gpu_model": "h200"})
    assert (resources.shard_gpus(cfg), resources.shard_gpu_model(cfg)) == (0, "")
    cfg = cluster_cfg({"gpu": "auto"})
    assert resources.shard_gpus(cfg, gpu_gres=lambda: ()) == 0  # a cluster without GPUs → CPU fallback
    assert resources.shard_gpus(cfg, gpu_gres=lambda: ("gpu:h200:8",)) == 1


def test_unknown_architecture_cost_is_named(tmp_path: Path) -> None:
    inputs = fake_inputs(tmp_path)
    cfg = cluster_cfg({"seconds_per_model_epoch": {"resnet": 1.0}})
    with pytest.raises(errors.ConfigError, match="seconds_per_model_epoch.*'mlp'"):
        resources.train_runtime(cfg, "mlp", inputs, 1)
    cfg = cluster_cfg({"mem_mb_per_model": {"resnet": 1.0}})
    with pytest.raises(errors.ConfigError, match="mem_mb_per_model.*'mlp'"):
        resources.shard_mem_mb(cfg, "mlp", inputs, 1)


def test_prepare_input_is_the_file_the_adapter_reads() -> None:
    cfg = validated(default_config())
    assert plan.dataset_source(cfg, "pbc") == "data/pbcseq.csv"
    cfg["datasets"]["pbc"]["root"] = "/data/cohorts"  # a relative path is read inside root
    assert plan.dataset_source(cfg, "pbc") == "/data/cohorts/data/pbcseq.csv"
    cfg["datasets"]["pbc"]["path"] = "/abs/table.parquet"
    assert plan.dataset_source(cfg, "pbc") == "/abs/table.parquet"


# --------------------------------------------------------------------------- --config values

SCHEMA = str(Path(__file__).resolve().parents[2] / "config" / "schema.yaml")


def cli_config(*entries: str) -> dict:
    """The default config with ``--config`` entries merged as Snakemake parses them (all strings)."""
    from snakemake.cli import parse_config
    from snakemake.utils import update_config

    cfg = default_config()
    update_config(cfg, parse_config(list(entries)))
    return cfg


def test_command_line_values_get_the_schema_types() -> None:
    raw = cli_config(
        "cluster={gpu: true, cpus_per_job: 8, gpu_model: null, retry_growth: 2}",
        "experiments={mlp: {models_per_job: 25, dp: {epsilon: 10, delta: 1e-5}}}",
        "datasets={pbc: {patient_id: '123', n_models: 100}}",
    )
    assert raw["cluster"]["gpu"] == "true" and raw["cluster"]["cpus_per_job"] == "8"  # what Snakemake hands over
    cfg = validated(checks.coerce_cli_strings(raw, SCHEMA))
    assert cfg["cluster"]["gpu"] is True and resources.cluster_gpu_requested(cfg)
    assert cfg["cluster"]["cpus_per_job"] == 8 and resources.shard_cpus(cfg) == 8
    assert cfg["cluster"]["gpu_model"] is None and cfg["cluster"]["retry_growth"] == 2
    assert cfg["experiments"]["mlp"]["models_per_job"] == 25
    dp = cfg["experiments"]["mlp"]["dp"]
    assert dp["epsilon"] == 10 and isinstance(dp["epsilon"], int) and dp["delta"] == 1e-5
    assert cfg["datasets"]["pbc"]["patient_id"] == "123"  # a string key stays a string
    assert cfg["datasets"]["pbc"]["n_models"] == 100


def test_command_line_words_the_schema_knows_stay_words() -> None:
    cfg = validated(
        checks.coerce_cli_strings(
            cli_config("cluster={gpu: auto}", "experiments={mlp: {dp: {epsilon: inf}}}", "device=cpu"), SCHEMA
        )
    )
    assert cfg["cluster"]["gpu"] == "auto" and cfg["device"] == "cpu"
    assert cfg["experiments"]["mlp"]["dp"]["epsilon"] == "inf"
    bad = checks.coerce_cli_strings(cli_config("cluster={gpu: maybe, cpus_per_job: many}"), SCHEMA)
    assert bad["cluster"] == {"gpu": "maybe", "cpus_per_job": "many"}  # left for the validation to report
    with pytest.raises(Exception, match="maybe|many"):
        validated(bad)


# --------------------------------------------------------------------------- the prepare job and threads


def image_cfg(**cluster) -> dict:
    """The default config plus a CheXpert data set (64 px grey images), with cluster settings."""
    cfg = deep_update(default_config(), {"datasets": {"cx": {"adapter": "chexpert", "root": "/data/chexpert"}}})
    return validated(deep_update(cfg, {"cluster": cluster}))


def test_prepare_threads_follow_the_data_and_the_config() -> None:
    cfg = image_cfg(prepare_cpus=6)
    assert resources.prepare_threads(cfg, "pbc") == 1  # a table is read in one process
    assert resources.prepare_threads(cfg, "cx") == 6  # images: cluster.prepare_cpus
    cfg["datasets"]["cx"]["workers"] = 3
    assert resources.prepare_threads(cfg, "cx") == 3  # the data set's own setting wins
    cfg["datasets"]["cx"]["workers"] = 0
    assert resources.prepare_threads(cfg, "cx") == 1  # 0: decoding in the job's process


def test_prepare_memory_and_runtime_scale_with_the_data_and_grow_on_retry() -> None:
    cfg = image_cfg(prepare_cpus=8, retry_growth=2.0)
    # images: the published CheXpert size, two blocks of 1024 64×64 uint8 images, 8 workers
    records = 224_316
    data_mb = (2 * 1024 * 64 * 64 + records * 2000) / 1e6
    first_mem = math.ceil(1000 + 300 * 8 + 4 * data_mb)
    first_rt = math.ceil(max(1, (45 + records * 0.02 / 8) / 60))
    for attempt in (1, 2, 3):
        f = 2.0 ** (attempt - 1)
        assert resources.prepare_mem_mb(cfg, "cx", 0.0, attempt) == math.ceil((1000 + 300 * 8 + 4 * data_mb) * f)
        assert resources.prepare_runtime(cfg, "cx", 0.0, attempt) == math.ceil(
            max(1, (45 + records * 0.02 / 8) / 60) * f
        )
    assert (
        resources.prepare_runtime(cfg, "cx", 0.0, 3) > first_rt
        and resources.prepare_mem_mb(cfg, "cx", 0.0, 3) > first_mem
    )
    # bigger images need more memory; a bigger table file more memory and time
    cfg["datasets"]["cx"]["image_size"] = 256
    assert resources.prepare_mem_mb(cfg, "cx", 0.0, 1) > first_mem
    small, big = (resources.prepare_mem_mb(cfg, "pbc", mb, 1) for mb in (0.1, 500.0))
    records_mb = 499.9 * resources.TABLE_RECORDS_PER_MB * resources.INDEX_BYTES_PER_RECORD / 1e6
    assert big - small == pytest.approx(4 * (499.9 + records_mb), abs=2)
    assert resources.prepare_runtime(cfg, "pbc", 5000.0, 1) > resources.prepare_runtime(cfg, "pbc", 0.1, 1)


def test_prepare_input_size_is_read_from_the_table_file(tmp_path: Path) -> None:
    table = tmp_path / "t.csv"
    table.write_bytes(b"x" * 2_000_000)
    assert resources.source_mb(str(table)) == pytest.approx(2.0)
    assert resources.source_mb(str(tmp_path)) == 0.0 and resources.source_mb([]) == 0.0  # a data directory; nothing


def test_adapter_registry_matches_the_adapters_and_the_schema() -> None:
    """One registry entry per adapter: its module's ADAPTER has the registered modality, the
    schema's enum lists exactly the registered names, and every published data set has a size."""
    from mia_audit.data.adapters import get_adapter
    from mia_audit.data.adapters.base import ADAPTERS

    enum = settings.schema()["$defs"]["dataset"]["properties"]["adapter"]["enum"]
    assert sorted(enum) == sorted(ADAPTERS)
    for name, info in ADAPTERS.items():
        assert get_adapter(name).modality == info.modality, name
        assert get_adapter(name).name == name
        assert (info.published_records is None) == (name == "table"), name


def test_model_family_registry_matches_the_schema() -> None:
    """One registry entry per model.arch of the schema, each with a training cost for the
    cluster requests, and each family builds a model for inputs of its modality only."""
    from mia_audit.train.families import FAMILIES, MODALITY_SHAPES, build_model

    model = settings.schema()["$defs"]["model"]
    assert model["properties"]["arch"]["enum"] == list(FAMILIES)
    for key in ("seconds_per_model_epoch", "mem_mb_per_model"):
        costs = settings.schema()["properties"]["cluster"]["properties"][key]["default"]
        assert set(FAMILIES) <= set(costs), (key, set(FAMILIES) - set(costs))
    mlp = build_model({"arch": "mlp"}, (5,), 2)
    assert sum(p.numel() for p in mlp.parameters()) == (5 * 128 + 128) + (128 * 128 + 128) + (128 * 2 + 2)
    with pytest.raises(ValueError, match="is a table network"):
        build_model({"arch": "mlp"}, (3, 8, 8), 2)
    assert set(MODALITY_SHAPES) == {f.modality for f in FAMILIES.values()} - {None}  # None: any (a user's network)
    # the estimator families are tables only and name their keys; each has its adapter
    for arch, fam in FAMILIES.items():
        assert fam.kind in ("network", "estimator"), arch
        if fam.kind == "estimator":
            assert fam.modality == "table" and fam.keys, arch
            assert callable(fam.build().logits), arch


def test_figure_registry_matches_the_captions() -> None:
    """Every registered figure has its caption file, and every caption file is used."""
    from mia_audit.plots.registry import EXPERIMENT_FIGURES, OTHER_FIGURES

    report = REPO / "workflow" / "report"
    used = {f.caption for f in EXPERIMENT_FIGURES} | set(OTHER_FIGURES.values())
    assert all((report / c).is_file() for c in used), [c for c in used if not (report / c).is_file()]
    figures_in_rules = {p.name for p in report.glob("*.rst")} & used
    assert figures_in_rules == used


def test_torch_threads_never_exceed_the_slurm_allocation() -> None:
    assert device.torch_threads(4, {}) == 4  # outside SLURM: Snakemake's threads
    assert device.torch_threads(4, {"SLURM_CPUS_PER_TASK": "2"}) == 2  # cpus_per_task lowered by a profile
    assert device.torch_threads(4, {"SLURM_CPUS_PER_TASK": "16"}) == 4
    assert device.torch_threads(0, {"SLURM_CPUS_PER_TASK": ""}) == 1


def test_device_check_passes_where_the_jobs_have_a_gpu() -> None:
    cfg = cfg_with({"device": "cuda"})
    checks.check_device(cfg, "local", cuda_available=lambda: True)
    checks.check_device(deep_update(cfg, {"cluster": {"gpu": True}}), "slurm", gpu_gres=lambda: ())
    checks.check_device(deep_update(cfg, {"cluster": {"gpu": "auto"}}), "slurm", gpu_gres=lambda: ("gpu:a100:4",))
    # auto and cpu never need a GPU, and never import torch for the check
    checks.check_device(cfg_with({"device": "auto"}), "local", cuda_available=lambda: pytest.fail("asked"))


def test_one_validation_report_per_dataset_configuration() -> None:
    cfg = cfg_with({})
    report = plan.validation_report(cfg, "pbc")
    assert re.fullmatch(r"results/pbc/validation/[0-9a-f]{16}\.json", report)
    assert plan.validation_report(cfg_with({}), "pbc") == report  # stable
    assert plan.validation_report(cfg_with({"datasets": {"pbc": {"test_fraction": 0.3}}}), "pbc") != report
    # an experiment's settings do not touch the data set's report
    assert plan.validation_report(cfg_with({"experiments": {"mlp": {"seed": 5}}}), "pbc") == report


def test_the_validation_report_is_keyed_by_the_table_content(tmp_path) -> None:
    """A different table under the same name, with an older modification time, gets another
    report (so it is validated and prepared again); the same content gets the same one."""
    import os

    from mia_audit.data import sources

    table = tmp_path / "cohort.csv"
    original = (REPO / "data" / "pbcseq.csv").read_bytes()
    table.write_bytes(original)
    cfg = cfg_with({"datasets": {"pbc": {"path": str(table)}}})
    first = plan.validation_report(cfg, "pbc")
    changed = original.replace(b"\n1,", b"\n01,", 1)  # the first patient id, written with a zero
    table.write_bytes(changed)
    os.utime(table, ns=(1, 1))  # older than anything
    second = plan.validation_report(cfg, "pbc")
    assert second != first
    table.write_bytes(original)
    os.utime(table, ns=(1, 1))
    assert plan.validation_report(cfg, "pbc") == first
    assert sources.file_fingerprint(table)["sha256"] == hashlib.sha256(original).hexdigest()
    # a missing table keys as missing (the validation job then names it)
    table.unlink()
    assert plan.validation_report(cfg, "pbc") not in (first, second)


def test_large_files_are_fingerprinted_by_sampled_blocks(tmp_path, monkeypatch) -> None:
    from mia_audit.data import sources

    monkeypatch.setattr(sources, "FULL_HASH_BYTES", 1 << 20)
    monkeypatch.setattr(sources, "_EDGE", 1 << 10)
    monkeypatch.setattr(sources, "_BLOCK", 1 << 8)
    sources._fingerprint.cache_clear()
    big = tmp_path / "index.csv"
    data = bytearray(np.random.default_rng(0).integers(0, 256, 3 << 20, dtype=np.uint8).tobytes())
    big.write_bytes(bytes(data))
    fp = sources.file_fingerprint(big)
    assert fp["sampled"] and fp["bytes"] == 3 << 20
    data[0] ^= 1  # the first block is hashed
    big.write_bytes(bytes(data))
    assert sources.file_fingerprint(big)["sha256"] != fp["sha256"]
    sources._fingerprint.cache_clear()


def test_image_adapters_key_their_index_tables(tmp_path) -> None:
    from fixtures_datasets import write_chexpert

    from mia_audit.data import sources

    root = tmp_path / "chexpert"
    write_chexpert(root)
    hashed, listed = sources.source_files({"adapter": "chexpert", "root": str(root)})
    assert {p.name for p in hashed} >= {"train.csv", "valid.csv"} and listed == []
    assert sources.source_files({"adapter": "synthetic_images"}) == ([], [])


def test_one_configuration_per_experiment_folder(tmp_path) -> None:
    """An experiment folder made with other settings stops the run in one line naming the keys
    that differ; the same settings, a data file moved elsewhere or another experiment pass."""
    cfg = cfg_with({"results": str(tmp_path)})
    path = Path(plan.settings_file(cfg, "mlp"))
    path.parent.mkdir(parents=True)
    path.write_text(
        json.dumps({"digest": plan.settings_digest(cfg, "mlp"), "settings": plan.experiment_settings(cfg, "mlp")})
    )
    checks.check_experiment_folders(cfg)
    checks.check_experiment_folders(deep_update(cfg, {"datasets": {"pbc": {"path": "/elsewhere/pbcseq.csv"}}}))
    checks.check_experiment_folders(deep_update(cfg, {"experiments": {"mlp_wide": {"train": {"epochs": 3}}}}))
    other = deep_update(cfg, {"experiments": {"mlp": {"model": {"width": 64}, "train": {"epochs": 100}}}})
    with pytest.raises(errors.ConfigError) as err:
        checks.check_experiment_folders(other)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(f"config key experiments.mlp: {path.parent} holds the outputs")
    assert "experiment.model.width: 16 → 64" in msg and "experiment.train.epochs: 20 → 100" in msg
    assert f"delete {path.parent} and {tmp_path}/figures/pbc/mlp" in msg
    with pytest.raises(errors.ConfigError, match=r"datasets?\.test_fraction: 0\.2 → 0\.3"):
        checks.check_experiment_folders(deep_update(cfg, {"datasets": {"pbc": {"test_fraction": 0.3}}}))
    path.write_text("{not json")
    with pytest.raises(errors.ConfigError, match=r"settings\.json cannot be read \(damaged\)"):
        checks.check_experiment_folders(cfg)
