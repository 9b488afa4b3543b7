"""Helpers for tests: a confidence cube of simulated signals with known record AUCs.

Not a test module. Each record's in- and out-signals are normal with SD 1 and a mean gap of
√2·Φ⁻¹(AUC), so the record's bi-normal AUC is exactly the AUC it was given.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats as sps

from mia_audit.query import cube


def simulated_cube(path, patient_member: np.ndarray, true_auc: np.ndarray, **kw) -> pd.DataFrame:
    """Write :func:`simulate` to a cube at ``path`` (one shard); returns the records table."""
    conf, member, records = simulate(patient_member, true_auc, **kw)
    cube.create_cube(path, records, member, models_per_shard=member.shape[0])
    cube.write_confidence(path, 0, conf)
    return records


def simulate(
    patient_member: np.ndarray,
    true_auc: np.ndarray,
    records_per_patient: int = 1,
    seed: int = 0,
    model_effect: float = 0.0,
    groups: np.ndarray | None = None,
) -> pd.DataFrame:
    """Write a cube of (models, patients × records_per_patient) pool records; returns the records table.

    ``true_auc`` is per patient (all of a patient's records share it). ``model_effect`` adds a
    per-model shift to every signal (models that are globally more confident).
    """
    rng = np.random.default_rng(seed)
    n_models, n_patients = patient_member.shape
    pidx = np.repeat(np.arange(n_patients), records_per_patient)
    member = patient_member[:, pidx]
    gap = np.sqrt(2.0) * sps.norm.ppf(np.asarray(true_auc, dtype=float))[pidx]
    conf = rng.standard_normal(member.shape) + member * gap + model_effect * rng.standard_normal((n_models, 1))
    records = pd.DataFrame(
        {
            "record_id": [f"r{i}" for i in range(pidx.size)],
            "patient_id": [f"p{p:04d}" for p in pidx],
            "label": 0,
            "split": "pool",
            "grp": (groups if groups is not None else np.where(np.arange(n_patients) % 5 == 0, "b", "a"))[pidx],
        }
    )
    return conf.astype(np.float32), member, records
