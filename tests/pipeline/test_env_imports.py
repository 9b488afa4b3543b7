"""Each rule's conda environment holds everything its script imports.

For every rule with a script, the modules the script can reach are collected statically (its
imports and, through the library, every import of every library module it reaches, also those
inside functions), and their third-party distributions must be in the rule's environment: the
conda part and the pip section of envs/<env>.yaml, the locked set. Then every such module is
really imported in a fresh interpreter that refuses any distribution outside that set (an import
hook that makes every other distribution look uninstalled), so a package's own dependencies
must be in the set too (the slow tier). Snakemake itself is exempt: its
script preamble puts the running Snakemake's packages on the job's path, by design.
"""

from __future__ import annotations

import ast
import importlib.metadata as md
import re
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
LIB = REPO / "workflow" / "mia_audit"
#: provided by the Snakemake that runs the job (its script preamble), not by the environment
LAUNCHER = {"snakemake"}
#: conda packages → the distributions they provide, and the PyPI dependencies a conda-forge
#: build of PyTorch brings itself (the lock's dependencies of torch, less its CUDA libraries)
CONDA_PROVIDES = {"pytorch": ["torch"], "torchvision": ["torchvision"], "python": [], "pip": []}
#: imports not visible as `import x` (test_packaging.py has the same list)
IMPLICIT = {
    "torchxrayvision": re.compile(r"import_module\(\"torchxrayvision\"\)"),
    "openpyxl": re.compile(r"engine=\"openpyxl\""),
}


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def lock_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("envs_lock", REPO / "envs" / "lock.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@cache
def env_distributions(env: str) -> frozenset[str]:
    """The distributions of envs/<env>.yaml: its pip section, and its conda packages with what
    they bring (for conda's PyTorch: the lock's closure of torch/torchvision without CUDA)."""
    spec = yaml.safe_load((REPO / "envs" / f"{env}.yaml").read_text())
    lock = lock_module()
    locked = lock.parse_lock((REPO / "envs" / "requirements.lock").read_text())
    out: set[str] = set()
    for dep in spec["dependencies"]:
        if isinstance(dep, dict):
            out |= {norm(line.split("==")[0]) for line in dep["pip"]}
            continue
        name = str(dep).split("=")[0]
        provided = CONDA_PROVIDES[name]
        out |= {
            p
            for p in lock.closure(locked, provided)
            if not p.startswith(("nvidia-", "cuda-")) and p != "triton"  # the CPU build: no CUDA
        }
    return frozenset(out | {"mia-audit"})


def module_file(name: str) -> Path | None:
    """The source file of a library module (mia_audit.x.y), or None."""
    parts = name.split(".")
    if parts[0] != "mia_audit":
        return None
    base = LIB.parent.joinpath(*parts)
    for cand in (base.with_suffix(".py"), base / "__init__.py"):
        if cand.is_file():
            return cand
    return None


def imports_of(path: Path) -> tuple[set[str], set[str]]:
    """(library modules, third-party top-level modules) that a file imports anywhere in it."""
    lib, third = set(), set()
    text = path.read_text()
    for node in ast.walk(ast.parse(text)):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            top = name.split(".")[0]
            if top == "mia_audit":
                # the module and its packages (their __init__ runs on import)
                parts = name.split(".")
                lib |= {".".join(parts[:i]) for i in range(1, len(parts) + 1) if module_file(".".join(parts[:i]))}
            elif top not in sys.stdlib_module_names and top != "__future__":
                third.add(top)
    third |= {mod for mod, pattern in IMPLICIT.items() if pattern.search(text)}
    return lib, third


@cache
def reached_modules(script: Path) -> frozenset[str]:
    """Third-party top-level modules a script can import, itself or through the library."""
    todo_lib, third = imports_of(script)
    seen: set[str] = set()
    while todo_lib:
        name = todo_lib.pop()
        if name in seen:
            continue
        seen.add(name)
        lib, more = imports_of(module_file(name))
        third |= more
        todo_lib |= lib - seen
    return frozenset(third)


def rules_with_scripts() -> dict[str, tuple[Path, str]]:
    """rule → (its script, its environment name) from the rule files."""
    out = {}
    for path in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        text = path.read_text()
        for m in re.finditer(
            r"^\s*(?:rule|checkpoint) (\w+):(.*?)(?=^\s*(?:rule|checkpoint|localrules)\b|\Z)", text, re.M | re.S
        ):
            script = re.search(r'script:\s*\n?\s*"\.\./scripts/(\w+\.py)"', m.group(2))
            env = re.search(r'conda:\s*\n?\s*"\.\./\.\./envs/(\w+)\.yaml"', m.group(2))
            if script:
                assert env, f"rule {m.group(1)} has a script but no envs/*.yaml"
                out[m.group(1)] = (REPO / "workflow" / "scripts" / script.group(1), env.group(1))
    # rules defined in a loop (`rule:` with `name:`) take their name from plan; their script tells
    for path in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        for m in re.finditer(
            r"^\s+rule:\n(.*?)script:\s*\n\s*\"\.\./scripts/(\w+\.py)\"", path.read_text(), re.M | re.S
        ):
            env = re.search(r'conda:\s*\n\s*"\.\./\.\./envs/(\w+)\.yaml"', m.group(1))
            out.setdefault(m.group(2).removesuffix(".py"), (REPO / "workflow" / "scripts" / m.group(2), env.group(1)))
    return out


@cache
def installed_distributions() -> dict[str, list[str]]:
    return md.packages_distributions()


def distributions_of(module: str) -> set[str]:
    return {norm(d) for d in installed_distributions().get(module, [])}


def test_every_rule_script_needs_only_what_its_environment_holds() -> None:
    rules = rules_with_scripts()
    assert {"train_models", "query_models", "audit_records", "tabulate_dp_utility", "plot_experiment"} <= set(rules)
    missing = {}
    for rule, (script, env) in sorted(rules.items()):
        have = env_distributions(env)
        for module in sorted(reached_modules(script) - LAUNCHER):
            dists = distributions_of(module)
            assert dists, f"{script.name} imports {module!r}, which no installed distribution provides"
            if not dists & have:
                missing.setdefault(f"{rule} ({env}.yaml)", []).append(f"{module} ({', '.join(sorted(dists))})")
    assert not missing, f"rules whose environment lacks what their script imports: {missing}"


BLOCKER = r"""
import importlib.metadata as md, re, sys
ALLOWED = set(sys.argv[1].split(","))
EXEMPT = set(sys.argv[2].split(","))
DISTS = {m: {re.sub(r"[-_.]+", "-", d).lower() for d in ds} for m, ds in md.packages_distributions().items()}

def hidden(name):
    top = name.split(".")[0]
    dists = DISTS.get(top)
    return bool(dists) and top not in EXEMPT and not dists & ALLOWED

class Hide:
    # every finder answers as if a distribution outside the environment were not installed
    def __init__(self, finder):
        self.finder = finder
    def find_spec(self, name, path=None, target=None):
        if hidden(name) or not hasattr(self.finder, "find_spec"):
            return None
        return self.finder.find_spec(name, path, target)
    def __getattr__(self, attr):
        return getattr(self.finder, attr)

sys.meta_path[:] = [Hide(f) for f in sys.meta_path]
failed = []
for module in sys.argv[3].split(","):
    try:
        __import__(module)
    except Exception as err:
        failed.append(f"{module}: {type(err).__name__}: {err}")
print("\n".join(failed))
sys.exit(1 if failed else 0)
"""


@pytest.mark.slow  # imports PyTorch and the rest twice (~30 s of CPU)
@pytest.mark.parametrize("env", ["analysis", "train"])
def test_each_environment_imports_what_its_rules_import(env: str) -> None:
    """The modules every rule of the environment imports, imported for real with only the
    environment's distributions importable (and the library itself)."""
    modules = set()
    for script, rule_env in rules_with_scripts().values():
        if rule_env == env:
            modules |= reached_modules(script) - LAUNCHER
    modules |= {"mia_audit"}
    res = subprocess.run(
        [
            sys.executable,
            "-c",
            BLOCKER,
            ",".join(sorted(env_distributions(env))),
            ",".join(LAUNCHER),
            ",".join(sorted(modules)),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, f"envs/{env}.yaml cannot import:\n{res.stdout}{res.stderr[-3000:]}"


def test_the_hook_refuses_what_an_environment_lacks() -> None:
    """The import hook itself: with only NumPy allowed, Opacus is not importable."""
    res = subprocess.run(
        [sys.executable, "-c", BLOCKER, "numpy", "snakemake", "opacus"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 1 and "No module named 'opacus'" in res.stdout, res.stdout + res.stderr
