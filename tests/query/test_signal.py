import mpmath
import numpy as np
import torch

from mia_audit.query.membership_signal import logit_confidence, multilabel_signal


def _reference(z, y_set):
    """φ in 60-digit arithmetic: log Σ_{c∈y} p_c − log Σ_{c∉y} p_c with p = softmax(z)."""
    mpmath.mp.dps = 60
    e = [mpmath.e ** mpmath.mpf(float(v)) for v in z]
    s = sum(e)
    p_in = sum(e[c] for c in y_set) / s
    p_out = sum(e[c] for c in range(len(z)) if c not in y_set) / s
    return float(mpmath.log(p_in) - mpmath.log(p_out))


def test_matches_high_precision_reference_on_random_logits():
    rng = np.random.default_rng(0)
    z = rng.normal(scale=5, size=(200, 5)).astype(np.float32)
    y = rng.integers(0, 5, size=200)
    got = logit_confidence(torch.from_numpy(z), torch.from_numpy(y)).numpy()
    ref = np.array([_reference(z[i], {y[i]}) for i in range(200)])
    np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-9)


def test_stable_where_float32_softmax_saturates():
    # p_y rounds to 1 in float32, so log p − log(1 − p) computed naively is inf
    z = torch.tensor([[60.0, -40.0, -45.0], [-80.0, 30.0, 0.0]])
    y = torch.tensor([0, 0])
    got = logit_confidence(z, y)
    p = torch.softmax(z, -1)
    naive = torch.log(p[:, 0]) - torch.log(1 - p[:, 0])
    assert not torch.isfinite(naive).all()
    assert torch.isfinite(got).all()
    np.testing.assert_allclose(got.numpy(), [_reference(z[0].numpy(), {0}), _reference(z[1].numpy(), {0})], rtol=1e-9)


def test_binary_signal_is_the_logit_margin():
    z = torch.tensor([[0.3, 1.7]])
    assert torch.allclose(logit_confidence(z, torch.tensor([1])), torch.tensor([1.4], dtype=torch.float64))
    assert torch.allclose(logit_confidence(z, torch.tensor([0])), torch.tensor([-1.4], dtype=torch.float64))


def test_multilabel_signal_is_each_labels_own_margin():
    z = torch.tensor([[2.0, -1.0, 0.5]])
    t = torch.tensor([[1, 0, 0]])
    got = multilabel_signal(z, t)
    # log σ(z) − log(1 − σ(z)) = z for a present label, −z for an absent one
    assert torch.allclose(got, torch.tensor([[2.0, 1.0, -0.5]], dtype=torch.float64))
