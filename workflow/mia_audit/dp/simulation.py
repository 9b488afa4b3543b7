"""Simulated DP-SGD runs with a known answer, to check the DP bounds and the violation flags.

DP-SGD itself on a loss whose clipped per-record gradient is a fixed unit vector per patient,
attacked by projecting the released noisy gradients on the patient's direction; the signals
are drawn in closed form without materialising the steps. The construction and why it is a
hard case for the flags: docs/methods.md, "Differential privacy".
"""

from __future__ import annotations

import numpy as np


def linear_attack_signals(
    member_patients: np.ndarray,
    records_per_patient,
    noise_multiplier: float,
    sample_rate: float,
    steps: int,
    level: str,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Signals φ (models × records) of the simulated run described in docs/methods.md.

    ``member_patients`` (models, patients) bool; ``records_per_patient`` (patients,) ≥ 1.
    Returns ``(conf, member, patient_of_record)``: float64 (models, records) signals, bool
    (models, records) membership and the patient index of each record (records in patient
    order). A patient's records share one signal (their gradients are aligned).
    """
    if level not in ("record", "patient"):
        raise ValueError(f"level must be 'record' or 'patient', got {level!r}")
    member_patients = np.asarray(member_patients, dtype=bool)
    k = np.asarray(records_per_patient, dtype=np.int64)
    if member_patients.ndim != 2 or member_patients.shape[1] != k.size or k.min(initial=1) < 1:
        raise ValueError("member_patients must be (models, patients) and records_per_patient >= 1 per patient")
    trials = k * int(steps) if level == "record" else np.full(k.size, int(steps))
    counts = rng.binomial(np.broadcast_to(trials, member_patients.shape), float(sample_rate))
    signal = np.where(member_patients, counts, 0) + float(noise_multiplier) * np.sqrt(steps) * rng.standard_normal(
        member_patients.shape
    )
    patient_of_record = np.repeat(np.arange(k.size), k)
    return signal[:, patient_of_record], member_patients[:, patient_of_record], patient_of_record


def optimal_attack_auc(
    group_size: int,
    noise_multiplier: float,
    sample_rate: float,
    steps: int,
    n: int,
    rng: np.random.Generator,
) -> tuple[float, float]:
    """Monte-Carlo AUC (and its SE) of the most powerful membership test for a group of k.

    Simulates the run for one group of k records (k = 1: one unit) with aligned gradients
    as in docs/methods.md, step by step with the actual Poisson draw of each record,
    ``n`` runs with the group in and ``n`` without, and scores each run by its exact
    log-likelihood ratio Σ_t log Σ_j Binomial(j; k, q) exp((j x_t − j²/2)/σ²) (Neyman–Pearson:
    no test of the released gradients does better). AUC = Mann–Whitney statistic of the
    scores; SE by the Hanley–McNeil formula.
    """
    from scipy.special import logsumexp
    from scipy.stats import binom

    k, sigma, q, t = int(group_size), float(noise_multiplier), float(sample_rate), int(steps)
    j = np.arange(k + 1)
    with np.errstate(divide="ignore"):
        logp = binom.logpmf(j, k, q)

    def scores(inside: bool) -> np.ndarray:
        total = np.zeros(n)
        for _ in range(t):
            sampled = (rng.random((n, k)) < q).sum(axis=1) if inside else np.zeros(n)
            x = sampled + sigma * rng.standard_normal(n)
            total += logsumexp(logp[None, :] + (np.outer(x, j) - j**2 / 2.0) / sigma**2, axis=1)
        return total

    s_in, s_out = scores(True), scores(False)
    allv = np.concatenate([s_in, s_out])
    order = allv.argsort(kind="mergesort")
    ranks = np.empty(allv.size)
    ranks[order] = np.arange(1, allv.size + 1)
    auc = (ranks[:n].sum() - n * (n + 1) / 2) / (n * n)
    q1, q2 = auc / (2 - auc), 2 * auc**2 / (1 + auc)
    se = np.sqrt((auc * (1 - auc) + (n - 1) * (q1 - auc**2) + (n - 1) * (q2 - auc**2)) / (n * n))
    return float(auc), float(se)
