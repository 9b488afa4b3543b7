"""Membership-balanced subsets of a finished ensemble (workflow/mia_audit/sampling/subsets.py)."""

import numpy as np
import pytest

from mia_audit.sampling import subsets
from mia_audit.sampling.membership import balanced_membership, wave_membership


def test_nested_subsets_are_exactly_balanced_nested_and_close_to_the_prefix():
    pm = balanced_membership(200, 250, seed=0)
    # a random prefix of a balanced design is not balanced ...
    assert not subsets.prefix_is_balanced(pm, 16)
    previous = None
    for k in subsets.default_sizes(200):
        sel = subsets.nested_subsets(pm, k)
        assert (sel.sum(axis=0) == k).all()  # k models per patient ...
        assert ((sel & pm).sum(axis=0) == k // 2).all()  # ... half of them IN
        if previous is not None:
            assert not (previous & ~sel).any()  # nested
        previous = sel
        # every patient's subset shares most of its models with the global first k models
        shared = (sel[:k]).sum(axis=0)
        assert shared.mean() > 0.8 * k
    assert subsets.default_sizes(200) == [16, 32, 64, 128, 200]


def test_whole_waves_are_the_prefix_itself():
    pm = wave_membership(5, 16, 40, seed=1)
    for k in (16, 32, 48):
        assert subsets.prefix_is_balanced(pm, k)
        sel = subsets.nested_subsets(pm, k)
        assert sel[:k].all() and not sel[k:].any()


def test_split_halves_are_disjoint_balanced_halves():
    pm = balanced_membership(64, 50, seed=2)
    sel = subsets.nested_subsets(pm, 32)
    a, b = subsets.split_halves(pm, sel, np.random.default_rng(0))
    assert not (a & b).any() and np.array_equal(a | b, sel)
    for half in (a, b):
        assert ((half & pm).sum(axis=0) == 8).all() and ((half & ~pm).sum(axis=0) == 8).all()
    a2, _ = subsets.split_halves(pm, sel, np.random.default_rng(1))
    assert not np.array_equal(a, a2)


def test_bad_inputs_are_named():
    pm = balanced_membership(8, 5, seed=0)
    with pytest.raises(ValueError, match="even number"):
        subsets.nested_subsets(pm, 3)
    pm[0, 0] = not pm[0, 0]
    with pytest.raises(ValueError, match="not balanced"):
        subsets.nested_subsets(pm, 4)
    with pytest.raises(ValueError, match="same even number"):
        subsets.split_halves(balanced_membership(8, 5, seed=0), np.zeros((8, 5), bool), np.random.default_rng(0))
