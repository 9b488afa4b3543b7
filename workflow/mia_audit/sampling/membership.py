"""Balanced membership sampling over patients (LiRA-style).

Every pool patient is IN for exactly half of the target models: for each patient,
the models are ranked by i.i.d. uniform keys and the first M/2 take the patient
(Carlini et al. 2022, "Membership inference attacks from first principles", §VI).
All of a patient's records share the patient's membership, so the unit of
membership is the patient, never the single record.

Adaptive audits (data-set key ``adaptive``) train in *waves*: :func:`wave_membership`
stacks independently drawn balanced blocks, one per wave, so every patient is IN for
exactly half of the models of every wave, and of every run of whole waves.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from mia_audit import integrity
from mia_audit.errors import ConfigError, DataError
from mia_audit.storage import quiet_zarr


def balanced_membership(n_models: int, n_patients: int, seed) -> np.ndarray:
    """(n_models, n_patients) bool matrix; each column has exactly n_models/2 True.

    Deterministic from ``seed`` (numpy PCG64; an int or a ``numpy.random.SeedSequence``).
    Each model's training set is a random subset of about half of the patients.
    """
    if n_models < 2 or n_models % 2:
        raise ConfigError(
            f"n_models must be an even number ≥ 2 (got {n_models}) so every patient is IN for exactly half"
        )
    if n_patients < 1:
        raise DataError("balanced_membership: no patients to sample")
    keys = np.random.default_rng(seed).random((n_models, n_patients))
    rank = keys.argsort(axis=0).argsort(axis=0)
    return rank < n_models // 2


def wave_membership(n_waves: int, wave_models: int, n_patients: int, seed: int) -> np.ndarray:
    """(n_waves × wave_models, n_patients) bool: one :func:`balanced_membership` block per wave.

    Wave ``w`` is the balanced block drawn with the seed sequence ``[seed, w]``, so a wave's
    membership does not depend on how many waves follow it (an adaptive run that stops
    early trained exactly the first rows of the full matrix). Every column has exactly
    ``wave_models / 2`` True values within every wave.
    """
    if n_waves < 1:
        raise ValueError(f"wave_membership: need at least one wave, got {n_waves}")
    return np.concatenate(
        [balanced_membership(wave_models, n_patients, np.random.SeedSequence([seed, w])) for w in range(n_waves)]
    )


def record_membership(patient_member: np.ndarray, patient_index: np.ndarray) -> np.ndarray:
    """Expand a (models, patients) matrix to (models, records).

    ``patient_index[r]`` is the column of record r's patient, or -1 for a record that no
    model may train on (a held-out test record): such records are never members.
    """
    patient_index = np.asarray(patient_index)
    out = np.zeros((patient_member.shape[0], patient_index.size), dtype=bool)
    ok = patient_index >= 0
    out[:, ok] = patient_member[:, patient_index[ok]]
    return out


def write_membership(path, member: np.ndarray, patient_ids: np.ndarray, seed: int) -> None:
    """``membership.zarr``: ``member`` (model, patient) with the ``patient_id`` and ``model``
    coordinates, and the SHA-256 of each array (:data:`mia_audit.integrity.ARRAYS_ATTR`), which
    :func:`read_membership` checks."""
    arrays = {
        "member": np.asarray(member, dtype=bool),
        "model": np.arange(member.shape[0], dtype=np.int32),
        "patient_id": np.asarray(patient_ids).astype("U"),
    }
    ds = xr.Dataset(
        {"member": (("model", "patient"), arrays["member"])},
        coords={"model": arrays["model"], "patient_id": ("patient", arrays["patient_id"])},
        attrs={
            "seed": int(seed),
            "scheme": "balanced: every patient IN for exactly half of the models",
            integrity.ARRAYS_ATTR: {k: integrity.values_digest(v) for k, v in arrays.items()},
        },
    )
    with quiet_zarr():
        ds.to_zarr(path, mode="w", consolidated=True)


def read_membership(path) -> tuple[np.ndarray, np.ndarray]:
    """``(member (models, patients) bool, patient ids)`` of ``membership.zarr``, checked against
    the digests its writer stored (a deleted chunk of ``member`` reads back as False)."""
    root = integrity.open_store(path, "the membership matrix")
    arrays = integrity.store_arrays(path)
    integrity.check_arrays(path, root.attrs.get(integrity.ARRAYS_ATTR), arrays, "the membership matrix")
    return arrays["member"].astype(bool), arrays["patient_id"].astype(str)


def read_record_membership(records: pd.DataFrame, membership_path) -> np.ndarray:
    """(models, records) bool: patient membership expanded to records; test records never IN."""
    member, patients = read_membership(membership_path)
    lookup = pd.Series(np.arange(len(patients)), index=patients)
    idx = records["patient_id"].map(lookup)
    idx = np.where(records["split"].astype(str).to_numpy() == "pool", idx.fillna(-1).to_numpy(), -1).astype(np.int64)
    missing = records.loc[(records["split"].astype(str) == "pool").to_numpy() & (idx < 0), "patient_id"]
    if len(missing):
        raise integrity.IntegrityError(
            f"{membership_path}: pool patients {missing.unique()[:5].tolist()} of the records table have no "
            f"membership column (the membership matrix was drawn for other records); "
            f"{integrity.rebuild_hint(membership_path)}"
        )
    return record_membership(member, idx)


def check_design(n_models: int, n_pool_patients: int, seed, source, key: str) -> None:
    """A DataError naming ``key`` (``datasets.<name>``) when a target model of the balanced design
    would train on no patient: possible only with few pool patients (with 64 or more, a model
    without a patient has probability below 2^-64, and the check is skipped)."""
    if n_pool_patients >= 64:
        return
    member = balanced_membership(int(n_models), int(n_pool_patients), int(seed))
    empty = np.flatnonzero(member.sum(axis=1) == 0)
    if len(empty):
        raise DataError(
            f"{source}: with {n_pool_patients} pool patients and {key}.n_models = {n_models}, target model(s) "
            f"{empty[:5].tolist()} would train on no patient; add patients or use fewer models"
        )
