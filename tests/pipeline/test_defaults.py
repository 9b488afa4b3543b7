"""Defaults live in the schema only (config/schema.yaml).

The library and the scripts take validated config blocks (the Snakefile's validation, or
:func:`mia_audit.settings.complete` for a caller outside the workflow), so no code reads a config
key with a default of its own. Two checks over the source: no ``.get("key", default)`` for a key
that has a schema default, and every keyword default of a function whose parameter is named
like a config key equals one of the schema's defaults for that key.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from mia_audit import settings

REPO = Path(__file__).resolve().parents[2]
SOURCES = sorted((REPO / "workflow" / "mia_audit").rglob("*.py")) + sorted((REPO / "workflow" / "scripts").glob("*.py"))


def schema_defaults() -> dict[str, list]:
    """Config key name → every default the schema gives a key of that name (any block)."""
    out: dict[str, list] = {}

    def walk(node):
        if isinstance(node, dict):
            for key, sub in (node.get("properties") or {}).items():
                if isinstance(sub, dict) and "default" in sub:
                    out.setdefault(key, []).append(sub["default"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(yaml.safe_load((REPO / "config" / "schema.yaml").read_text()))
    return out


DEFAULTS = schema_defaults()

#: names shared by a config key and something else: (file, function or key, name) → what it is
NOT_CONFIG = {
    ("data/adapters/chexpert.py", "uncertain"): "adapter option datasets.<name>.options.uncertain (the adapter's)",
    ("data/adapters/mimic_cxr.py", "views"): "adapter option datasets.<name>.options.views (the adapter's)",
    ("analysis/convergence.py", "population"): "audit.rmia_population (default 2000), not public_models.*.population",
    ("audit/cube_audit.py", "population"): "audit.rmia_population (default 2000), not public_models.*.population",
    ("audit/stats.py", "level"): "a confidence level",
    ("integrity.py", "level"): "an access level",
    ("data/adapters/table.py", "n"): "rows shown in a message",
    ("data/prepare.py", "workers"): "decoding processes of a call (the config's workers: None = the CPUs)",
    ("external/public_models.py", "workers"): "decoding processes of a call",
    ("external/public_models.py", "device"): "a torch device of a call (the config's device: auto is resolved before)",
    ("train/weights.py", "device"): "a torch device of a call",
    ("train/ensemble.py", "amp"): "whether a call uses autocast (train.amp and a CUDA device)",
    ("train/ensemble.py", "batch_size"): "records per query batch",
    ("train/ensemble.py", "augment"): "whether a transform augments (train.augment, training only)",
    ("train/ensemble.py", "train"): "training or query mode of a transform",
    ("audit/attacks.py", "options"): "the keyword options an attack accepts",
}


def exempt(path: Path, name: str) -> bool:
    return (
        path.relative_to(REPO / "workflow" / "mia_audit").as_posix() if "mia_audit" in path.parts else "",
        name,
    ) in NOT_CONFIG


def literal(node):
    try:
        return True, ast.literal_eval(node)
    except (ValueError, SyntaxError, TypeError):
        return False, None


def restated_gets(path: Path) -> list[str]:
    """``x.get("key", default)`` calls whose key has a schema default."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "get"
            and len(node.args) == 2
            and isinstance(node.args[0], ast.Constant)
            and node.args[0].value in DEFAULTS
        ):
            ok, value = literal(node.args[1])
            if (not ok or value is not None) and not exempt(path, node.args[0].value):
                out.append(f"{path.relative_to(REPO)}:{node.lineno}: .get({node.args[0].value!r}, …)")
    return out


def keyword_defaults(path: Path) -> list[tuple[str, str, object]]:
    """(where, parameter, literal default) of every function parameter named like a config key."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ClassDef):  # fields of settings classes (dataclasses)
            for item in node.body:
                if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name) and item.value is not None:
                    ok, value = literal(item.value)
                    name = item.target.id
                    if ok and value is not None and name in DEFAULTS and not exempt(path, name):
                        out.append((f"{path.relative_to(REPO)}:{item.lineno} {node.name}", name, value))
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        args = node.args
        positional = args.posonlyargs + args.args
        pairs = list(zip(positional[len(positional) - len(args.defaults) :], args.defaults, strict=True))
        pairs += [(a, d) for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True) if d is not None]
        for arg, default in pairs:
            ok, value = literal(default)
            if ok and value is not None and arg.arg in DEFAULTS and not exempt(path, arg.arg):
                out.append((f"{path.relative_to(REPO)}:{node.lineno} {node.name}", arg.arg, value))
    return out


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_no_config_default_is_restated_by_a_get(path):
    assert not restated_gets(path), "read the validated block instead: " + "; ".join(restated_gets(path))


def same(a, b) -> bool:
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return a == b and type(a) is not bool or a is b


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_keyword_defaults_agree_with_the_schema(path):
    wrong = [
        f"{where}: {name}={value!r}, schema {DEFAULTS[name]}"
        for where, name, value in keyword_defaults(path)
        if not any(same(value, d) for d in DEFAULTS[name])
    ]
    assert not wrong, "; ".join(wrong)


def test_the_checks_find_a_restated_default(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text('def f(spec, tail="quantile"):\n    return spec.get("test_fraction", 0.3)\n')
    bad = bad.rename(REPO / "workflow" / "scripts" / "_probe_defaults.py")
    try:
        assert restated_gets(bad) == ["workflow/scripts/_probe_defaults.py:2: .get('test_fraction', …)"]
        (where, name, value) = keyword_defaults(bad)[0]
        assert (name, value) == ("tail", "quantile") and "quantile" not in DEFAULTS["tail"]
    finally:
        bad.unlink()


def test_complete_fills_the_schema_defaults_and_names_a_bad_key():
    spec = settings.complete(
        {"path": "c.csv", "patient_id": "id", "label": {"column": "y"}, "features": ["a"]}, "dataset"
    )
    assert spec["test_fraction"] == 0.2 and spec["adapter"] == "table" and spec["channels"] == 1
    assert settings.complete({"adapter": "fitzpatrick17k", "root": "x"}, "dataset")["channels"] == 3
    assert settings.complete({"arch": "mlp"}, "model") == {"arch": "mlp", "depth": 2, "width": 128, "dropout": 0.0}
    assert settings.complete({}, "subgroups")["tail"] == "auto"
    with pytest.raises(Exception, match=r"test_fraction"):
        settings.complete({"path": "c.csv", "test_fraction": "a lot"}, "dataset")
