"""The SYNTHETIC imaging cohort: structure, shares, determinism, learnability."""

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score

from mia_audit.data.synthetic import make_synthetic_cohort


def test_shapes_columns_and_alignment():
    df, im = make_synthetic_cohort()
    assert im.dtype == np.uint8 and im.shape == (len(df), 1, 32, 32)
    assert list(df.columns) == ["record_id", "patient_id", "label", "group", "sex"]
    assert df.record_id.is_unique
    assert set(df.group) <= {"majority", "minority"} and set(df.sex) <= {"F", "M"}
    assert set(df.label) <= {0, 1}
    df3, im3 = make_synthetic_cohort(n_patients=10, size=48, channels=3, multilabel=True)
    assert im3.shape == (len(df3), 3, 48, 48)
    assert {"finding_lesion", "finding_line", "finding_opacity"} <= set(df3.columns)
    assert (df3.finding_lesion == df3.label).all()


def test_patients_have_several_correlated_images():
    df, im = make_synthetic_cohort(n_patients=120, images_per_patient=(1, 6), seed=3)
    counts = df.groupby("patient_id").size()
    assert len(counts) == 120 and counts.min() >= 1 and counts.max() <= 6
    assert (counts > 1).mean() > 0.6
    # patient-level attributes are constant within a patient
    assert (df.groupby("patient_id")[["group", "sex"]].nunique(dropna=False) == 1).all().all()
    # images of one patient look alike: within-patient pixel correlation beats between-patient
    flat = im.reshape(len(im), -1).astype(float)
    flat = (flat - flat.mean(1, keepdims=True)) / flat.std(1, keepdims=True)
    corr = flat @ flat.T / flat.shape[1]
    pid = df.patient_id.to_numpy()
    same = pid[:, None] == pid[None, :]
    off_diag = ~np.eye(len(pid), dtype=bool)
    assert corr[same & off_diag].mean() > corr[~same].mean() + 0.2


def test_minority_share_and_distinct_appearance():
    df, im = make_synthetic_cohort(n_patients=200, minority_share=0.1, seed=1)
    per_patient = df.drop_duplicates("patient_id")
    assert (per_patient.group == "minority").sum() == 20
    minority = (df.group == "minority").to_numpy()
    # darker and with more high-frequency energy (texture) than the majority
    mean_int = im.reshape(len(im), -1).mean(1)
    assert mean_int[minority].mean() < mean_int[~minority].mean() - 20
    x = im[:, 0].astype(float)
    power = np.abs(np.fft.fft2(x - x.mean((1, 2), keepdims=True))) ** 2
    f = np.fft.fftfreq(x.shape[-1])
    radius = np.hypot(f[:, None], f[None, :])
    band = power[:, (radius > 0.25) & (radius < 0.4)].mean(1)  # the texture's band, cycles/pixel
    assert band[minority].mean() > 2.0 * band[~minority].mean()


def test_label_prevalence_and_minority_distribution():
    df, _ = make_synthetic_cohort(n_patients=3000, seed=2, prevalence=0.1, minority_prevalence=0.2, label_noise=0.02)
    assert abs(df.label.mean() - 0.1) < 0.02
    by = df.groupby("group", observed=True).label.mean()
    # expected minority share of positive records: 0.2 (1 - 0.02) + 0.8 * 0.02 = 0.212
    assert abs(by["minority"] - 0.212) < 0.05 and by["minority"] > by["majority"] + 0.05


def test_determinism_from_seed():
    a_df, a_im = make_synthetic_cohort(n_patients=30, seed=5)
    b_df, b_im = make_synthetic_cohort(n_patients=30, seed=5)
    c_df, c_im = make_synthetic_cohort(n_patients=30, seed=6)
    pd.testing.assert_frame_equal(a_df, b_df)
    assert np.array_equal(a_im, b_im)
    assert a_im.shape != c_im.shape or not np.array_equal(a_im, c_im)


def test_invalid_arguments_name_the_value():
    with pytest.raises(ValueError, match="images_per_patient"):
        make_synthetic_cohort(images_per_patient=(3, 2))
    with pytest.raises(ValueError, match="minority_share"):
        make_synthetic_cohort(minority_share=1.5)


def test_small_cnn_learns_the_label_above_chance():
    df, im = make_synthetic_cohort(n_patients=500, seed=11, prevalence=0.3)
    pnum = df.patient_id.str[-5:].astype(int).to_numpy()
    train, test = pnum % 2 == 0, pnum % 2 == 1  # split by patient, as the workflow does
    x = torch.from_numpy(im).float() / 255.0
    y = torch.tensor(df.label.to_numpy(), dtype=torch.float32)
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 16, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(16, 32, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(32, 32, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveMaxPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(32, 1),
    )
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    xtr, ytr = x[train], y[train]
    for _ in range(8):
        perm = torch.randperm(len(xtr))
        for idx in perm.split(64):
            loss = torch.nn.functional.binary_cross_entropy_with_logits(net(xtr[idx]).squeeze(1), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        score = net(x[test]).squeeze(1).numpy()
    auc = roc_auc_score(y[test].numpy(), score)
    assert auc > 0.65  # chance is 0.5; this seed reaches about 0.76
