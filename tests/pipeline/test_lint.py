"""Code style: ruff's linter and formatter (configuration in pyproject.toml) pass on the whole
tree, and the Snakemake rules pass ``snakemake --lint`` (tests/pipeline/test_envs.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RUFF = str(Path(sys.executable).with_name("ruff"))


def test_ruff_check_passes() -> None:
    res = subprocess.run(
        [RUFF, "check", "--output-format", "concise", "."], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]


def test_ruff_format_is_applied() -> None:
    res = subprocess.run([RUFF, "format", "--check", "."], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, "run `ruff format .`:\n" + res.stdout[-4000:]
