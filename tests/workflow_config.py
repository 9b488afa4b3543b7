"""Complete workflow configurations for tests: the bundled config/config.yaml with overrides.

Not a test module. A --configfile replaces config/config.yaml entirely, so test configs
start from the default and change only what they need.
"""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def deep_update(base: dict, overrides: dict) -> dict:
    """base with overrides merged in (nested dicts merged key by key, other values replaced)."""
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_update(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def default_config() -> dict:
    return yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def small_config(overrides: dict) -> dict:
    """The default config with its experiments replaced by those in overrides (if any)."""
    cfg = default_config()
    if "experiments" in overrides:
        cfg["experiments"] = {}
    return deep_update(cfg, overrides)


def validated(config: dict) -> dict:
    """``config`` validated against config/schema.yaml with its defaults filled in, as the
    Snakefile sees it (what :mod:`mia_audit.plan` expects)."""
    from snakemake.utils import validate

    cfg = copy.deepcopy(config)
    validate(cfg, str(REPO / "config" / "schema.yaml"))
    return cfg
