"""Scheduler resources of the shard rules (workflow/rules/common.smk) and the profiles.

The helpers are checked two ways: evaluated directly for given attempts (the formulas in
docs/hpc.md, computed here independently), and through a Snakemake dry run, which shows
the resources each train/query job would request. No cluster needed.
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from workflow_config import small_config  # noqa: E402
from slurm_cluster import run_bounded  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
MARKER = "# Cluster resources of the shard rules"
END_MARKER = "# End of the cluster resources."


def load_helpers(cluster: dict, tmp_path: Path, workflow=None) -> dict:
    """The cluster section of common.smk, executed with a validated-looking config."""
    text = (REPO / "workflow" / "rules" / "common.smk").read_text()
    start = text.rfind("\n", 0, text.index(MARKER))
    end = text.index(END_MARKER, start)
    schema = yaml.safe_load((REPO / "config" / "schema.yaml").read_text())
    props = schema["properties"]["cluster"]["properties"]
    full = {k: v["default"] for k, v in props.items()}
    full.update(cluster)
    config = {
        "cluster": full,
        "experiments": {"mlp": {"dataset": "pbc", "model": {"arch": "mlp"}, "train": {"epochs": 50},
                                "models_per_job": 10}},
    }
    rs = SimpleNamespace(default_resources={}, overwrite_resources={})
    ns = {"config": config, "workflow": workflow or SimpleNamespace(resource_settings=rs)}
    exec(compile(text[start:end], "common.smk", "exec"), ns)
    return ns


def fake_inputs(root: Path, shape=(2000, 25), variable="features", dtype="float32") -> Path:
    path = root / "inputs.zarr"
    (path / variable).mkdir(parents=True)
    (path / variable / "zarr.json").write_text(json.dumps({"shape": list(shape), "data_type": dtype}))
    return path


def test_memory_and_runtime_grow_with_attempts(tmp_path: Path) -> None:
    h = load_helpers({"gpu": False, "retry_growth": 2.0}, tmp_path)
    inputs = fake_inputs(tmp_path)
    wc = SimpleNamespace(dataset="pbc", experiment="mlp", shard="0")
    inp = SimpleNamespace(inputs=str(inputs))
    input_mb = 2000 * 25 * 4 / 1e6
    for attempt in (1, 2, 3):
        f = 2.0 ** (attempt - 1)
        assert h["shard_mem_mb"](wc, inp, attempt) == math.ceil((2000 + 20 * 10 + 4 * input_mb) * f)
        train_s = (120 + 10 * 50 * 0.05 * 2000 / 1000) * f  # 170 s at attempt 1
        assert h["train_runtime"](wc, inp, attempt) == max(10, math.ceil(train_s / 60))
        query_s = (120 + 10 * 0.05 * 2000 / 1000) * f
        assert h["query_runtime"](wc, inp, attempt) == max(10, math.ceil(query_s / 60))
    assert h["train_runtime"](wc, inp, 4) == math.ceil(170 * 8 / 60)  # 23 min > the minimum


def test_memory_counts_stored_image_bytes(tmp_path: Path) -> None:
    h = load_helpers({"input_mem_factor": 3}, tmp_path)
    inputs = fake_inputs(tmp_path, (10_000, 3, 64, 64), variable="images", dtype="uint8")
    wc = SimpleNamespace(dataset="pbc", experiment="mlp", shard="0")
    image_mb = 10_000 * 3 * 64 * 64 / 1e6  # one byte per value
    assert h["shard_mem_mb"](wc, SimpleNamespace(inputs=str(inputs)), 1) == math.ceil(2000 + 20 * 10 + 3 * image_mb)


def test_missing_inputs_are_file_not_found_for_dry_runs(tmp_path: Path) -> None:
    h = load_helpers({}, tmp_path)
    wc = SimpleNamespace(dataset="pbc", experiment="mlp", shard="0")
    missing = str(tmp_path / "nowhere.zarr")
    with pytest.raises(FileNotFoundError) as info:
        h["shard_mem_mb"](wc, SimpleNamespace(inputs=missing), 1)
    assert info.value.filename == missing  # Snakemake shows <TBD> for exactly this case


def test_gpu_request_follows_config(tmp_path: Path) -> None:
    wc = SimpleNamespace(experiment="mlp")
    h = load_helpers({"gpu": True, "gpus_per_job": 2, "gpu_model": "h200"}, tmp_path)
    assert (h["shard_gpus"](wc), h["shard_gpu_model"](wc)) == (2, "h200")
    h = load_helpers({"gpu": False, "gpu_model": "h200"}, tmp_path)
    assert (h["shard_gpus"](wc), h["shard_gpu_model"](wc)) == (0, "")
    h = load_helpers({"gpu": "auto"}, tmp_path)
    h["slurm_gpu_gres"] = lambda: []  # a cluster without GPUs → CPU fallback
    assert h["shard_gpus"](wc) == 0
    h["slurm_gpu_gres"] = lambda: ["gpu:h200:8"]
    assert h["shard_gpus"](wc) == 1


def test_unknown_architecture_cost_is_named(tmp_path: Path) -> None:
    h = load_helpers({"seconds_per_model_epoch": {"resnet": 1.0}}, tmp_path)
    wc = SimpleNamespace(dataset="pbc", experiment="mlp", shard="0")
    with pytest.raises(ValueError, match="seconds_per_model_epoch.*'mlp'"):
        h["train_runtime"](wc, SimpleNamespace(inputs=str(fake_inputs(tmp_path))), 1)


def test_placeholder_in_profile_is_refused(tmp_path: Path) -> None:
    rs = SimpleNamespace(default_resources={"slurm_partition": "<partition>"}, overwrite_resources={})
    with pytest.raises(ValueError, match=r"slurm_partition=<partition>.*placeholder"):
        load_helpers({}, tmp_path, workflow=SimpleNamespace(resource_settings=rs))


def run_dry(tmp_path: Path, profile: str, config: dict, *extra: str):
    workdir = tmp_path / "wd"
    workdir.mkdir()
    for name in ("config", "data"):
        (workdir / name).symlink_to(REPO / name)
    (workdir / "test.yaml").write_text(yaml.safe_dump(config))
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    cmd = [sys.executable, "-m", "snakemake", "--dry-run", "--snakefile", str(REPO / "Snakefile"),
           "--directory", str(workdir), "--profile", str(REPO / "profiles" / profile), *extra,
           "--configfile", str(workdir / "test.yaml")]
    return run_bounded(cmd, 120, env=env, cwd=workdir)


SMALL = small_config({"results": "results", "datasets": {"pbc": {"n_models": 8}},
                      "experiments": {"mlp": {"dataset": "pbc", "model": {"arch": "mlp"}, "models_per_job": 2}},
                      "audit": {"n_targets": 2}})


def test_dry_run_shows_gpu_request_and_groups(tmp_path: Path) -> None:
    cfg = dict(SMALL, cluster={"gpu": True, "gpu_model": "h200", "cpus_per_job": 3})
    res = run_dry(tmp_path, "slurm-local", cfg, "--group-components", "shards=3")
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-4000:]
    train = [b for b in out.split("rule train_models:")[1:]]
    assert len(train) == 4
    for block in train:
        res_line = next(line for line in block.splitlines() if "resources:" in line)
        assert "gpu=1" in res_line and "gpu_model=h200" in res_line, res_line
    # 4 shards, 3 per SLURM job → 2 shard groups; plus the setup group.
    assert out.count("Group job shards") == 2 and out.count("Group job setup") == 1, out[-3000:]


def test_template_profile_placeholder_stops_the_run(tmp_path: Path) -> None:
    res = run_dry(tmp_path, "slurm", SMALL)
    out = res.stdout + res.stderr
    assert res.returncode != 0
    assert "slurm_partition=<partition>" in out and "template placeholder" in out, out[-3000:]
