"""The configuration's defaults, from their one home: the JSON schema (config/schema.yaml).

The Snakefile validates the whole config and fills in every default. A library entry point
that takes one block of it (a data set, an experiment, its model, the subgroup or audit
settings) calls :func:`complete` on that block, so a caller outside the workflow — a test, a
notebook — gets the same defaults, and no function restates one (``tests/pipeline/test_defaults.py``
checks that no code default disagrees with the schema's).

    >>> from mia_audit import settings
    >>> settings.complete({"path": "c.csv"}, "dataset")["test_fraction"]
    0.2
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Mapping
from pathlib import Path

from mia_audit.errors import ConfigError

#: the schema: config/schema.yaml through the package's link to it (a copy in an installed wheel)
SCHEMA_PATH = Path(__file__).parent / "schema.yaml"

#: block name → JSON pointer of its schema
BLOCKS = {
    "dataset": "#/$defs/dataset",
    "adaptive": "#/$defs/dataset/properties/adaptive",
    "access_level": "#/$defs/dataset/properties/access_levels/additionalProperties",
    "public_audit": "#/$defs/public_audit",
    "public_signal": "#/$defs/public_audit/properties/signal",
    "experiment": "#/$defs/experiment",
    "model": "#/$defs/model",
    "train": "#/$defs/experiment/properties/train",
    "query": "#/$defs/experiment/properties/query",
    "dp": "#/$defs/experiment/properties/dp",
    "selection": "#/$defs/experiment/properties/selection",
    "audit": "#/properties/audit",
    "subgroups": "#/properties/subgroups",
    "cluster": "#/properties/cluster",
    "config": "#",
}


@functools.cache
def schema() -> dict:
    """The configuration's JSON schema (config/schema.yaml)."""
    import yaml

    if not SCHEMA_PATH.exists():
        raise ConfigError(
            f"the configuration schema {SCHEMA_PATH} is missing: install the library from the "
            "workflow's source (pip install -e CHECKOUT, or pip install git+https://…@REF)"
        )
    with open(SCHEMA_PATH) as fh:
        return yaml.safe_load(fh)


@functools.cache
def _validator_class():
    """A Draft 2020-12 validator that fills in defaults as it validates (as Snakemake's
    ``snakemake.utils.validate`` does)."""
    from jsonschema import Draft202012Validator, validators

    validate_properties = Draft202012Validator.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, sch):
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if isinstance(sub, Mapping) and "default" in sub:
                    instance.setdefault(name, copy.deepcopy(sub["default"]))
        yield from validate_properties(validator, properties, instance, sch)

    return validators.extend(Draft202012Validator, {"properties": set_defaults})


@functools.cache
def _validator(name: str):
    """The defaults-filling validator of one block: its schema, with the schema's ``$defs`` beside
    it so that references (``#/$defs/...``) resolve as in the whole schema."""
    full = schema()
    node = full
    for part in BLOCKS[name].lstrip("#/").split("/") if BLOCKS[name] != "#" else []:
        node = node[part]
    return _validator_class()({**node, "$defs": full.get("$defs", {})})


def complete(block: Mapping | None, name: str, key: str | None = None) -> dict:
    """A copy of a config block with every schema default filled in, checked against the schema.

    ``name`` is a key of :data:`BLOCKS` (``dataset``, ``experiment``, ``model``, ``audit`` …).
    A block that violates the schema is a :class:`ConfigError` naming the key and what was
    expected (as the Snakefile reports it); ``key`` is where the block sits in the config
    (``experiments.x.dp``), for that message.
    """
    import jsonschema

    out = copy.deepcopy(dict(block or {}))
    try:
        _validator(name).validate(out)
    except jsonschema.ValidationError as err:
        raise ConfigError(describe_schema_error(err, key or name)) from None
    return out


def value(block: Mapping, key: str, name: str):
    """``block[key]``, or the schema's default of ``key`` in block ``name`` (a key of :data:`BLOCKS`)
    when the block lacks it: for functions that read one key of a block the caller may not have
    completed."""
    if key in block:
        return block[key]
    return default(f"{BLOCKS[name]}/properties/{key}")


def default(pointer: str):
    """The schema's default at a JSON pointer (``#/properties/subgroups/properties/tail``);
    KeyError when the schema has none there."""
    node = schema()
    for part in pointer.lstrip("#/").split("/"):
        node = node[part]
    return copy.deepcopy(node["default"])


def describe_schema_error(error, prefix: str | None = None) -> str:
    """One line for a :class:`jsonschema.ValidationError` of the config: the key, the offending
    value and what the schema expects (never the schema itself)."""
    path = ".".join([*([prefix] if prefix else []), *(str(p) for p in error.absolute_path)]) or "(top level)"
    if error.validator == "additionalProperties":
        known = sorted((error.schema.get("properties") or {}).keys())
        extra = sorted(set(error.instance) - set(known)) if isinstance(error.instance, Mapping) else []
        where = f"config key {path}" if error.absolute_path or prefix else "the config"
        return f"{where} has unknown key(s) {extra}; known keys: {', '.join(known)}"
    if error.validator == "propertyNames":
        return f"config key {path}: {error.message} (names may hold only letters, digits, '_' and '-')"
    message = error.message if len(error.message) <= 300 else error.message[:297] + "..."
    hint = error.schema.get("description") if isinstance(error.schema, Mapping) else None
    if error.validator in ("oneOf", "anyOf") and isinstance(error.schema, Mapping):
        # "is not valid under any of the given schemas" says nothing: name the forms it may take
        forms = [expected_form(sub) for sub in error.schema[error.validator]]
        message = f"{error.instance!r} is not {' or '.join(f for f in forms if f)}"
    elif error.validator == "type" and isinstance(error.schema, Mapping):
        message = f"{error.instance!r} is not {expected_form(error.schema)}"
    out = f"config key {path}: {message}"
    if hint and error.validator in (
        "enum",
        "type",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "oneOf",
        "anyOf",
    ):
        out += f" ({' '.join(str(hint).split())[:200]})"
    return out


def expected_form(sub: Mapping) -> str:
    """A schema node in words: 'a number > 0', "'inf'", 'a mapping', 'a list or null' …"""
    if "const" in sub:
        return repr(sub["const"])
    if "enum" in sub:
        values = list(sub["enum"])
        return repr(values[0]) if len(values) == 1 else f"one of {values}"
    types = sub.get("type")
    types = [types] if isinstance(types, str) else list(types or [])
    words = {
        "object": "a mapping (name: settings)",
        "array": "a list",
        "string": "text",
        "boolean": "true or false",
        "null": "null",
    }
    out = []
    for t in types:
        if t in ("number", "integer"):
            bounds = [
                f"{op} {sub[k]}"
                for k, op in (
                    ("exclusiveMinimum", ">"),
                    ("minimum", "≥"),
                    ("exclusiveMaximum", "<"),
                    ("maximum", "≤"),
                )
                if k in sub
            ]
            out.append(
                f"{'an integer' if t == 'integer' else 'a number'}{' ' + ' and '.join(bounds) if bounds else ''}"
            )
        else:
            out.append(words.get(t, t))
    return " or ".join(out)
