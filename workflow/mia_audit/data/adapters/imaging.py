"""Decoding and resizing of images: the one preprocessing rule shared by every image data set.

Rule: decode (Pillow for JPEG/PNG, pydicom for DICOM, arrays as given) → grey (``L``) or
RGB per ``channels`` (1 or 3) → resize so that the *shorter* side equals ``size``
(bilinear, aspect ratio kept) → center crop to ``size × size`` → uint8 (channel, y, x).

DICOM: the stored values go through the modality LUT and the VOI LUT / window of the file
(pydicom ``apply_modality_lut`` and ``apply_voi_lut``), MONOCHROME1 images are inverted so
that high values are bright, and the result is min–max scaled to 0…255 per image.
Arrays (e.g. the fundus photos stored in npz files) are min–max scaled the same way
unless they already are uint8.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from mia_audit.errors import DataError


def _to_uint8(a: np.ndarray) -> np.ndarray:
    """Min–max scale an array to uint8 (a constant image becomes 0)."""
    if a.dtype == np.uint8:
        return a
    a = a.astype(np.float64)
    lo, hi = np.nanmin(a), np.nanmax(a)
    if not np.isfinite(lo) or hi <= lo:
        return np.zeros(a.shape, dtype=np.uint8)
    return np.round((a - lo) / (hi - lo) * 255.0).astype(np.uint8)


def read_dicom(path) -> Image.Image:
    import pydicom
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    ds = pydicom.dcmread(str(path))
    arr = ds.pixel_array
    arr = apply_modality_lut(arr, ds)
    arr = apply_voi_lut(arr, ds)
    if str(getattr(ds, "PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        arr = np.nanmax(arr) - arr
    return Image.fromarray(_to_uint8(np.asarray(arr)))


def array_image(a: np.ndarray) -> Image.Image:
    """A 2-D (y, x) or 3-D (y, x, 3) array as a Pillow image."""
    a = np.asarray(a)
    if a.ndim == 3 and a.shape[0] in (1, 3) and a.shape[-1] not in (1, 3):
        a = np.moveaxis(a, 0, -1)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3):
        raise DataError(f"image array has shape {a.shape}; expected (y, x) or (y, x, 3)")
    return Image.fromarray(_to_uint8(a))


def open_image(path, size: int | None = None, mode: str = "L") -> Image.Image:
    """Decode a JPEG/PNG/DICOM file. JPEGs are decoded at reduced scale when far larger than ``size``."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"image file {path} does not exist")
    if path.suffix.lower() in (".dcm", ".dicom"):
        return read_dicom(path)
    try:
        img = Image.open(path)
        if size is not None and img.format == "JPEG":
            img.draft(mode, (size, size))  # DCT-domain downscale: keeps ≥ size on both sides
        img.load()
    except (OSError, SyntaxError) as e:
        raise DataError(f"cannot decode image {path}: {e}") from e
    return img


def resize_crop(img: Image.Image, size: int, channels: int) -> np.ndarray:
    """Shorter side → ``size`` (bilinear), center crop, uint8 (channels, size, size)."""
    if channels not in (1, 3):
        raise DataError(f"channels must be 1 (grey) or 3 (RGB), got {channels}")
    img = img.convert("L" if channels == 1 else "RGB")
    w, h = img.size
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    img = img.resize((nw, nh), Image.Resampling.BILINEAR)
    left, top = (nw - size) // 2, (nh - size) // 2
    img = img.crop((left, top, left + size, top + size))
    a = np.asarray(img, dtype=np.uint8)
    return a[None] if channels == 1 else np.ascontiguousarray(a.transpose(2, 0, 1))


def load_image(source, size: int, channels: int = 1) -> np.ndarray:
    """A file path or an array → uint8 (channels, size, size) by the rule of this module."""
    if isinstance(source, np.ndarray):
        img = array_image(source)
    else:
        img = open_image(source, size, "L" if channels == 1 else "RGB")
    return resize_crop(img, size, channels)
