"""Code style: ruff's linter and formatter (configuration in pyproject.toml) pass on the whole
tree, snakefmt's formatting is applied to the Snakefile and rule files, and the Snakemake rules
pass ``snakemake --lint`` (tests/pipeline/test_envs.py)."""

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


def test_snakefmt_is_applied() -> None:
    """The Snakefile and rule files as snakefmt (pinned in envs/requirements.txt; settings in
    pyproject.toml's [tool.snakefmt]) writes them: `snakefmt .` fixes them."""
    snakefmt = str(Path(sys.executable).with_name("snakefmt"))
    res = subprocess.run([snakefmt, "--check", "."], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, "run `snakefmt .`:\n" + (res.stdout + res.stderr)[-4000:]
    checked = 1 + len(list((REPO / "workflow" / "rules").glob("*.smk")))  # the Snakefile and every rule file
    assert f"{checked} file(s) would be left unchanged" in res.stderr, res.stderr
