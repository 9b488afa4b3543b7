"""Foundations shared by every stage: the torch device of config key ``device`` and the
threads of a job. Light to import: torch is imported only when a device is resolved.
"""

from __future__ import annotations

from collections.abc import Mapping

from mia_audit.errors import DataError


def resolve_device(device: str = "auto"):
    """The ``torch.device`` of config key ``device``: ``auto`` → CUDA when present, else the CPU.

    ``cuda`` (or ``cuda:N``) without a CUDA device is a :class:`DataError` naming the key.
    """
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise DataError(
            f"config key device is {device!r} but no CUDA device is available; "
            "set device: auto (falls back to the CPU) or device: cpu"
        )
    return torch.device(device)


def torch_threads(threads: int, environ: Mapping[str, str] | None = None) -> int:
    """PyTorch threads of a shard job: Snakemake's ``threads`` for the job (the rule's
    ``cluster.cpus_per_job``, capped by ``--cores``), and never more than the CPUs SLURM
    granted the job (``SLURM_CPUS_PER_TASK``, i.e. the ``cpus_per_task`` resource, also when
    a profile overrides it), so that torch does not oversubscribe the allocation."""
    import os

    environ = os.environ if environ is None else environ
    n = max(1, int(threads))
    granted = str(environ.get("SLURM_CPUS_PER_TASK", "")).strip()
    return min(n, int(granted)) if granted.isdigit() and int(granted) > 0 else n
