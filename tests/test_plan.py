"""The workflow's plan (workflow/mia_audit/plan.py), tested by import.

Resource formulas are recomputed here independently from docs/hpc.md; targets, shard
arithmetic and the config checks are checked on the bundled default and on small variants.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from workflow_config import deep_update, default_config, small_config, validated

from mia_audit import plan
from mia_audit.errors import DataError


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
        "results/meta/meta_summary.tsv",
        "results/figures/pbc/esf_by_experiment.png",
    ]
    assert set(must) <= set(targets)
    assert not [t for t in targets if "dp_" in t or "/public/" in t or "/external/" in t]
    # every figure comes as png and pdf
    pngs = {t[:-4] for t in targets if t.endswith(".png")}
    assert pngs == {t[:-4] for t in targets if t.endswith(".pdf")}


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
    assert spec["labs"][1] == "results/pbc/mlp/access/labs/cube.zarr"
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
    with pytest.raises(plan.ConfigError, match=message):
        plan.check_config(cfg)


# --------------------------------------------------------------------------- checks


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"experiments": {"mlp": {"models_per_job": 30}}}, r"experiments\.mlp\.models_per_job = 30 must divide"),
        ({"experiments": {"mlp": {"dataset": "nope"}}}, r"experiments\.mlp\.dataset names 'nope'"),
        ({"audit": {"n_targets": 199}}, r"audit\.n_targets = 199 leaves fewer than 2"),
        ({"datasets": {"pbc": {"subgroups": {"composition": {"column": "sex"}}}}}, r"reserved"),
    ],
)
def test_config_checks_name_the_key(overrides, message) -> None:
    cfg = deep_update(default_config(), overrides)
    with pytest.raises(plan.ConfigError, match=message):
        plan.check_config(cfg)
    assert issubclass(plan.ConfigError, DataError)  # reported as one line by the scripts


def test_dp_needs_group_norm_for_image_models() -> None:
    cfg = deep_update(
        default_config(),
        {"experiments": {"mlp": {"model": {"arch": "wrn-28-2", "norm": "batch"}, "dp": {"epsilon": 1}}}},
    )
    with pytest.raises(plan.ConfigError, match=r"model\.norm must be 'group'"):
        plan.check_config(cfg)


def test_placeholder_in_profile_is_refused() -> None:
    with pytest.raises(plan.ConfigError, match=r"slurm_partition=<partition>.*placeholder"):
        plan.check_profile_placeholders({"slurm_partition": "<partition>"}, {})
    with pytest.raises(plan.ConfigError, match=r"set-resources of rule train_models"):
        plan.check_profile_placeholders({}, {"train_models": {"slurm_account": "'<account>'"}})
    plan.check_profile_placeholders({"slurm_partition": "gpu", "mem_mb": 4000}, None)


# --------------------------------------------------------------------------- cluster resources


def test_memory_and_runtime_grow_with_attempts(tmp_path: Path) -> None:
    cfg = cluster_cfg({"gpu": False, "retry_growth": 2.0})
    inputs = fake_inputs(tmp_path)
    input_mb = 2000 * 25 * 4 / 1e6
    for attempt in (1, 2, 3):
        f = 2.0 ** (attempt - 1)
        assert plan.shard_mem_mb(cfg, "mlp", inputs, attempt) == math.ceil((2000 + 20 * 10 + 4 * input_mb) * f)
        train_s = (120 + 10 * 50 * 0.05 * 2000 / 1000) * f  # 170 s at attempt 1
        assert plan.train_runtime(cfg, "mlp", inputs, attempt) == max(10, math.ceil(train_s / 60))
        query_s = (120 + 10 * 0.05 * 2000 / 1000) * f
        assert plan.query_runtime(cfg, "mlp", inputs, attempt) == max(10, math.ceil(query_s / 60))
    assert plan.train_runtime(cfg, "mlp", inputs, 4) == math.ceil(170 * 8 / 60)  # 23 min > the minimum


def test_memory_counts_stored_image_bytes(tmp_path: Path) -> None:
    cfg = cluster_cfg({"input_mem_factor": 3})
    inputs = fake_inputs(tmp_path, (10_000, 3, 64, 64), variable="images", dtype="uint8")
    image_mb = 10_000 * 3 * 64 * 64 / 1e6  # one byte per value
    assert plan.shard_mem_mb(cfg, "mlp", inputs, 1) == math.ceil(2000 + 20 * 10 + 3 * image_mb)


def test_missing_inputs_are_file_not_found_for_dry_runs(tmp_path: Path) -> None:
    missing = str(tmp_path / "nowhere.zarr")
    with pytest.raises(FileNotFoundError) as info:
        plan.shard_mem_mb(cluster_cfg({}), "mlp", missing, 1)
    assert info.value.filename == missing  # Snakemake shows <TBD> for exactly this case


def test_gpu_request_follows_config() -> None:
    cfg = cluster_cfg({"gpu": True, "gpus_per_job": 2, "gpu_model": "h200"})
    assert (plan.shard_gpus(cfg), plan.shard_gpu_model(cfg)) == (2, "h200")
    cfg = cluster_cfg({"gpu": False, "gpu_model": "h200"})
    assert (plan.shard_gpus(cfg), plan.shard_gpu_model(cfg)) == (0, "")
    cfg = cluster_cfg({"gpu": "auto"})
    assert plan.shard_gpus(cfg, gpu_gres=lambda: ()) == 0  # a cluster without GPUs → CPU fallback
    assert plan.shard_gpus(cfg, gpu_gres=lambda: ("gpu:h200:8",)) == 1


def test_unknown_architecture_cost_is_named(tmp_path: Path) -> None:
    cfg = cluster_cfg({"seconds_per_model_epoch": {"resnet": 1.0}})
    with pytest.raises(plan.ConfigError, match="seconds_per_model_epoch.*'mlp'"):
        plan.train_runtime(cfg, "mlp", fake_inputs(tmp_path), 1)


def test_prepare_input_is_the_file_the_adapter_reads() -> None:
    cfg = validated(default_config())
    assert plan.dataset_source(cfg, "pbc") == "data/pbcseq.csv"
    cfg["datasets"]["pbc"]["root"] = "/data/cohorts"  # a relative path is read inside root
    assert plan.dataset_source(cfg, "pbc") == "/data/cohorts/data/pbcseq.csv"
    cfg["datasets"]["pbc"]["path"] = "/abs/table.parquet"
    assert plan.dataset_source(cfg, "pbc") == "/abs/table.parquet"
