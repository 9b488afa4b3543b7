"""Membership-balanced subsets of a finished ensemble: nested subsets and disjoint halves.

A random subset of a balanced design is not balanced, yet a k-model audit needs k/2 in- and
k/2 out-models per patient. :func:`nested_subsets` takes each patient's first k/2 IN and k/2
OUT models in one global order; :func:`split_halves` splits each patient's subset into two
disjoint balanced halves. Both return a (models, patients) mask. Construction and use:
docs/methods.md, "How many target models are enough".
"""

from __future__ import annotations

import numpy as np


def check_membership(patient_member: np.ndarray) -> np.ndarray:
    """The (models, patients) bool matrix, checked to be balanced (every patient IN for half)."""
    pm = np.asarray(patient_member)
    if pm.dtype != bool or pm.ndim != 2:
        raise ValueError(f"patient membership must be a (models, patients) bool matrix; got {pm.dtype} {pm.shape}")
    n_in = pm.sum(axis=0)
    if (n_in * 2 != pm.shape[0]).any():
        bad = np.flatnonzero(n_in * 2 != pm.shape[0])[:5]
        raise ValueError(
            f"membership is not balanced: patients (columns) {bad.tolist()} are IN for "
            f"{n_in[bad].tolist()} of {pm.shape[0]} models, expected {pm.shape[0] // 2}"
        )
    return pm


def _first_per_side(pm_sorted: np.ndarray, eligible: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """In row order: per column, the IN rows ranked [lo, hi) and the OUT rows ranked [lo, hi) among eligible rows."""
    in_rank = np.cumsum(pm_sorted & eligible, axis=0) - 1
    out_rank = np.cumsum(~pm_sorted & eligible, axis=0) - 1
    return eligible & (
        (pm_sorted & (in_rank >= lo) & (in_rank < hi)) | (~pm_sorted & (out_rank >= lo) & (out_rank < hi))
    )


def nested_subsets(patient_member: np.ndarray, k: int, order=None) -> np.ndarray:
    """(models, patients) mask: each patient's first k/2 IN and first k/2 OUT models in ``order``."""
    pm = check_membership(patient_member)
    n = pm.shape[0]
    if k < 2 or k % 2 or k > n:
        raise ValueError(f"a balanced subset needs an even number of models between 2 and {n}; got {k}")
    order = np.arange(n) if order is None else np.asarray(order)
    sel_sorted = _first_per_side(pm[order], np.ones_like(pm[order]), 0, k // 2)
    sel = np.empty_like(sel_sorted)
    sel[order] = sel_sorted
    return sel


def split_halves(patient_member: np.ndarray, subset: np.ndarray, rng: np.random.Generator):
    """Two disjoint balanced halves (masks) of every patient's ``subset`` (k/4 IN + k/4 OUT each).

    The halves follow one random order of the models shared by all patients. ``subset``
    must hold a multiple of 4 models per patient, half of them IN.
    """
    pm = np.asarray(patient_member, dtype=bool)
    sub = np.asarray(subset, dtype=bool)
    n_in, n_out = (pm & sub).sum(axis=0), (~pm & sub).sum(axis=0)
    if (n_in != n_out).any() or (n_in != n_in[0]).any() or n_in[0] % 2 or n_in[0] < 2:
        raise ValueError(
            "split_halves needs the same even number (≥ 2) of IN and OUT models for every patient; "
            f"got IN {np.unique(n_in).tolist()}, OUT {np.unique(n_out).tolist()}"
        )
    order = rng.permutation(pm.shape[0])
    a_sorted = _first_per_side(pm[order], sub[order], 0, int(n_in[0]) // 2)
    a = np.empty_like(a_sorted)
    a[order] = a_sorted
    return a, sub & ~a


def prefix_is_balanced(patient_member: np.ndarray, k: int) -> bool:
    """Whether models 0..k−1 are balanced on their own (every patient IN for exactly k/2)."""
    pm = np.asarray(patient_member, dtype=bool)
    return bool(k % 2 == 0 and (pm[:k].sum(axis=0) * 2 == k).all())


def default_sizes(n_models: int, smallest: int = 16) -> list[int]:
    """Powers of two from ``smallest`` below ``n_models``, then ``n_models`` (16, 32, 64, 128, 200)."""
    out = []
    k = smallest
    while k < n_models:
        out.append(k)
        k *= 2
    return out + [n_models]
