"""A SYNTHETIC imaging cohort for tests, examples and laptop-scale runs of the workflow.

The images are generated, not acquired: no real patient is behind them. Patients have 1–6
correlated images, a small minority subgroup has a distinctive appearance and a different
look of the finding, and the binary label is rare (optionally three findings). Vectorised
with NumPy and deterministic from ``seed``. What it mimics and its parameters:
docs/datasets.md, "The synthetic imaging cohort".
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["make_synthetic_cohort", "FINDINGS"]

FINDINGS = ("lesion", "line", "opacity")


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def make_synthetic_cohort(
    n_patients: int = 120,
    images_per_patient: tuple[int, int] = (1, 6),
    size: int = 32,
    minority_share: float = 0.1,
    seed: int = 0,
    *,
    prevalence: float = 0.1,
    minority_prevalence: float = 0.2,
    label_noise: float = 0.02,
    channels: int = 1,
    multilabel: bool = False,
    noise_sd: float = 0.04,
) -> tuple[pd.DataFrame, np.ndarray]:
    """Generate a SYNTHETIC patient cohort of images (docs/datasets.md).

    Parameters
    ----------
    n_patients : number of patients.
    images_per_patient : (low, high), inclusive; each patient's image count is uniform on it.
    size : image height and width in pixels.
    minority_share : fraction of patients in the minority group (rounded, at least 1 when > 0).
    seed : seed of the NumPy generator; equal seeds give identical cohorts.
    prevalence : target share of positive (observed) records over the whole cohort; the
        majority's disease share is set so that, after label noise, this is met in expectation.
    minority_prevalence : share of diseased patients in the minority (before label noise).
    label_noise : probability that an image's observed label is flipped.
    channels : 1 (grey) or 3 (RGB, with a group- and patient-specific tint).
    multilabel : add columns ``finding_lesion``, ``finding_line``, ``finding_opacity``.
    noise_sd : SD of the per-pixel Gaussian noise on the [0, 1] intensity scale.

    Returns
    -------
    records : DataFrame, one row per image, columns ``record_id``, ``patient_id``, ``label``
        (int 0/1, observed), [``finding_*``], ``group`` ("majority"/"minority"), ``sex``
        ("F"/"M"). Rows are ordered by patient.
    images : uint8 array (N, channels, size, size) aligned row-for-row with ``records``.
    """
    lo, hi = (int(v) for v in images_per_patient)
    if n_patients < 1:
        raise ValueError(f"n_patients={n_patients} must be >= 1")
    if not (1 <= lo <= hi):
        raise ValueError(f"images_per_patient={images_per_patient} must satisfy 1 <= low <= high")
    if size < 8:
        raise ValueError(f"size={size} must be >= 8")
    if not (0.0 <= minority_share < 1.0):
        raise ValueError(f"minority_share={minority_share} must be in [0, 1)")
    if channels not in (1, 3):
        raise ValueError(f"channels={channels} must be 1 or 3")
    for name, v in (
        ("prevalence", prevalence),
        ("minority_prevalence", minority_prevalence),
        ("label_noise", label_noise),
    ):
        if not (0.0 <= v <= 1.0):
            raise ValueError(f"{name}={v} must be in [0, 1]")

    rng = np.random.default_rng(seed)
    P = int(n_patients)

    # ---- patient level -------------------------------------------------------------------
    n_min = int(round(minority_share * P))
    if minority_share > 0:
        n_min = max(n_min, 1)
    minority = np.zeros(P, dtype=bool)
    minority[rng.permutation(P)[:n_min]] = True
    sex = np.where(rng.random(P) < 0.5, "F", "M")
    n_img = rng.integers(lo, hi + 1, size=P)

    # observed prevalence q = p(1 - eps) + (1 - p) eps  =>  true disease share p = (q - eps) / (1 - 2 eps)
    share = n_min / P
    p_true = (prevalence - label_noise) / max(1.0 - 2.0 * label_noise, 1e-12)
    p_major = (p_true - share * minority_prevalence) / max(1.0 - share, 1e-12)
    p_major = float(np.clip(p_major, 0.0, 1.0))
    p_disease = np.where(minority, minority_prevalence, p_major)
    diseased = rng.random(P) < p_disease

    base = np.where(minority, 0.28, 0.45) + rng.normal(0, 0.03, P)
    organ_level = np.where(minority, 0.22, 0.18) + rng.normal(0, 0.03, P)
    organ_c = 0.5 + rng.uniform(-0.1, 0.1, (P, 2))
    organ_ax = rng.uniform(0.22, 0.32, (P, 2))
    k_waves = 3
    wave_f = rng.uniform(0.5, 2.0, (P, k_waves, 2)) * rng.choice([-1, 1], (P, k_waves, 2))
    wave_phase = rng.uniform(0, 2 * np.pi, (P, k_waves))
    wave_amp = rng.uniform(0.02, 0.06, (P, k_waves))
    tex_theta = rng.uniform(0, np.pi, P)
    tex_freq = rng.uniform(0.28, 0.36, P) * size  # cycles per image (≈ 0.3 cycles / pixel)
    tex_amp = np.where(minority, 0.10, 0.0)
    # lesion: a fixed place inside the organ, patient-specific size
    ang = rng.uniform(0, 2 * np.pi, P)
    rad = rng.uniform(0.0, 0.5, P)
    lesion_c = organ_c + np.stack([np.cos(ang), np.sin(ang)], 1) * rad[:, None] * organ_ax
    lesion_r = rng.uniform(0.05, 0.08, P)
    tint = np.where(minority[:, None], [1.10, 0.90, 0.80], [1.0, 1.0, 1.0]) + rng.normal(0, 0.03, (P, 3))
    # other findings (multilabel variant), patient level
    has_line = rng.random(P) < 0.15
    line_theta = rng.uniform(0, np.pi, P)
    line_off = rng.uniform(-0.15, 0.15, P)
    has_opacity = rng.random(P) < 0.2
    opacity_side = rng.choice([-1.0, 1.0], P)

    # ---- image level ---------------------------------------------------------------------
    pid = np.repeat(np.arange(P), n_img)
    N = pid.size
    shift = rng.normal(0, 1.0 / size, (N, 2)) * 1.5  # ≈ 1.5 px jitter
    gain = 1.0 + rng.normal(0, 0.03, N)
    flip_label = rng.random(N) < label_noise

    coords = (np.arange(size) + 0.5) / size
    yy = coords[None, :, None] - shift[:, 0, None, None]  # (N, S, 1)
    xx = coords[None, None, :] - shift[:, 1, None, None]  # (N, 1, S)

    def P_(a: np.ndarray) -> np.ndarray:  # patient parameter broadcast to (N, 1, 1)
        return a[pid][:, None, None]

    img = P_(base) + np.zeros((N, size, size))
    for k in range(k_waves):  # low-frequency background field
        img += P_(wave_amp[:, k]) * np.cos(
            2 * np.pi * (P_(wave_f[:, k, 0]) * yy + P_(wave_f[:, k, 1]) * xx) + P_(wave_phase[:, k])
        )
    r = np.sqrt(
        ((yy - P_(organ_c[:, 0])) / P_(organ_ax[:, 0])) ** 2 + ((xx - P_(organ_c[:, 1])) / P_(organ_ax[:, 1])) ** 2
    )
    organ = _sigmoid(-(r - 1.0) / 0.06)
    img += P_(organ_level) * organ
    img += (
        P_(tex_amp)
        * organ
        * np.cos(2 * np.pi * P_(tex_freq) * (yy * P_(np.cos(tex_theta)) + xx * P_(np.sin(tex_theta))))
    )
    d2 = ((yy - P_(lesion_c[:, 0])) ** 2 + (xx - P_(lesion_c[:, 1])) ** 2) / P_(lesion_r) ** 2
    blob = np.exp(-0.5 * d2)
    ring = np.exp(-0.5 * (np.sqrt(d2) - 1.5) ** 2 / 0.35**2)
    lesion = np.where(P_(minority), -0.30 * ring, 0.35 * blob)
    img += P_(diseased.astype(float)) * lesion
    if multilabel:
        dist = np.abs((yy - 0.5) * P_(np.cos(line_theta)) - (xx - 0.5) * P_(np.sin(line_theta)) - P_(line_off))
        img += P_(has_line.astype(float)) * 0.25 * np.exp(-0.5 * (dist * size / 0.7) ** 2)
        side = _sigmoid(P_(opacity_side) * (xx - 0.5) / 0.08)
        img += P_(has_opacity.astype(float)) * 0.15 * side * organ
    img = img * gain[:, None, None] + rng.normal(0, noise_sd, (N, size, size))

    if channels == 3:
        img = img[:, None, :, :] * tint[pid][:, :, None, None]
    else:
        img = img[:, None, :, :]
    images = np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)

    true_label = diseased[pid]
    label = np.where(flip_label, ~true_label, true_label).astype(np.int64)
    within = np.concatenate([np.arange(k) for k in n_img])
    records = pd.DataFrame(
        {
            "record_id": [f"syn-p{p:05d}-i{i}" for p, i in zip(pid, within, strict=True)],
            "patient_id": [f"syn-p{p:05d}" for p in pid],
            "label": label,
        }
    )
    if multilabel:
        records["finding_lesion"] = label
        records["finding_line"] = has_line[pid].astype(np.int64)
        records["finding_opacity"] = has_opacity[pid].astype(np.int64)
    records["group"] = pd.Categorical(
        np.where(minority[pid], "minority", "majority"), categories=["majority", "minority"]
    )
    records["sex"] = pd.Categorical(sex[pid], categories=["F", "M"])
    return records, images
