"""The file of a shard of target models (safetensors: no pickle, metadata as JSON): a network
family's stacked weights, or an estimator family's models in their libraries' own formats."""

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


def read_meta(path) -> dict:
    """The metadata of a shard's file (either kind of family), without reading its tensors."""
    from safetensors import safe_open

    from mia_audit.errors import DataError

    try:
        with safe_open(str(path), framework="numpy") as f:
            return json.loads(f.metadata()["meta"])
    except MemoryError:
        raise
    except Exception as e:
        raise DataError(f"weights file {path} cannot be read ({' '.join(str(e).split())}); retrain its shard") from e


def save_estimator_shard(path, models: list[bytes], logits, meta: dict) -> None:
    """A shard of estimator-family models as safetensors (no pickle): tensor ``model.{i}`` holds
    model i's bytes in its library's own format (``meta["storage"]``), ``logits`` every model's
    logits on every record (models, records, classes) float64, computed by the train job while
    the models were in memory; ``meta`` is stored as JSON."""
    import numpy as np
    from safetensors.numpy import save_file

    tensors = {f"model.{i}": np.frombuffer(data, dtype=np.uint8).copy() for i, data in enumerate(models)}
    tensors["logits"] = np.ascontiguousarray(logits, dtype=np.float64)
    save_file(tensors, str(path), metadata={"meta": json.dumps(meta)})


def load_estimator_shard(path, read_models: bool = True) -> tuple[list[bytes], object, dict]:
    """(each model's bytes (empty unless ``read_models``), the stored logits (models, records, classes),
    metadata) of an estimator shard; a damaged file is a DataError naming it."""
    from safetensors import safe_open

    from mia_audit.errors import DataError

    try:
        with safe_open(str(path), framework="numpy") as f:
            meta = json.loads(f.metadata()["meta"])
            logits = f.get_tensor("logits")
            n = len(meta["models"])
            blobs = [f.get_tensor(f"model.{i}").tobytes() for i in range(n)] if read_models else []
    except MemoryError:
        raise
    except Exception as e:
        raise DataError(f"weights file {path} cannot be read ({' '.join(str(e).split())}); retrain its shard") from e
    return blobs, logits, meta
