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


def small_config(
    results="results", n_models: int = 8, per_job: int = 4, epochs: int = 3, selection: bool = False, **train
) -> dict:
    """The bundled cohort with few, small, briefly trained models: one experiment ``mlp`` of
    ``n_models`` MLPs of width 16 in shards of ``per_job``, ``epochs`` epochs (other ``train``
    keys as given), 2 target models, baselines on 2 member sets; with ``selection`` a model
    selection between widths 16 and 32 (one split, 2 models each); the data file by absolute
    path, so the config runs from any working directory."""
    base = default_config()
    path = REPO / base["datasets"]["pbc"]["path"]
    mlp = base["experiments"]["mlp"]
    if selection:  # two candidates that both memorise (the end-to-end tests attack these models)
        mlp["selection"].update({"candidates": {"w16": {}, "w32": {"model": {"width": 32}}}, "splits": 1, "models": 2})
    else:
        mlp.pop("selection", None)
    base["experiments"] = {"mlp": mlp}
    return deep_update(
        base,
        {
            "results": str(results),
            "datasets": {"pbc": {"path": str(path), "n_models": n_models, "baselines": {"member_sets": 2}}},
            "experiments": {
                # weight decay 1e-4 (the former default): these models memorise, as the tests expect
                "mlp": {
                    "model": {"width": 16},
                    "train": {"epochs": epochs, "weight_decay": 1e-4, **train},
                    "models_per_job": per_job,
                }
            },
            "audit": {"n_targets": 2},
        },
    )


def validated(config: dict) -> dict:
    """``config`` validated against config/schema.yaml with its defaults filled in, as the
    Snakefile sees it (what :mod:`mia_audit.pipeline.plan` expects)."""
    from snakemake.utils import validate

    cfg = copy.deepcopy(config)
    validate(cfg, str(REPO / "config" / "schema.yaml"))
    return cfg
