"""Zarr helpers shared by the stages that write stores (inputs, membership, cubes)."""

from __future__ import annotations

import contextlib
import warnings


@contextlib.contextmanager
def quiet_zarr():
    """Silence zarr's notices that fixed-length strings and consolidated metadata are not yet
    in the Zarr v3 specification; zarr-python ≥ 3 and xarray read both."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have a Zarr V3 specification.*")
        warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part.*")
        yield
