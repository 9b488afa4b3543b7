"""The library is an installed package with a complete dependency list, and the workflow's
scripts import it as such (no sys.path manipulation)."""

from __future__ import annotations

import ast
import importlib.metadata as md
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SOURCES = sorted((REPO / "workflow" / "mia_audit").rglob("*.py")) + sorted((REPO / "workflow" / "scripts").glob("*.py"))
# imports that are not visible as `import x`: module loaded by name, engine chosen by a string
IMPLICIT = {
    "torchxrayvision": re.compile(r"import_module\(\"torchxrayvision\"\)"),
    "openpyxl": re.compile(r"engine=\"openpyxl\""),
}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared() -> set[str]:
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    return {_norm(re.split(r"[<>=!~;\[ ]", d, maxsplit=1)[0]) for d in deps}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module.split(".")[0])
    return out


def test_every_third_party_import_is_declared() -> None:
    dists = md.packages_distributions()
    needed: dict[str, set[str]] = {}
    for path in SOURCES:
        text = path.read_text()
        for mod in imported_modules(path):
            if mod in sys.stdlib_module_names or mod in ("mia_audit", "__future__"):
                continue
            assert mod in dists, f"{path.relative_to(REPO)} imports {mod!r}, which no installed distribution provides"
            for dist in dists[mod]:
                needed.setdefault(_norm(dist), set()).add(str(path.relative_to(REPO)))
        for dist, pattern in IMPLICIT.items():
            if pattern.search(text):
                needed.setdefault(dist, set()).add(str(path.relative_to(REPO)))
    missing = {d: sorted(f)[:3] for d, f in needed.items() if d not in declared()}
    assert not missing, f"pyproject.toml's dependencies lack {missing}"
    assert {"torch", "pydicom", "wfdb", "torchxrayvision", "openpyxl"} <= set(needed)  # the check sees them


def test_package_is_installed_and_importable_without_path_tricks(tmp_path: Path) -> None:
    assert md.distribution("mia-audit").version
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    res = subprocess.run(
        [sys.executable, "-c", "import mia_audit.pipeline.plan, mia_audit.audit.stats; print('ok')"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr[-2000:]


def test_conda_environments_install_the_package() -> None:
    envs = sorted((REPO / "envs").glob("*.yaml"))
    assert envs
    for env in envs:
        deploy = env.with_suffix(".post-deploy.sh")
        assert deploy.exists(), f"{env.name} has no {deploy.name} to install the library into it"
        text = deploy.read_text()
        assert 'source="${MIA_AUDIT_SOURCE:?' in text and 'pip install --no-deps -e "$source"' in text, deploy.name
    # the Snakefile names its own source (a module's, not the using Snakefile's folder)
    snakefile = (REPO / "Snakefile").read_text()
    assert 'os.environ.setdefault("MIA_AUDIT_SOURCE", MIA_AUDIT_SOURCE)' in snakefile
    assert "workflow.basedir)" not in snakefile and "SOURCE = workflow.current_basedir" in snakefile
