"""Every figure of one experiment from its tables, each table read once (rule plot_experiment).

Which figures, from which tables, drawn by which function: the registry
(:mod:`mia_audit.plots.registry`).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping

import pandas as pd

from mia_audit.errors import DataError
from mia_audit.plots import style
from mia_audit.plots.registry import experiment_drawings, experiment_table_files
from mia_audit.train import model_utility

_TSV = {"sep": "\t", "keep_default_na": False, "na_values": [""]}


def read_table(path: str, reader: str):
    """One table of an experiment as the figure functions take it (``reader`` of the registry)."""
    if reader == "parquet":
        return pd.read_parquet(path)
    if reader == "utility":
        return model_utility.read(path)
    if reader.startswith("tsv:"):
        return pd.read_csv(path, dtype={reader[4:]: str}, **_TSV)
    return pd.read_csv(path, sep="\t")


def draw_experiment(
    tables: Mapping[str, str],
    outputs: Mapping[str, tuple[str, str]],
    attributes,
    title: str,
    log: logging.Logger | None = None,
) -> None:
    """Draw the figures named in ``outputs`` (name → (png, pdf)) from the table files in
    ``tables`` (table key of the registry → path), each table read at most once.

    A figure that cannot be drawn (a missing column, an unreadable table …) raises a
    :class:`DataError` whose one line names the figure's file, the tables it reads and the
    cause; the figures after it are not drawn.
    """
    readers = {k: reader for k, (_, reader) in experiment_table_files(attributes).items()}
    read = functools.cache(lambda key: read_table(tables[key], readers[key]))
    for drawing in experiment_drawings(attributes):
        if drawing.name not in outputs:
            continue
        png, pdf = outputs[drawing.name]
        try:
            style.save(drawing.draw({k: read(k) for k in drawing.tables}, title), png, pdf)
        except Exception as err:
            sources = ", ".join(str(tables[k]) for k in drawing.tables)
            cause = " ".join(f"{type(err).__name__}: {err}".split())  # one line
            raise DataError(f"figure {png} could not be drawn from {sources}: {cause}") from err
        if log is not None:
            log.info("wrote %s and %s", png, pdf)
