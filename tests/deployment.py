"""Deploy the workflow as a Snakemake module, the way snakedeploy does, for the module tests.

Not a test module. :func:`source_copy` copies the repository's files that git knows (what a
`git clone` of the commit has: not the virtual environment, results or logs), :func:`deploy`
runs ``snakedeploy deploy-workflow`` on that copy (config/, profiles/ and a module-using
``workflow/Snakefile``), and :func:`install_library` installs the library from it (not
editable), as docs/hpc.md's deployment steps say.

snakedeploy's local-folder provider writes the module's snakefile path relative to the new
Snakefile ("Snakefile", i.e. itself); a deployment from GitHub writes
``github("OWNER/REPO", path="Snakefile", tag=…)``. The deployed Snakefile is therefore given the
source copy's absolute path, everything else as snakedeploy wrote it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def source_copy(dest: Path) -> Path:
    """The repository's tracked and untracked-but-not-ignored files, copied to ``dest``."""
    res = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    for rel in filter(None, res.stdout.split("\0")):
        src = REPO / rel
        if not src.exists():  # deleted in the work tree
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target)  # links (the packaged schema) become files, as in a wheel
    return dest


def deploy(source: Path, dest: Path, name: str = "mia_audit") -> Path:
    """``snakedeploy deploy-workflow SOURCE DEST --branch main --name NAME``; returns the
    deployed workflow/Snakefile (its module pointing at ``source``'s Snakefile)."""
    res = subprocess.run(
        [str(BIN / "snakedeploy"), "deploy-workflow", str(source), str(dest), "--branch", "main", "--name", name],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    snakefile = dest / "workflow" / "Snakefile"
    text = snakefile.read_text()
    assert f"module {name}:" in text and f"use rule * from {name}" in text, text
    text, n = re.subn(r'(snakefile:\s*\n\s*)"Snakefile"', rf'\g<1>"{source / "Snakefile"}"', text)
    assert n == 1, text
    snakefile.write_text(text)
    assert (dest / "config" / "schema.yaml").is_file() and (dest / "profiles" / "default" / "config.yaml").is_file()
    return snakefile


def install_library(source: Path, target: Path) -> Path:
    """``pip install --no-deps --target TARGET SOURCE``: the library from the deployed source, as
    a wheel (not editable); put ``target`` first on PYTHONPATH to use it."""
    res = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target", str(target),
         str(source)],
        capture_output=True,
        text=True,
        timeout=600,
    )  # fmt: skip
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert (target / "mia_audit" / "schema.yaml").is_file()
    return target


def write_config(dest: Path, config: dict) -> None:
    """The deployment's config/config.yaml (the module-using Snakefile reads it)."""
    (dest / "config" / "config.yaml").write_text(yaml.safe_dump(config))
