"""Partial-access fill rules: known parts untouched, unknown parts filled by the documented rule."""

import numpy as np
import pytest

from mia_audit.query.partial_access import AccessError, access_levels, apply_access, known_mask


def test_table_known_raw_column_covers_derived_features():
    names = ["age", "age__missing", "gender=F", "gender=M", "triage_sbp"]
    np.testing.assert_array_equal(known_mask(["age", "gender"], names), [1, 1, 1, 1, 0])


def test_table_unknown_features_set_to_pool_mean():
    rng = np.random.default_rng(0)
    raw = rng.normal(5, 2, size=(50, 3))
    pool = np.arange(50) < 40
    x = (raw - raw[pool].mean(0)) / raw[pool].std(0)  # standardised by the pool, as prepare does
    out = apply_access(x, {"known": ["a"], "fill": "pool_mean"}, "table", ["a", "b", "c"])
    np.testing.assert_array_equal(out[:, 0], x[:, 0])
    # unknown columns equal the pool mean in standardised units, i.e. the raw pool mean
    back = out[:, 1:] * raw[pool, 1:].std(0) + raw[pool, 1:].mean(0)
    np.testing.assert_allclose(back, np.broadcast_to(raw[pool, 1:].mean(0), back.shape))
    assert not np.shares_memory(out, x)


def test_signal_lead_I_only():
    x = np.random.default_rng(1).normal(size=(4, 12, 100)).astype(np.float32)
    leads = ["I", "II", "III", "AVR", "AVL", "AVF", "V1", "V2", "V3", "V4", "V5", "V6"]
    out = apply_access(x, {"known": ["I"], "fill": "zero"}, "signal", leads)
    np.testing.assert_array_equal(out[:, 0], x[:, 0])
    assert (out[:, 1:] == 0).all() and out.dtype == np.float32
    pm = x.mean(axis=0)
    out = apply_access(x, {"known": ["I"], "fill": "pool_mean"}, "signal", leads, pool_mean=pm)
    np.testing.assert_array_equal(out[2, 5], pm[5])
    with pytest.raises(AccessError, match="needs pool_mean"):
        apply_access(x, {"known": ["I"], "fill": "pool_mean"}, "signal", leads)


def test_levels_and_errors():
    lv = access_levels({"access_levels": {"lead_I": {"known": ["I"]}}})
    assert set(lv) == {"full", "lead_I"} and lv["lead_I"]["fill"] == "pool_mean"
    with pytest.raises(AccessError, match="reserved"):
        access_levels({"access_levels": {"full": {"known": ["I"]}}})
    with pytest.raises(AccessError, match="'Ix' matches none"):
        known_mask(["Ix"], ["I", "II"])
    with pytest.raises(AccessError, match="not images"):
        apply_access(np.zeros((1, 1, 2, 2)), {"known": ["I"]}, "image", ["I"])
    x = np.ones((2, 3))
    np.testing.assert_array_equal(apply_access(x, {"known": None}, "table", ["a", "b", "c"]), x)
    out = apply_access(x, {"known": ["a"], "fill": "value", "fill_value": -1}, "table", ["a", "b", "c"])
    np.testing.assert_array_equal(out, [[1, -1, -1]] * 2)
