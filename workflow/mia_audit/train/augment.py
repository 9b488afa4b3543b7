"""Batched, on-device data augmentation for image and signal ensembles.

Every function works on whole batches with tensor operations (no Python loop over
images) and on any leading batch shape, so it can be used in two ways:

* **before vmap** on an ensemble batch of shape (M, B, C, H, W) / (M, B, C, T): every
  image of every model draws its own random crop, flip, shift or scale. This is the
  recommended path; it accepts a seeded ``torch.Generator`` for reproducibility.
* **inside** ``torch.func.vmap(..., randomness="different")`` on (B, C, H, W) per model,
  with ``generator=None`` (vmap does not support explicit generators; each model then
  draws its own randomness from the global RNG).

Images stay uint8 in memory and on the device; :func:`normalize_uint8` turns them into
normalised float on the fly, after the (dtype-agnostic) geometric augmentation.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

__all__ = ["random_crop_flip", "hflip", "signal_shift_scale", "normalize_uint8"]


def _randint(high: int, shape: tuple, device, generator: torch.Generator | None) -> torch.Tensor:
    """Integers uniform on [0, high), drawn on the generator's device, moved to ``device``."""
    if generator is None:
        return torch.randint(0, high, shape, device=device)
    return torch.randint(0, high, shape, generator=generator, device=generator.device).to(device)


def _rand(shape: tuple, device, generator: torch.Generator | None) -> torch.Tensor:
    if generator is None:
        return torch.rand(shape, device=device)
    return torch.rand(shape, generator=generator, device=generator.device).to(device)


def random_crop_flip(
    x: torch.Tensor, pad: int = 4, flip: bool = True, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Random crop of the reflect-padded image and random horizontal flip, per image.

    x: (..., C, H, W), any dtype (uint8 is fine). Each image is padded by ``pad`` pixels
    on every side with reflection, then an H x W window at an offset drawn uniformly from
    {0, …, 2·pad}² is cut out, and with probability 1/2 (when ``flip``) mirrored left–right.
    The crop is two ``torch.gather`` calls with a per-image index (rows, then columns; the
    flip reverses the column index), so it runs on the device without loops.

    Works before vmap on (M, B, C, H, W) with or without ``generator``, and inside
    ``vmap(..., randomness="different")`` with ``generator=None``.
    """
    if x.dim() < 3:
        raise ValueError(f"random_crop_flip expects (..., C, H, W); got shape {tuple(x.shape)}")
    if pad < 0:
        raise ValueError(f"pad={pad} must be >= 0")
    *lead, c, h, w = x.shape
    if pad >= h or pad >= w:
        raise ValueError(f"pad={pad} must be smaller than the image size {(h, w)} for reflect padding")
    xb = x.reshape(-1, c, h, w)
    n = xb.shape[0]
    dev = x.device
    if pad > 0:
        # reflect padding is not implemented for integer tensors; pad the float view then cast back
        xp = F.pad(xb.float() if not xb.is_floating_point() else xb, (pad, pad, pad, pad), mode="reflect")
        xp = xp.to(x.dtype)
    else:
        xp = xb
    offsets = _randint(2 * pad + 1, (n, 2), dev, generator)
    oy, ox = offsets[:, 0], offsets[:, 1]
    ar_h = torch.arange(h, device=dev)
    ar_w = torch.arange(w, device=dev)
    rows = oy[:, None] + ar_h  # (n, h)
    if flip:
        flips = _rand((n,), dev, generator) < 0.5
        cols = ox[:, None] + torch.where(flips[:, None], (w - 1) - ar_w, ar_w)  # (n, w)
    else:
        cols = ox[:, None] + ar_w
    wp = w + 2 * pad
    out = torch.gather(xp, 2, rows[:, None, :, None].expand(n, c, h, wp))
    out = torch.gather(out, 3, cols[:, None, None, :].expand(n, c, h, w))
    return out.reshape(*lead, c, h, w)


def hflip(x: torch.Tensor) -> torch.Tensor:
    """Deterministic horizontal flip of (..., H, W) images: a fixed second query view."""
    return x.flip(-1)


def signal_shift_scale(
    x: torch.Tensor,
    max_shift: int = 50,
    scale: tuple[float, float] = (0.9, 1.1),
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Random circular time shift and amplitude scaling per signal (e.g. 12-lead ECG).

    x: (..., C, T) float. For each signal, s ~ U{−max_shift, …, max_shift} and
    a ~ U(scale[0], scale[1]) are drawn once (shared by all leads of the signal) and
    y[c, t] = a · x[c, (t − s) mod T]. Done with a batched gather.

    Works before vmap on (M, B, C, T) with or without ``generator``, and inside
    ``vmap(..., randomness="different")`` with ``generator=None``.
    """
    if x.dim() < 2:
        raise ValueError(f"signal_shift_scale expects (..., C, T); got shape {tuple(x.shape)}")
    lo, hi = float(scale[0]), float(scale[1])
    if not (0 < lo <= hi):
        raise ValueError(f"scale={scale} must satisfy 0 < low <= high")
    *lead, c, t = x.shape
    xb = x.reshape(-1, c, t)
    n = xb.shape[0]
    dev = x.device
    shift = _randint(2 * max_shift + 1, (n,), dev, generator) - max_shift
    amp = lo + (hi - lo) * _rand((n,), dev, generator)
    idx = torch.remainder(torch.arange(t, device=dev)[None, :] - shift[:, None], t)  # (n, t)
    out = torch.gather(xb, 2, idx[:, None, :].expand(n, c, t))
    out = out * amp.to(out.dtype)[:, None, None]
    return out.reshape(*lead, c, t)


def normalize_uint8(
    x_uint8: torch.Tensor,
    mean: Sequence[float] | torch.Tensor,
    std: Sequence[float] | torch.Tensor,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """uint8 images (..., C, H, W) → float (x / 255 − mean[c]) / std[c].

    ``mean`` and ``std`` are per channel on the [0, 1] scale (length C, or length 1 to
    broadcast). Pure tensor arithmetic: fine before or inside vmap.
    """
    if x_uint8.dtype != torch.uint8:
        raise TypeError(f"normalize_uint8 expects a uint8 tensor; got {x_uint8.dtype}")
    c = x_uint8.shape[-3]
    m = torch.as_tensor(mean, dtype=dtype, device=x_uint8.device).reshape(-1)
    s = torch.as_tensor(std, dtype=dtype, device=x_uint8.device).reshape(-1)
    for name, v in (("mean", m), ("std", s)):
        if v.numel() not in (1, c):
            raise ValueError(f"{name} has {v.numel()} values; expected 1 or {c} (channels)")
    if torch.any(s <= 0):
        raise ValueError(f"std={s.tolist()} must be positive")
    return (x_uint8.to(dtype) / 255.0 - m[:, None, None]) / s[:, None, None]
