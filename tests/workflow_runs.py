"""Helpers for tests that run the workflow with snakemake in a scratch directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml
from workflow_config import deep_update, default_config

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))


def small_config(results: Path, n_models: int = 8, per_job: int = 4, epochs: int = 3, **train) -> dict:
    """The bundled cohort with few, small, briefly trained models."""
    path = ROOT / default_config()["datasets"]["pbc"]["path"]
    return deep_update(default_config(), {
        "results": str(results),
        "datasets": {"pbc": {"path": str(path), "n_models": n_models}},
        "experiments": {"mlp": {"model": {"width": 16}, "train": {"epochs": epochs, **train},
                                "models_per_job": per_job}},
        "audit": {"n_targets": 2},
    })


def run_snakemake(workdir: Path, config: dict, *args: str, timeout: int = 600, check: bool = True):
    """Run the workflow in ``workdir`` with ``config`` as its only config file."""
    workdir.mkdir(parents=True, exist_ok=True)
    cfg_path = workdir / "config.yaml"
    cfg_path.write_text(yaml.safe_dump(config))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    cmd = [SNAKEMAKE, "--snakefile", str(ROOT / "Snakefile"), "--directory", str(workdir),
           "--configfile", str(cfg_path), "--cores", "2", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}")
    return proc
