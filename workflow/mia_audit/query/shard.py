"""Query one shard of trained target models on every record, for its rows of the confidence cube.

The membership signal written to the cube (one number per model, record and view):

* multiclass: φ = log Σ_{c∈y} p_c − log Σ_{c∉y} p_c (softmax; :func:`membership_signal.logit_confidence`);
* multilabel: the mean over the K labels of the per-label sigmoid signal φ_k = ±z_k
  (:func:`membership_signal.multilabel_signal`), φ = (1/K) Σ_k φ_k. Each φ_k is the logit-scaled
  confidence of label k's own Bernoulli output, so the mean is the average log-odds of
  being right; it keeps the cube (model, record[, view]) and the audit unchanged.

The views are the cube's (:mod:`mia_audit.train.shard` checks them before training).

Every family's φ is computed here, from logits. A network shard's logits come from its stacked
weights (one vectorised forward pass per view, or one model at a time for a user's network that
vmap cannot run). An estimator shard's logits on the records as stored were computed by its train
job while the models were in memory (:func:`mia_audit.train.shard.train_estimator_shard`) and are
read from the shard's file, whose SHA-256 the query job has checked; for a partial-access level
the stored models are read back (their libraries' own formats, no pickle) and queried on the
altered inputs.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import numpy as np
import torch

from mia_audit import integrity
from mia_audit.data import store
from mia_audit.device import resolve_device
from mia_audit.errors import DataError
from mia_audit.query import membership_signal
from mia_audit.train import weights
from mia_audit.train.ensemble import (
    predict_each,
    predict_ensemble,
    query_batch_size,
)
from mia_audit.train.shard import apply_view, builder, input_transform, read_labels


def confidence(logits: torch.Tensor, y: torch.Tensor, task: str) -> torch.Tensor:
    """The cube's signal from logits (models, records, outputs): (models, records) float64.

    multiclass: :func:`membership_signal.logit_confidence`; multilabel: mean over labels of
    :func:`membership_signal.multilabel_signal` (see the module docstring).
    """
    if task == "multilabel":
        return membership_signal.multilabel_signal(logits, y.expand(logits.shape)).mean(-1)
    return membership_signal.logit_confidence(logits, y.expand(logits.shape[:2]))


def _cube_views(cube_path) -> list[str]:
    import zarr

    root = zarr.open_group(str(cube_path), mode="r")
    return [str(v) for v in root["view"][...]] if "view" in root else ["original"]


def query_shard(
    weights_path,
    records_path,
    inputs_path,
    cube_path,
    device: str,
    threads: int,
    done_path,
    log: Callable[[str], None] = print,
    access: dict | None = None,
    rows_path=None,
) -> None:
    """Query the shard's models on every record, per view, into the shard's own store
    ``rows_path`` (:mod:`mia_audit.query.assemble`: assemble_cube puts them into the cube).

    ``cube_path`` is the cube's skeleton: its views (its ``view`` coordinate; one ``original``
    view when it has none) and record chunks. ``access`` maps an access level name to
    ``(level_spec, skeleton_path)``: for each, the inputs are altered by
    :func:`mia_audit.query.partial_access.apply_access` and queried into that level's rows
    (same layout; see :mod:`mia_audit.query.cube`).
    """
    from mia_audit.query import assemble

    if rows_path is None:
        raise ValueError("query_shard needs rows_path: the shard's own store of its rows")
    torch.set_num_threads(max(1, int(threads)))
    meta = weights.read_meta(weights_path)
    estimator = meta.get("kind") == "estimator"
    dev = torch.device("cpu") if estimator else resolve_device(device)
    records = store.read_records(records_path)
    X_np, attrs, modality, names = store.read_model_inputs(inputs_path)
    task, _, y_np = read_labels(records, attrs)
    y = torch.as_tensor(y_np, device=dev)
    models = meta["models"]
    if estimator:
        logits_of = _estimator_logits(weights_path, meta, bool(access), X_np.shape[0])
    else:
        logits_of = _network_logits(weights_path, meta, dev, modality, X_np.shape[1:])
    layers = [("full", None, cube_path)]
    for level, (spec, path) in (access or {}).items():
        layers.append((level, spec, path))
    t0 = time.perf_counter()
    summary = {
        "models": [models[0], models[-1] + 1],
        "records": int(X_np.shape[0]),
        "device": str(dev),
        "nonfinite": 0,
        "nonfinite_by_access": {},
        "cube_regions": {},
    }
    pool = (records["split"].astype(str) == "pool").to_numpy()
    for level, spec, path in layers:
        views = _cube_views(path)
        if spec is None:
            x_np = X_np
        else:
            from mia_audit.query.partial_access import apply_access

            pool_mean = X_np[pool].mean(axis=0) if modality == "signal" else None
            x_np = apply_access(X_np, spec, modality, names, pool_mean=pool_mean)
        X = torch.as_tensor(x_np, device=dev)
        phi = np.empty((len(models), X.shape[0], len(views)), dtype=np.float32)
        for v, view in enumerate(views):
            Xv = apply_view(X, view, modality)
            logits = logits_of(Xv, spec is None and view == "original")
            phi[:, :, v] = confidence(logits, y, task).cpu().numpy()
            del Xv, logits
        del X
        written = phi if len(views) > 1 or _has_view(path) else phi[:, :, 0]
        region = integrity.cube_region(path, models[0], written)  # checked by the audit, in the assembled cube
        assemble.write_rows(rows_path, level, models[0], written, region["record_chunk"])
        summary["cube_regions"][level] = region
        nonfinite = int((~np.isfinite(phi)).sum())
        summary["nonfinite_by_access"][level] = nonfinite
        if level == "full":
            summary["nonfinite"] = nonfinite
        log(
            f"queried models {models[0]}–{models[-1]} on {phi.shape[1]} records, access {level!r}, views {views}"
            + (" (the logits its train job computed)" if estimator and spec is None else "")
            + (f"; {nonfinite} non-finite confidences" if nonfinite else "")
        )
    summary["seconds"] = round(time.perf_counter() - t0, 3)
    with open(done_path, "w") as fh:
        json.dump(summary, fh)


def _network_logits(weights_path, meta: dict, dev, modality: str, record_shape):
    """logits(X, as_stored) of a network shard: its models' logits on the inputs X (models, records, outputs)."""
    params, buffers, _ = weights.load_shard(weights_path, dev)
    build = builder(meta)
    base = build().to("meta")
    transform = None if modality == "table" else input_transform(meta, dev, False)
    amp = bool(meta["train"].get("amp")) and modality != "table"
    bs = query_batch_size(len(meta["models"]), record_shape)
    vectorised = meta.get("vectorised", True)  # shards written before user networks existed are vectorised

    def logits_of(X, as_stored):
        if vectorised:
            return predict_ensemble(base, params, buffers, X, batch_size=bs, transform=transform, amp=amp)
        return predict_each(build, params, buffers, X, batch_size=bs, transform=transform, amp=amp)

    return logits_of


def _estimator_logits(weights_path, meta: dict, load_models: bool, n_records: int):
    """logits(X, as_stored) of an estimator shard: the logits its train job stored for the inputs as
    stored; for other inputs (a partial-access level), those of its models read back from the file."""
    from mia_audit.train.families import estimator_adapter

    blobs, stored, _ = weights.load_estimator_shard(weights_path, read_models=load_models)
    if stored.shape[:2] != (len(meta["models"]), n_records):
        raise DataError(
            f"{weights_path} holds logits of {stored.shape[0]} models on {stored.shape[1]} records, but the "
            f"shard has {len(meta['models'])} models and the data set {n_records} records; retrain its shard"
        )
    adapter = estimator_adapter(meta["model"])
    fitted = []

    def logits_of(X, as_stored):
        if as_stored:
            return torch.as_tensor(stored)
        if not fitted:
            fitted.extend(adapter.load(b, meta["model"]) for b in blobs)
        x = X.cpu().numpy()
        return torch.as_tensor(np.stack([adapter.logits(f, x, meta["num_outputs"]) for f in fitted]))

    return logits_of


def _has_view(cube_path) -> bool:
    import zarr

    return "view" in zarr.open_group(str(cube_path), mode="r")
