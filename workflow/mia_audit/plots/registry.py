"""The figure registry: every figure of an experiment, the tables it is drawn from, the function
that draws it and its caption in the HTML report.

The plan (the rule's outputs), the rule (its inputs), the figure job (what it draws) and the
report (captions) all read this one list, so a new experiment figure touches three files: its
drawing function, its entry here and its caption (docs/extending.md). Light to import: the
drawing modules (matplotlib) are imported only when a figure is drawn.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass

#: table key → (file under {dataset}/{experiment}/, how it is read: ``parquet``, ``tsv``, or
#: ``tsv:<column>`` for a TSV whose column holds text that looks like numbers, ``utility``)
EXPERIMENT_TABLES: dict[str, tuple[str, str]] = {
    "patients": ("audit/patient_risk.parquet", "parquet"),
    "records": ("audit/record_risk.parquet", "parquet"),
    "attacks": ("audit/aggregate_attacks.tsv", "tsv"),
    "roc": ("audit/aggregate_roc.parquet", "parquet"),
    "utility": ("models/utility.tsv", "utility"),
    "headline": ("audit/headline.tsv", "tsv:candidate"),
    "exposure_model": ("subgroups/exposure_model.tsv", "tsv:group"),
    "convergence": ("audit/convergence.tsv", "tsv:key"),
    "convergence_summary": ("audit/convergence_summary.tsv", "tsv:key"),
}
#: the per-attribute tables of the subgroup stage (one figure each)
SUBGROUP_TABLE = ("subgroups/{attribute}.tsv", "tsv:group")


@dataclass(frozen=True)
class Figure:
    """One figure of every experiment, ``figures/{dataset}/{experiment}/{name}.png`` and ``.pdf``.

    ``draw`` is ``"module:function"`` under :mod:`mia_audit.plots`, called as
    ``function(*tables, title=…)`` with the tables in the order of ``tables`` (DataFrames; the
    utility a dict); a per-attribute figure (``name`` holds ``{attribute}``) gets the attribute's
    subgroup table and ``attribute=`` as well. ``caption`` is the file under workflow/report/.
    ``title`` formats the figure's title from the experiment's (``{title}``).
    """

    name: str
    tables: tuple[str, ...]
    draw: str
    caption: str
    title: str = "{title}"

    @property
    def per_attribute(self) -> bool:
        return "{attribute}" in self.name

    def drawer(self) -> Callable:
        module, function = self.draw.split(":")
        return getattr(importlib.import_module(f"mia_audit.plots.{module}"), function)


#: Every experiment figure, in the order they are drawn (per-attribute ones once per attribute).
EXPERIMENT_FIGURES: tuple[Figure, ...] = (
    Figure(
        "risk_contrast",
        ("patients", "attacks", "roc", "utility", "headline"),
        "risk:risk_contrast",
        "risk_contrast.rst",
    ),
    Figure("attack_roc", ("roc", "attacks"), "attacks:attack_roc", "attack_roc.rst"),
    Figure("record_auc", ("records", "patients"), "risk:record_auc", "record_auc.rst", "{title}: record MIA AUC"),
    Figure("se", ("records",), "risk:standard_errors", "se.rst"),
    Figure("binormal_check", ("records",), "risk:binormal_check", "binormal_check.rst"),
    Figure("patient_intervals", ("patients",), "risk:patient_intervals", "patient_intervals.rst"),
    Figure(
        "subgroups_{attribute}",
        ("subgroups",),
        "subgroups:subgroup_composition",
        "subgroups.rst",
        "{title}: {attribute}",
    ),
    Figure("convergence", ("convergence", "convergence_summary"), "convergence:convergence", "convergence.rst"),
    Figure("exposure_model", ("exposure_model",), "subgroups:exposure_forest", "exposure_model.rst"),
)


@dataclass(frozen=True)
class Drawing:
    """One figure file of one experiment: the registry entry and, for a per-attribute figure, the
    attribute."""

    figure: Figure
    attribute: str | None = None

    @property
    def name(self) -> str:
        return self.figure.name.format(attribute=self.attribute)

    @property
    def tables(self) -> tuple[str, ...]:
        """The table keys it reads (a per-attribute figure: ``subgroups_{attribute}``)."""
        return tuple(f"subgroups_{self.attribute}" if t == "subgroups" else t for t in self.figure.tables)

    def draw(self, tables: Mapping[str, object], title: str):
        kwargs = {"title": self.figure.title.format(title=title, attribute=self.attribute)}
        if self.attribute is not None:
            kwargs["attribute"] = self.attribute
        return self.figure.drawer()(*(tables[k] for k in self.tables), **kwargs)


def experiment_drawings(attributes) -> list[Drawing]:
    """Every figure file of an experiment whose data set has these subgroup attributes, in order."""
    out = []
    for fig in EXPERIMENT_FIGURES:
        out += [Drawing(fig, a) for a in attributes] if fig.per_attribute else [Drawing(fig)]
    return out


def experiment_table_files(attributes) -> dict[str, tuple[str, str]]:
    """Table key → (file under {dataset}/{experiment}/, reader) of every table the experiment's
    figures read (the per-attribute subgroup tables as ``subgroups_{attribute}``)."""
    keys = {k for d in experiment_drawings(attributes) for k in d.tables}
    out = {k: v for k, v in EXPERIMENT_TABLES.items() if k in keys}
    for a in attributes:
        if f"subgroups_{a}" in keys:
            out[f"subgroups_{a}"] = (SUBGROUP_TABLE[0].format(attribute=a), SUBGROUP_TABLE[1])
    return out


#: figures drawn once per data set or run by rules of their own (captions for the report)
OTHER_FIGURES: dict[str, str] = {
    "figures/{dataset}/esf_by_experiment": "esf_by_experiment.rst",
    "figures/{dataset}/dp_esf_{level}": "dp_esf.rst",
    "figures/meta_analysis": "meta_analysis.rst",
    "figures/public/{public}/roc": "public_roc.rst",
}
