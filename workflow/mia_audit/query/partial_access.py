"""Partial-access attacks: the attacker knows only part of each record.

A data set's ``access_levels`` name the known parts and a fill rule for the rest
(``pool_mean``, ``zero`` or ``value``); :func:`apply_access` alters the models' *query* inputs
accordingly (tables and signals; images are refused), and each level gets its own cube. The
configuration and the rules: docs/datasets.md, "Partial access".
"""

from __future__ import annotations

import numpy as np

from mia_audit.settings import complete

FILLS = ("pool_mean", "zero", "value")


class AccessError(ValueError):
    """A bad access-level spec: names the level key and what was expected."""


def access_levels(spec: dict) -> dict:
    """{name: level spec} of a dataset config, with ``full`` added (everything known)."""
    levels = {"full": {"known": None, "fill": "zero"}}
    for name, lv in (spec.get("access_levels") or {}).items():
        if name == "full":
            raise AccessError("access level name 'full' is reserved (all of the record known)")
        if not lv.get("known"):
            raise AccessError(f"access_levels.{name}.known must list at least one feature or lead")
        lv = complete(lv, "access_level", f"datasets.<name>.access_levels.{name}")
        if lv["fill"] not in FILLS:
            raise AccessError(f"access_levels.{name}.fill = {lv.get('fill')!r}: expected one of {list(FILLS)}")
        levels[name] = {"fill": "pool_mean", **lv}
    return levels


def known_mask(known, names) -> np.ndarray:
    """Bool over ``names``: True where the name is known. ``known=None`` means all.

    A known entry ``k`` covers the name ``k`` itself and the derived names ``k=<level>``
    and ``k__missing``. An entry that covers no name is an error (a typo would otherwise
    silently hide everything).
    """
    names = [str(n) for n in names]
    if known is None:
        return np.ones(len(names), dtype=bool)
    mask = np.zeros(len(names), dtype=bool)
    for k in known:
        k = str(k)
        hit = np.array(
            [n == k or n.startswith(k + "=") or n == k + "__missing" or n.upper() == k.upper() for n in names],
            dtype=bool,
        )
        if not hit.any():
            raise AccessError(f"known entry {k!r} matches none of the inputs' names {names[:20]}")
        mask |= hit
    return mask


def apply_access(
    inputs: np.ndarray, level_spec: dict, modality: str, names, pool_mean: np.ndarray | None = None
) -> np.ndarray:
    """A copy of ``inputs`` with the unknown parts filled by the level's rule (docs/datasets.md, "Partial access").

    inputs: (records, feature) for ``table``, (records, lead, time) for ``signal``.
    names: the feature names (inputs.zarr ``feature``) or lead names (``lead``), in order.
    """
    x = np.asarray(inputs)
    if modality == "image":
        raise AccessError("partial access is defined for tables (features) and signals (leads), not images")
    if modality not in ("table", "signal"):
        raise AccessError(f"modality {modality!r}: expected 'table' or 'signal'")
    axis = 1
    if x.ndim < 2 or x.shape[axis] != len(names):
        raise AccessError(
            f"inputs of shape {x.shape} do not have {len(names)} "
            f"{('features', 'leads')[modality == 'signal']} on axis 1"
        )
    known = known_mask(level_spec.get("known"), names)
    if known.all():
        return x.copy()
    fill = complete(level_spec, "access_level")["fill"]
    out = x.copy()
    unknown = ~known
    if fill == "zero" or (fill == "pool_mean" and modality == "table"):
        out[:, unknown] = 0
    elif fill == "pool_mean":
        if pool_mean is None:
            raise AccessError("fill 'pool_mean' for signals needs pool_mean (lead, time): the pool's mean waveform")
        pm = np.asarray(pool_mean, dtype=x.dtype)
        if pm.shape != x.shape[1:]:
            raise AccessError(f"pool_mean has shape {pm.shape}, expected {x.shape[1:]}")
        out[:, unknown] = pm[unknown]
    elif fill == "value":
        if "fill_value" not in level_spec:
            raise AccessError("fill 'value' needs fill_value")
        out[:, unknown] = float(level_spec["fill_value"])
    else:
        raise AccessError(f"fill {fill!r}: expected one of {list(FILLS)}")
    return out
