"""The test tiers agree: the fast tier is `-m "not slow"` in pyproject.toml and README.md, and
every test that needs the SLURM cluster is marked `slurm` and `slow` (so the fast tier never
waits for a cluster)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FAST = 'pytest -m "not slow"'


def test_the_fast_tier_is_named_the_same_everywhere():
    assert FAST.replace('"', '\\"') in (REPO / "pyproject.toml").read_text()
    readme = (REPO / "README.md").read_text()
    assert FAST in readme
    assert not re.search(r'-m "not slow and', readme)


def marks(tree: ast.Module) -> set[str]:
    out = set()
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "pytestmark" for t in node.targets):
            out |= {n.attr for n in ast.walk(node.value) if isinstance(n, ast.Attribute) and n.attr != "mark"}
    return out


def test_every_slurm_test_is_marked_slurm_and_slow():
    users = []
    for path in sorted(REPO.glob("tests/**/test_*.py")):
        tree = ast.parse(path.read_text())
        imported = {
            a.name
            for n in ast.walk(tree)
            if isinstance(n, ast.ImportFrom) and n.module == "slurm_cluster"
            for a in n.names
        }
        if "slurm_available" in imported:  # needs the cluster (dry runs only import run_bounded)
            users.append(path.relative_to(REPO).as_posix())
            assert {"slurm", "slow"} <= marks(tree), f"{path.relative_to(REPO)}: pytestmark lacks slurm or slow"
    assert users, "no SLURM test found"
