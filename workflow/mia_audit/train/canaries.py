"""Canaries for auditing a DP training run from below (the audit: :mod:`mia_audit.dp.empirical`).

A canary is a privacy unit the auditor designs and inserts into the training set of each
target model with probability 1/2 (a fair coin per model and canary, independent of the
patients' membership and of every other coin), so that the trained models can be attacked on
it with known membership (Jagielski, Ullman & Oprea 2020; Nasr et al. 2021, 2023; Steinke,
Nasr & Jagielski 2023). Table data sets only (standardised features).

**Design** (:func:`design`), fixed before any coin is drawn, from the pool records only (a
public choice: the guarantee holds for every fixed design):

* *record canaries*: one record each, far from every real record (at 1.5 times the largest
  norm of a pool record's standardised features, in a random direction), labelled with the
  class whose pool mean is *farthest* from it (the label a nearest-centroid rule would not
  give): a mislabelled outlier that only its own gradient can fit, the input-space worst case
  of Jagielski et al. (2020);
* *canary patients*: ``patient_records`` identical copies of such a record (their clipped
  gradients are aligned, the worst case for a group). At record level each copy is a unit, so
  the patient is a group of k units; at patient level the patient is one unit.

Canaries add to the models' training sets but not to the DP plan (the sample rate, the steps
and σ depend only on the real units), so an experiment's noise is the same with or without
them. Their logits are computed right after training and stored with the shard's weights
(the metadata's ``dp.canaries``), since the cube holds real records only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mia_audit.settings import complete


@dataclass(frozen=True)
class Canaries:
    """A canary design and its coins.

    ``x`` (rows, features) float32 and ``y`` (rows,) int64: the canary rows; ``canary``
    (rows,) the canary each row belongs to; ``kind`` (canaries,) ``record`` or ``patient``;
    ``size`` (canaries,) rows per canary; ``member`` (models, canaries) bool coins over every
    model of the data set.
    """

    x: np.ndarray
    y: np.ndarray
    canary: np.ndarray
    kind: np.ndarray
    size: np.ndarray
    member: np.ndarray

    @property
    def n(self) -> int:
        return int(self.kind.size)

    def rows_of(self, model: int) -> np.ndarray:
        """Canary rows (0-based, into ``x``) in model ``model``'s training set."""
        return np.flatnonzero(self.member[model][self.canary])

    def units(self, level: str, first_unit: int) -> np.ndarray:
        """Privacy unit of each canary row, numbered from ``first_unit``: every row its own unit
        at record level, one unit per canary at patient level."""
        if level == "record":
            return first_unit + np.arange(self.canary.size, dtype=np.int64)
        return first_unit + self.canary.astype(np.int64)


def coins(n_models: int, n_canaries: int, seed: int) -> np.ndarray:
    """(models, canaries) bool: independent fair coins (numpy PCG64, ``SeedSequence([seed, 0xCA4A])``)."""
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0xCA4A]))
    return rng.random((int(n_models), int(n_canaries))) < 0.5


def design(spec: dict, X_pool: np.ndarray, y_pool: np.ndarray, n_classes: int, n_models: int) -> Canaries:
    """The canaries of a ``dp.canaries`` block (module docstring) for a table data set.

    ``X_pool`` (records, features) the pool records' standardised features, ``y_pool`` their
    integer labels; the coins cover ``n_models`` models (every model of the data set, so that
    every shard draws the same coins).
    """
    spec = complete(spec, "dp_canaries")
    X_pool = np.asarray(X_pool, dtype=np.float64)
    y_pool = np.asarray(y_pool, dtype=np.int64)
    if X_pool.ndim != 2 or len(X_pool) != len(y_pool) or not len(X_pool):
        raise ValueError(f"canaries need (records, features) table inputs with labels, got shape {X_pool.shape}")
    n_rec, n_pat, k = int(spec["records"]), int(spec["patients"]), int(spec["patient_records"])
    n = n_rec + n_pat
    rng = np.random.default_rng(np.random.SeedSequence([int(spec["seed"]), 0xCA7]))
    direction = rng.standard_normal((n, X_pool.shape[1]))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    radius = 1.5 * float(np.linalg.norm(X_pool, axis=1).max())
    points = radius * direction
    centroids = np.stack(
        [
            X_pool[y_pool == c].mean(axis=0) if (y_pool == c).any() else np.full(X_pool.shape[1], np.inf)
            for c in range(n_classes)
        ]
    )
    dist = np.linalg.norm(points[:, None, :] - centroids[None, :, :], axis=2)
    dist = np.where(np.isfinite(dist), dist, -np.inf)  # a class absent from the pool is never chosen
    labels = dist.argmax(axis=1)
    size = np.r_[np.ones(n_rec, dtype=np.int64), np.full(n_pat, k, dtype=np.int64)]
    canary = np.repeat(np.arange(n), size)
    return Canaries(
        x=points[canary].astype(np.float32),
        y=labels[canary].astype(np.int64),
        canary=canary,
        kind=np.array(["record"] * n_rec + ["patient"] * n_pat),
        size=size,
        member=coins(n_models, n, spec["seed"]),
    )


def metadata(c: Canaries, models: range | list, logits: np.ndarray) -> dict:
    """What a shard stores about its canaries (JSON): the design's labels, kinds and sizes,
    each model's coins, and each model's logits on the canary rows (models, rows, classes)."""
    models = list(models)
    return {
        "kind": c.kind.tolist(),
        "size": c.size.tolist(),
        "label": c.y.tolist(),
        "canary": c.canary.tolist(),
        "member": c.member[models].astype(int).tolist(),
        "logits": np.asarray(logits, dtype=np.float64).round(6).tolist(),
    }
