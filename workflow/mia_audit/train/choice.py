"""The chosen settings of an experiment: its selection candidates and the choice laid over it.

Light to import (no model family, no numpy): the cube's and the training jobs' scripts read the
choice with it; the selection itself (fitting the candidates) is :mod:`mia_audit.train.selection`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping


def _merge(base: Mapping | None, over: Mapping | None) -> dict:
    out = dict(base or {})
    out.update(dict(over or {}))
    return out


def candidates(experiment: Mapping) -> dict[str, dict]:
    """{name: {"model": …, "train": …}}: each candidate's overrides laid over the experiment's
    ``model`` and ``train`` blocks (config order). A candidate whose ``model.arch`` differs from
    the experiment's brings its whole ``model`` block (another family's keys do not carry over)."""
    spec = experiment.get("selection") or {}
    out = {}
    for name, cand in (spec.get("candidates") or {}).items():
        cand = cand or {}
        model = cand.get("model") or {}
        own_family = "arch" in model and model["arch"] != experiment["model"]["arch"]
        out[str(name)] = {
            "model": dict(model) if own_family else _merge(experiment["model"], model),
            "train": _merge(experiment.get("train"), cand.get("train")),
        }
    return out


def apply_choice(experiment: Mapping, chosen: Mapping | None) -> dict:
    """The experiment block with the chosen candidate's ``model`` and ``train`` (unchanged when
    ``chosen`` is None, i.e. an experiment without selection)."""
    out = dict(experiment)
    if chosen:
        out["model"] = dict(chosen["model"])
        out["train"] = dict(chosen["train"])
        out["selected_candidate"] = chosen["candidate"]
    return out


def read_choice(path) -> dict:
    """The chosen candidate (``selection/chosen.json``): candidate, model, train, metric."""
    with open(path) as fh:
        return json.load(fh)
