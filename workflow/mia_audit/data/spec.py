"""Checks of one ``datasets.<name>`` block that need no data (run with the config checks before
any job, and by the table adapter).
"""

from __future__ import annotations

from collections.abc import Mapping

from mia_audit.errors import ConfigError


def check_dataset_spec(name: str, spec: Mapping) -> None:
    """Checks of one ``datasets.<name>`` block that need no data: what the table keys name must
    fit together (label not a feature, categorical/dates/ranges among the features, subgroup
    bins with matching labels, filters with a condition). Raises :class:`ConfigError`."""
    key = f"datasets.{name}"
    dates = list(spec.get("dates") or {})
    features = list(spec.get("features") or [])
    features += [c for c in dates if c not in features]  # a date column is a feature (table.feature_columns)
    categorical = list(spec.get("categorical") or [])
    label_spec = spec.get("label") or {}
    label = label_spec.get("column")
    if label is not None and label in features:
        where = "dates" if label in dates else "features"
        raise ConfigError(
            f"config key {key}.{where} lists the label column {label!r} (config key {key}.label.column): "
            f"the outcome would be an input of the models; remove it from {where}"
        )
    if label_spec.get("negative") is not None and label_spec.get("positive") is None:
        raise ConfigError(
            f"config key {key}.label.negative needs {key}.label.positive (the values of the positive class)"
        )
    stray = [c for c in categorical if c not in features]
    if stray:
        raise ConfigError(f"config key {key}.categorical names {stray}, which are not in {key}.features")
    both = sorted(set(categorical) & set(spec.get("dates") or {}))
    if both:
        raise ConfigError(f"config key {key}: {both} are listed under both categorical and dates; keep one")
    for col, bounds in (spec.get("ranges") or {}).items():
        if col not in features or col in categorical:
            raise ConfigError(
                f"config key {key}.ranges.{col}: plausibility ranges apply to numeric features "
                f"(or dates), and {col!r} is {'categorical' if col in categorical else 'not in features or dates'}"
            )
        low, high = bounds
        if low is not None and high is not None and not low < high:
            raise ConfigError(f"config key {key}.ranges.{col} = [{low}, {high}]: expected low < high")
    for i, flt in enumerate(spec.get("filters") or []):
        conditions = set(flt) - {"column"}
        if not conditions or (conditions == {"drop_missing"} and not flt["drop_missing"]):
            raise ConfigError(
                f"config key {key}.filters[{i}] (column {flt.get('column')!r}) has no condition; "
                "give keep, drop, min, max or drop_missing: true"
            )
        lo, hi = flt.get("min"), flt.get("max")
        if lo is not None and hi is not None and lo > hi:
            raise ConfigError(f"config key {key}.filters[{i}]: min = {lo} is above max = {hi}")
    for attr, sg in (spec.get("subgroups") or {}).items():
        bins = sg.get("bins")
        if bins is None:
            if sg.get("labels") is not None:
                raise ConfigError(f"config key {key}.subgroups.{attr}.labels needs bins (the edges they name)")
            continue
        if any(b >= a for a, b in zip(bins[1:], bins[:-1], strict=True)):
            raise ConfigError(f"config key {key}.subgroups.{attr}.bins = {bins}: edges must increase strictly")
        labels = sg.get("labels")
        if labels is not None and len(labels) != len(bins) - 1:
            raise ConfigError(
                f"config key {key}.subgroups.{attr}: {len(labels)} labels for {len(bins) - 1} bins "
                f"(edges {bins}); give one label per bin"
            )
