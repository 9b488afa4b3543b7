"""Every figure of one experiment from its tables, each table read once (rule plot_experiment).

The figures (names as in ``figures/{dataset}/{experiment}/{name}.png``) and the tables each is
drawn from:

==========================  ===================================================================
risk_contrast               patient_risk, aggregate_attacks, aggregate_roc, models/utility
attack_roc                  aggregate_roc, aggregate_attacks
record_auc                  record_risk, patient_risk
se, binormal_check          record_risk
patient_intervals           patient_risk
subgroups_{attribute}       subgroups/{attribute}.tsv
convergence                 convergence, convergence_summary
==========================  ===================================================================
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping

import pandas as pd

from .. import utility
from ..errors import DataError
from . import attacks, convergence, risk, style, subgroups

_TSV = {"sep": "\t", "keep_default_na": False, "na_values": [""]}


def figure_tables(attributes) -> dict[str, tuple[str, ...]]:
    """Figure name → the keys of the tables it is drawn from (in :func:`draw_experiment`'s
    ``tables``); ``subgroups_{attribute}`` per attribute, in the order of the plan's
    ``experiment_figures``."""
    return {
        "risk_contrast": ("patients", "attacks", "roc", "utility"),
        "attack_roc": ("roc", "attacks"),
        "record_auc": ("records", "patients"),
        "se": ("records",),
        "binormal_check": ("records",),
        "patient_intervals": ("patients",),
        **{f"subgroups_{a}": (f"subgroups_{a}",) for a in attributes},
        "convergence": ("convergence", "convergence_summary"),
    }


def read_table(key: str, path: str):
    """One table of an experiment as the figure functions take it."""
    if str(path).endswith(".parquet"):
        return pd.read_parquet(path)
    if key == "utility":
        return utility.read(path)
    if key.startswith("convergence"):
        return pd.read_csv(path, dtype={"key": str}, **_TSV)
    if key.startswith("subgroups_"):
        return pd.read_csv(path, dtype={"group": str}, **_TSV)
    return pd.read_csv(path, sep="\t")


def figure_drawers(title: str, attributes) -> dict[str, Callable]:
    """Figure name → a function of its tables (in :func:`figure_tables`' order) returning the figure."""

    def subgroup(attr):
        return lambda t: subgroups.subgroup_composition(t, attr, title=f"{title}: {attr}")

    return {
        "risk_contrast": lambda p, a, r, u: risk.risk_contrast(p, a, r, title=title, util=u),
        "attack_roc": lambda r, a: attacks.attack_roc(r, a, title=title),
        "record_auc": lambda rec, p: risk.record_auc(rec, p, title=f"{title}: record MIA AUC"),
        "se": lambda rec: risk.standard_errors(rec, title=title),
        "binormal_check": lambda rec: risk.binormal_check(rec, title=title),
        "patient_intervals": lambda p: risk.patient_intervals(p, title=title),
        **{f"subgroups_{a}": subgroup(a) for a in attributes},
        "convergence": lambda t, s: convergence.convergence(t, s, title=title),
    }


def draw_experiment(
    tables: Mapping[str, str],
    outputs: Mapping[str, tuple[str, str]],
    attributes,
    title: str,
    log: logging.Logger | None = None,
) -> None:
    """Draw the figures named in ``outputs`` (name → (png, pdf)) from the table files in
    ``tables`` (key of :func:`figure_tables` → path), each table read at most once.

    A figure that cannot be drawn (a missing column, an unreadable table …) raises a
    :class:`DataError` whose one line names the figure's file, the tables it reads and the
    cause; the figures after it are not drawn.
    """
    needs = figure_tables(attributes)
    drawers = figure_drawers(title, attributes)
    read = functools.cache(lambda key: read_table(key, tables[key]))
    for name, (png, pdf) in outputs.items():
        try:
            style.save(drawers[name](*(read(k) for k in needs[name])), png, pdf)
        except Exception as err:
            sources = ", ".join(str(tables[k]) for k in needs[name])
            cause = " ".join(f"{type(err).__name__}: {err}".split())  # one line
            raise DataError(f"figure {png} could not be drawn from {sources}: {cause}") from err
        if log is not None:
            log.info("wrote %s and %s", png, pdf)
