"""The library reads as the pipeline: no module imports from a later stage.

Stages in pipeline order (workflow/mia_audit/__init__.py): a module may import from the
foundations shared by all, from its own stage and from earlier ones, never from a later one —
lazy imports inside functions included. So an adapter never imports the planner, and the
audit never imports the figures.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

LIB = Path(__file__).resolve().parents[2] / "workflow" / "mia_audit"

FOUNDATIONS = {"__init__", "errors", "settings", "integrity", "provenance", "device", "storage", "roc"}
STAGES = ["data", "sampling", "train", "query", "audit", "analysis", "dp", "external", "plots", "pipeline"]


def stage_of(module: str) -> int:
    """-1 for the foundations, else the stage's position in :data:`STAGES`."""
    top = module.split(".")[1] if module.count(".") else "__init__"
    if top in FOUNDATIONS:
        return -1
    if top not in STAGES:
        raise AssertionError(f"mia_audit.{top} is neither a stage subpackage nor a foundation module")
    return STAGES.index(top)


def module_name(path: Path) -> str:
    rel = path.relative_to(LIB.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every mia_audit import in the file, at any depth."""
    tree = ast.parse(path.read_text())
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}:{node.lineno}: relative import (the library imports absolutely)"
            if node.module == "mia_audit":
                # a submodule, or an attribute of the package itself (``__version__``)
                out += [
                    (
                        node.lineno,
                        f"mia_audit.{a.name}"
                        if (LIB / a.name).is_dir() or (LIB / f"{a.name}.py").exists()
                        else "mia_audit",
                    )
                    for a in node.names
                ]
            elif node.module and node.module.startswith("mia_audit."):
                out.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.startswith("mia_audit.")]
    return out


MODULES = sorted(p for p in LIB.rglob("*.py"))


def test_every_module_belongs_to_a_stage_or_the_foundations():
    tops = {module_name(p).split(".")[1] for p in MODULES if module_name(p) != "mia_audit"}
    assert tops <= FOUNDATIONS | set(STAGES), tops - FOUNDATIONS - set(STAGES)
    assert set(STAGES) <= tops


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.relative_to(LIB).as_posix())
def test_no_module_imports_from_a_later_stage(path):
    here = module_name(path)
    rank = stage_of(here) if here != "mia_audit" else -1
    upward = [
        f"{path.relative_to(LIB.parent)}:{line} imports {mod}"
        for line, mod in imported_modules(path)
        if mod != "mia_audit" and stage_of(mod) > rank
    ]
    assert not upward, "; ".join(upward)


def test_the_layer_check_catches_an_upward_import(tmp_path):
    """The check itself: an adapter that imports the planner is found."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from mia_audit.pipeline import plan\n")
    mods = imported_modules(bad)
    assert mods == [(2, "mia_audit.pipeline")]
    assert stage_of("mia_audit.pipeline.plan") > stage_of("mia_audit.data.adapters.table")
