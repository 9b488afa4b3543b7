"""Adaptive audits (workflow/mia_audit/analysis/adaptive.py): the stopping rule and the wave decisions."""

import numpy as np
import pytest
from simulated_cubes import simulate

from mia_audit.analysis import adaptive, convergence
from mia_audit.sampling.membership import balanced_membership, wave_membership


@pytest.mark.parametrize(
    "n, bound, expected",
    [
        (80, 0.015, adaptive.STOP_PRECISION),
        (40, 0.015, adaptive.CONTINUE),  # below min_models
        (80, 0.030, adaptive.CONTINUE),
        (80, float("nan"), adaptive.CONTINUE),
        (200, 0.030, adaptive.STOP_CAP),
        (200, 0.015, adaptive.STOP_PRECISION),
    ],
)
def test_decide(n, bound, expected):
    assert adaptive.decide(n, bound, target=0.02, min_models=80, cap=200) == expected


def _pool(member, seed=0):
    auc = np.random.default_rng(3).uniform(0.5, 0.99, member.shape[1])
    conf, rec_member, records = simulate(member, auc, records_per_patient=2, seed=seed)
    return convergence.PoolCube.from_arrays(conf, rec_member, records["record_id"], records["patient_id"])


SPEC = {"wave_models": 8, "min_models": 16, "threshold": 0.8, "half_width": 0.5, "splits": 4, "seed": 0}


def test_waves_are_assessed_in_order_and_stop():
    member = wave_membership(3, 8, 60, seed=1)
    first = adaptive.assess(_pool(member[:8]), 0, SPEC, "binormal", cap=24)
    assert first["n_models"] == 8 and first["decision"] == adaptive.CONTINUE and first["change"] is None
    assert first["share_bc"] == pytest.approx(np.clip(first["share"] - first["bias"], 0, 1))
    assert first["error_bound"] == pytest.approx(abs(first["bias"]) + first["half_width"])
    second = adaptive.assess(_pool(member[:16]), 1, SPEC, "moderated", cap=24, previous=first)
    assert second["decision"] == adaptive.STOP_PRECISION and second["stop"]
    assert second["change"] == pytest.approx(second["share"] - first["share"])
    assert second["mc_low"] < second["share"] < second["mc_high"]
    table = adaptive.wave_table([second, first])
    assert table["wave"].tolist() == [0, 1] and (table["models_trained"] == 16).all()
    assert (table["models_saved"] == 8).all()
    with pytest.raises(ValueError, match="already stopped"):
        adaptive.assess(_pool(member), 2, SPEC, "binormal", cap=24, previous=second)
    with pytest.raises(ValueError, match="needs the decision of wave 0"):
        adaptive.assess(_pool(member[:16]), 1, SPEC, "binormal", cap=24)


def test_a_design_not_drawn_in_waves_is_refused():
    with pytest.raises(ValueError, match="not balanced on their own"):
        adaptive.share_precision(_pool(balanced_membership(16, 60, seed=0)[:8]), 8, 0.9)


def test_audited_models_reads_the_final_decision(tmp_path):
    assert adaptive.audited_models(None) is None
    path = tmp_path / "wave_1.json"
    adaptive.write_decision(path, {"wave": 1, "n_models": 16, "stop": True})
    assert adaptive.audited_models(str(path)) == 16
    adaptive.write_decision(path, {"wave": 1, "n_models": 16, "stop": False})
    with pytest.raises(ValueError, match="did not stop"):
        adaptive.audited_models(str(path))
