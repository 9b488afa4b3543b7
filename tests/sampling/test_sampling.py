import numpy as np
import pytest

from mia_audit.sampling.membership import balanced_membership, record_membership


def test_every_patient_in_for_exactly_half():
    m = balanced_membership(200, 250, seed=3)
    assert m.shape == (200, 250) and m.dtype == bool
    assert (m.sum(axis=0) == 100).all()
    # each model trains on about half of the patients (binomial-ish spread, never degenerate)
    per_model = m.sum(axis=1)
    assert 90 < per_model.mean() < 160 and per_model.min() > 80 and per_model.max() < 170
    assert abs(per_model.mean() - 125) < 1e-9


def test_deterministic_from_seed_and_seed_matters():
    a = balanced_membership(20, 50, seed=1)
    assert np.array_equal(a, balanced_membership(20, 50, seed=1))
    assert not np.array_equal(a, balanced_membership(20, 50, seed=2))


def test_pairs_of_patients_are_independent():
    # co-membership of two patients across models should look like independent halves
    m = balanced_membership(400, 300, seed=0).astype(float)
    co = (m.T @ m) / 400  # share of models holding both patients
    off = co[~np.eye(300, dtype=bool)]
    assert abs(off.mean() - 0.25) < 0.005


def test_odd_model_count_is_refused():
    with pytest.raises(ValueError, match="even"):
        balanced_membership(7, 10, seed=0)


def test_records_share_their_patients_membership():
    pm = balanced_membership(10, 3, seed=0)
    rec = record_membership(pm, np.array([0, 0, 1, 2, -1, 2]))
    assert np.array_equal(rec[:, 0], pm[:, 0]) and np.array_equal(rec[:, 1], pm[:, 0])
    assert np.array_equal(rec[:, 3], pm[:, 2]) and np.array_equal(rec[:, 5], pm[:, 2])
    assert not rec[:, 4].any()  # a held-out test record is never a member


def test_waves_are_balanced_on_their_own_and_do_not_depend_on_later_waves():
    from mia_audit.sampling.membership import wave_membership

    m = wave_membership(4, 8, 30, seed=5)
    assert m.shape == (32, 30)
    for w in range(4):
        assert (m[8 * w : 8 * (w + 1)].sum(axis=0) == 4).all()  # every patient IN for half of every wave
    # stopping early trains exactly the first rows of the full matrix
    assert np.array_equal(wave_membership(2, 8, 30, seed=5), m[:16])
    assert not np.array_equal(m[:8], m[8:16])  # waves are drawn independently
