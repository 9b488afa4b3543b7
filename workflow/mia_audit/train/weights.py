"""The stacked weights of a shard of target models (safetensors: no pickle, metadata as JSON)."""

from __future__ import annotations

import json


def save_shard(path, params: dict, buffers: dict, meta: dict) -> None:
    """Stacked weights of a shard as safetensors (no pickle); ``meta`` is stored as JSON."""
    from safetensors.torch import save_file  # imports torch: only the jobs that need it pay for it

    tensors = {f"param.{k}": v.detach().contiguous().cpu() for k, v in params.items()}
    tensors.update({f"buffer.{k}": v.detach().contiguous().cpu() for k, v in buffers.items()})
    save_file(tensors, str(path), metadata={"meta": json.dumps(meta)})


def load_shard(path, device="cpu") -> tuple[dict, dict, dict]:
    """Stacked weights and metadata of a shard; a damaged file is a DataError naming it."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    from mia_audit.errors import DataError

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads(f.metadata()["meta"])
        tensors = load_file(str(path), device=str(device))
    except MemoryError:
        raise
    except Exception as e:  # safetensors raises its own SafetensorError (and OSError, KeyError …)
        raise DataError(f"weights file {path} cannot be read ({' '.join(str(e).split())}); retrain its shard") from e
    params = {k[len("param.") :]: v for k, v in tensors.items() if k.startswith("param.")}
    buffers = {k[len("buffer.") :]: v for k, v in tensors.items() if k.startswith("buffer.")}
    return params, buffers, meta
