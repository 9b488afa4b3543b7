"""Where a result came from: the code version, the software versions and the creation time.

Written into the outputs that describe themselves (the cube's attributes) and into the
HTML report (``results/run/software.tsv``), so that a result can be traced to the code and
the environment that made it. Light to import: nothing here imports numpy or torch.
"""

from __future__ import annotations

import datetime
import importlib.metadata as md
import os
import platform
import subprocess
import sys
from pathlib import Path

from mia_audit import __version__

#: distributions whose versions describe a run (the rest of the environment is pinned by
#: envs/requirements.lock; these are the ones that shape the numbers and the figures)
KEY_PACKAGES = (
    "mia-audit",
    "snakemake",
    "snakemake-executor-plugin-slurm",
    "torch",
    "torchvision",
    "opacus",
    "dp-accounting",
    "numpy",
    "pandas",
    "pyarrow",
    "xarray",
    "zarr",
    "scipy",
    "statsmodels",
    "scikit-learn",
    "xgboost-cpu",
    "lightgbm",
    "skops",
    "matplotlib",
    "safetensors",
)


def config_digest(config) -> str:
    """16 hex digits of SHA-256 over the configuration (as JSON, keys sorted): what changes
    exactly when the configuration does."""
    import hashlib
    import json

    text = json.dumps(config, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def source_root() -> Path:
    """The workflow checkout: ``MIA_AUDIT_ROOT`` (set by the Snakefile), else the package's repository."""
    env = os.environ.get("MIA_AUDIT_ROOT")
    return Path(env) if env else Path(__file__).resolve().parents[2]


def git_commit(root: str | os.PathLike | None = None) -> tuple[str | None, bool | None]:
    """``(commit, dirty)`` of the git checkout at ``root``; ``(None, None)`` outside git or without git."""
    root = Path(root) if root is not None else source_root()

    def git(*args: str) -> str | None:
        try:
            res = subprocess.run(
                ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10, check=False
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return res.stdout.strip() if res.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if not commit:
        return None, None
    status = git("status", "--porcelain", "--untracked-files=no")
    return commit, (bool(status) if status is not None else None)


def code_version(root: str | os.PathLike | None = None) -> dict:
    """``{"package": "mia-audit", "version": …, "git_commit": … or None, "git_dirty": … or None}``."""
    commit, dirty = git_commit(root)
    return {"package": "mia-audit", "version": __version__, "git_commit": commit, "git_dirty": dirty}


def code_version_string(root: str | os.PathLike | None = None) -> str:
    """``mia-audit 0.1.0 (git 1a2b3c4d…, uncommitted changes)``, or without the git part outside git."""
    v = code_version(root)
    if not v["git_commit"]:
        return f"mia-audit {v['version']}"
    dirty = ", uncommitted changes" if v["git_dirty"] else ""
    return f"mia-audit {v['version']} (git {v['git_commit']}{dirty})"


def created_at() -> str:
    """The current time in UTC, ISO 8601 to the second (``2026-01-31T12:00:00Z``)."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def software_versions(packages=KEY_PACKAGES) -> list[tuple[str, str]]:
    """``(name, version)`` of Python, the platform, each distribution of ``packages`` (``not
    installed`` where absent) and the workflow's source (:func:`code_version_string`)."""
    rows = [("python", sys.version.split()[0]), ("platform", platform.platform())]
    for name in packages:
        try:
            rows.append((name, md.version(name)))
        except md.PackageNotFoundError:
            rows.append((name, "not installed"))
    rows.append(("mia-audit source", code_version_string()))
    return rows


def accelerator() -> list[tuple[str, str]]:
    """What runs the models: PyTorch's CUDA build and cuDNN, the GPUs this process sees and the
    NVIDIA driver (``nvidia-smi``), or ``none``. Imports torch."""
    import shutil

    import torch

    rows = [("torch CUDA build", torch.version.cuda or "none (CPU build)")]
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    rows.append(("cuDNN", str(cudnn) if cudnn else "none"))
    gpus = (
        [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    )
    rows.append(("GPU", ", ".join(gpus) if gpus else "none"))
    driver = "none"
    if shutil.which("nvidia-smi"):
        try:
            res = subprocess.run(
                ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=20,
                check=False,
            )
            driver = ", ".join(sorted(set(res.stdout.split()))) or "none"
        except (OSError, subprocess.TimeoutExpired):
            pass
    rows.append(("NVIDIA driver", driver))
    return rows


def job_environment() -> dict:
    """The software of the job this runs in: host, the rows of :func:`software_versions` and of
    :func:`accelerator` (written by the train jobs, read by describe_run for the report)."""
    return {"host": platform.node(), "software": dict(software_versions() + accelerator())}
