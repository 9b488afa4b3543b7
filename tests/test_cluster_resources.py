"""Scheduler resources of the shard rules as a Snakemake dry run shows them, with the profiles.

The resource formulas themselves are unit-tested by import in tests/test_plan.py; here a dry
run shows the resources and groups each train/query job would request. No cluster needed.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import yaml
from slurm_cluster import run_bounded
from workflow_config import small_config

REPO = Path(__file__).resolve().parents[1]


def run_dry(tmp_path: Path, profile: str, config: dict, *extra: str):
    workdir = tmp_path / "wd"
    workdir.mkdir()
    for name in ("config", "data"):
        (workdir / name).symlink_to(REPO / name)
    (workdir / "test.yaml").write_text(yaml.safe_dump(config))
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "--dry-run",
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "--profile",
        str(REPO / "profiles" / profile),
        *extra,
        "--configfile",
        str(workdir / "test.yaml"),
    ]
    return run_bounded(cmd, 120, env=env, cwd=workdir)


SMALL = small_config(n_models=8, per_job=2)


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
