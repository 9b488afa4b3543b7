"""Batched augmentations: correctness against explicit per-image slicing, randomness, vmap."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.func import vmap

from mia_audit.train.augment import hflip, normalize_uint8, random_crop_flip, signal_shift_scale


def distinct_images(n, c=2, h=8, w=8):
    """uint8 images whose pixels are distinct within each image (so a crop is identifiable)."""
    base = torch.arange(c * h * w).reshape(c, h, w) % 251
    return ((base[None] + torch.arange(n)[:, None, None, None]) % 256).to(torch.uint8)


def candidates(img, pad):
    """All (dy, dx, flipped) crops of one image, computed one by one with plain slicing."""
    c, h, w = img.shape
    p = F.pad(img[None].float(), (pad,) * 4, mode="reflect")[0].to(img.dtype)
    out = {}
    for dy in range(2 * pad + 1):
        for dx in range(2 * pad + 1):
            crop = p[:, dy : dy + h, dx : dx + w]
            out[(dy, dx, False)] = crop
            out[(dy, dx, True)] = crop.flip(-1)
    return out


def identify(out_img, cands):
    return [k for k, v in cands.items() if torch.equal(v, out_img)]


def test_crop_flip_shapes_dtype_and_each_output_is_a_valid_crop():
    x = distinct_images(48)
    g = torch.Generator().manual_seed(0)
    y = random_crop_flip(x, pad=2, generator=g)
    assert y.shape == x.shape and y.dtype == torch.uint8
    found = []
    for i in range(len(x)):
        keys = identify(y[i], candidates(x[i], 2))
        assert keys, f"output {i} is not a reflect-padded crop of its input"
        found.append(keys[0])
    offsets = {(dy, dx) for dy, dx, _ in found}
    flips = [f for _, _, f in found]
    assert len(offsets) >= 8  # 25 possible offsets, 48 draws: crops differ per image
    assert 0 < sum(flips) < len(flips)  # some flipped, some not


def test_flip_really_flips_and_pad0_noflip_is_identity():
    x = distinct_images(400, c=1, h=4, w=5)
    g = torch.Generator().manual_seed(1)
    y = random_crop_flip(x, pad=0, flip=True, generator=g)
    is_same = torch.tensor([torch.equal(a, b) for a, b in zip(y, x, strict=True)])
    is_flipped = torch.tensor([torch.equal(a, b.flip(-1)) for a, b in zip(y, x, strict=True)])
    assert torch.all(is_same ^ is_flipped)
    assert 0.4 < is_flipped.float().mean() < 0.6
    assert torch.equal(random_crop_flip(x, pad=0, flip=False), x)


def test_crop_flip_determinism_with_seeded_generator():
    x = distinct_images(32)
    a = random_crop_flip(x, generator=torch.Generator().manual_seed(7), pad=3)
    b = random_crop_flip(x, generator=torch.Generator().manual_seed(7), pad=3)
    c = random_crop_flip(x, generator=torch.Generator().manual_seed(8), pad=3)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_crop_flip_on_ensemble_batch_before_vmap_and_inside_vmap():
    m, b = 3, 16
    x = distinct_images(b).unsqueeze(0).expand(m, -1, -1, -1, -1).contiguous()  # same data per model
    y = random_crop_flip(x, pad=2, generator=torch.Generator().manual_seed(3))
    assert y.shape == x.shape
    assert not torch.equal(y[0], y[1])  # each model gets its own draws
    torch.manual_seed(4)
    z = vmap(lambda xb: random_crop_flip(xb, pad=2), randomness="different")(x)
    assert z.shape == x.shape
    assert not torch.equal(z[0], z[1]) and not torch.equal(z[1], z[2])
    for j in (0, 5):
        for k in range(m):
            assert identify(z[k, j], candidates(x[k, j], 2)), "vmap path produced an invalid crop"


def test_hflip():
    x = torch.arange(24).reshape(1, 2, 3, 4)
    assert torch.equal(hflip(x)[..., 0], x[..., 3])
    assert torch.equal(hflip(hflip(x)), x)


def test_signal_shift_scale_is_a_scaled_circular_shift():
    torch.manual_seed(0)
    x = 1.0 + torch.rand(20, 3, 60)
    y = signal_shift_scale(x, max_shift=5, scale=(0.8, 1.2), generator=torch.Generator().manual_seed(0))
    assert y.shape == x.shape
    shifts, amps = [], []
    for i in range(len(x)):
        hits = []
        for s in range(-5, 6):
            ratio = y[i] / torch.roll(x[i], s, dims=-1)
            if torch.allclose(ratio, ratio.flatten()[0].expand_as(ratio), atol=1e-5):
                hits.append((s, ratio.flatten()[0].item()))
        assert len(hits) == 1, f"signal {i} is not a single scaled roll of its input"
        shifts.append(hits[0][0])
        amps.append(hits[0][1])
    assert all(0.8 <= a <= 1.2 for a in amps)
    assert len(set(shifts)) > 3 and len(set(np.round(amps, 4))) > 10


def test_signal_shift_scale_determinism_and_vmap():
    x = torch.randn(3, 8, 12, 100)
    a = signal_shift_scale(x, generator=torch.Generator().manual_seed(2))
    b = signal_shift_scale(x, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b)
    xs = x[:1].expand(3, -1, -1, -1)
    z = vmap(lambda s: signal_shift_scale(s, max_shift=20), randomness="different")(xs)
    assert z.shape == xs.shape and not torch.allclose(z[0], z[1])
    with pytest.raises(ValueError, match="scale"):
        signal_shift_scale(x, scale=(1.2, 0.8))


def test_normalize_uint8_matches_numpy():
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (2, 4, 3, 5, 5), dtype=np.uint8)
    mean, std = [0.5, 0.4, 0.3], [0.2, 0.25, 0.3]
    out = normalize_uint8(torch.from_numpy(arr), mean, std)
    ref = (arr / 255.0 - np.array(mean)[:, None, None]) / np.array(std)[:, None, None]
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-5, atol=1e-5)
    assert out.dtype == torch.float32
    vm = vmap(lambda t: normalize_uint8(t, mean, std))(torch.from_numpy(arr))
    torch.testing.assert_close(vm, out)
    with pytest.raises(TypeError, match="uint8"):
        normalize_uint8(torch.zeros(1, 3, 2, 2), mean, std)
    with pytest.raises(ValueError, match="mean"):
        normalize_uint8(torch.zeros(1, 3, 2, 2, dtype=torch.uint8), [0.5, 0.5], std)
