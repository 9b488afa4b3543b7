"""One shard of target models: train it and save it (the query stage, :mod:`mia_audit.query.shard`,
puts its predictions into the cube).

Inputs of every modality come from inputs.zarr (:func:`mia_audit.data.store.read_model_inputs`);
images and signals are normalised per channel with pool statistics
(:func:`mia_audit.train.ensemble.channel_stats`, stored in the shard's metadata so the query
normalises as training did); multi-label data sets stack their ``label_<name>`` columns into a
(records, K) target. The query views (``original``, ``hflip``, ``shift``): docs/datasets.md.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from mia_audit.data import store
from mia_audit.device import resolve_device
from mia_audit.roc import roc_auc
from mia_audit.sampling import membership
from mia_audit.settings import complete
from mia_audit.train import weights
from mia_audit.train.ensemble import (
    InputTransform,
    TrainConfig,
    channel_stats,
    model_seed,
    predict_ensemble,
    query_batch_size,
    steps_per_epoch,
    train_ensemble,
)
from mia_audit.train.families import build_model

VIEWS = {"original": ("table", "image", "signal"), "hflip": ("image",), "shift": ("signal",)}


def builder(meta: dict):
    return partial(build_model, meta["model"], tuple(meta["input_shape"]), meta["num_outputs"])


def read_labels(records, attrs: dict) -> tuple[str, list[str], np.ndarray]:
    """(task, label_names, targets): int64 (records,) for multiclass, float32 (records, K) for multilabel."""
    label_names = json.loads(attrs["label_names"])
    task = attrs.get("task", "multiclass")
    if task == "multiclass":
        if "label" not in records:
            raise ValueError(
                f"records.parquet has no column 'label' (task multiclass); columns: {list(records.columns)}"
            )
        return task, label_names, records["label"].to_numpy(dtype=np.int64, copy=True)
    if task == "multilabel":
        cols = [f"label_{n}" for n in label_names]
        missing = [c for c in cols if c not in records]
        if missing:
            raise ValueError(
                f"records.parquet lacks the multi-label column(s) {missing} named by the inputs' "
                f"label_names {label_names}"
            )
        return task, label_names, records[cols].to_numpy(dtype=np.float32, copy=True)
    raise ValueError(f"inputs.zarr attribute task = {task!r}; expected 'multiclass' or 'multilabel'")


def macro_auc(y: np.ndarray, score: np.ndarray) -> float:
    """Macro ROC AUC over labels: the mean of the per-label AUCs of the labels that have both
    classes among the records (sklearn ``average='macro'`` restricted to those); NaN if none."""
    keep = [k for k in range(y.shape[1]) if 0 < y[:, k].sum() < len(y)]
    if not keep:
        return float("nan")
    from sklearn.metrics import roc_auc_score  # here: the query jobs do without scikit-learn

    return float(roc_auc_score(y[:, keep], score[:, keep], average="macro"))


def model_metrics(
    logits: torch.Tensor, y: torch.Tensor, member: np.ndarray, test: np.ndarray, task: str = "multiclass"
) -> list[dict]:
    """Per-model loss, accuracy and ROC AUC on its members (train) and on the test patients.

    multilabel: loss = mean BCE over records and labels, accuracy = share of correct
    (record, label) decisions at logit 0, AUC = :func:`macro_auc`.
    """
    out = []
    prob = (
        torch.softmax(logits.to(torch.float64), dim=-1)
        if task == "multiclass"
        else torch.sigmoid(logits.to(torch.float64))
    )
    for m in range(logits.shape[0]):
        row = {}
        for name, mask in (("train", member[m]), ("test", test)):
            idx = torch.as_tensor(np.flatnonzero(mask), device=logits.device)
            if idx.numel() == 0:
                continue
            lg, yy = logits[m, idx], y[idx]
            yy_np, p = yy.cpu().numpy(), prob[m, idx].cpu().numpy()
            if task == "multilabel":
                row[f"{name}_loss"] = float(F.binary_cross_entropy_with_logits(lg.float(), yy.float()))
                row[f"{name}_acc"] = float(((lg > 0) == (yy > 0.5)).float().mean())
                row[f"{name}_auc"] = macro_auc(yy_np, p)
                continue
            row[f"{name}_loss"] = float(F.cross_entropy(lg.float(), yy))
            row[f"{name}_acc"] = float((lg.argmax(-1) == yy).float().mean())
            if p.shape[1] == 2:  # NaN when one class only is among these records
                row[f"{name}_auc"] = roc_auc(yy_np == 1, p[:, 1])
                continue
            from sklearn.metrics import roc_auc_score

            try:
                row[f"{name}_auc"] = float(roc_auc_score(yy_np, p, multi_class="ovr", labels=np.arange(p.shape[1])))
            except ValueError:  # one class only among these records
                row[f"{name}_auc"] = float("nan")
        out.append(row)
    return out


def check_views(views, modality: str) -> None:
    """Fail early (before training) when a configured query view does not fit the inputs."""
    for view in views:
        apply_view(None, view, modality)


def apply_view(x: torch.Tensor | None, view: str, modality: str) -> torch.Tensor | None:
    """A fixed query view of raw inputs (..., C, H, W) or (..., L, T) (docs/datasets.md)."""
    if view not in VIEWS:
        raise ValueError(f"query view {view!r} (config key query.views) is unknown; known: {list(VIEWS)}")
    if modality not in VIEWS[view]:
        raise ValueError(
            f"query view {view!r} (config key query.views) does not apply to {modality} inputs; "
            f"views for {modality}: {[v for v, m in VIEWS.items() if modality in m]}"
        )
    if x is None:
        return None
    if view == "hflip":
        return x.flip(-1)
    if view == "shift":
        return torch.roll(x, shifts=max(1, x.shape[-1] // 20), dims=-1)
    return x


def input_transform(meta: dict, dev: torch.device, augment: bool, generator=None) -> InputTransform:
    norm = meta.get("normalisation") or {}
    return InputTransform(
        meta.get("modality", "table"),
        norm.get("mean"),
        norm.get("std"),
        augment=augment,
        generator=generator,
        channels_last=bool(meta["train"].get("amp")) and dev.type == "cuda",
    )


def train_shard(
    records_path,
    inputs_path,
    membership_path,
    experiment: dict,
    model_range: tuple[int, int],
    device: str,
    threads: int,
    weights_path,
    metrics_path,
    log: Callable[[str], None] = print,
) -> None:
    torch.set_num_threads(max(1, int(threads)))
    dev = resolve_device(device)
    records = store.read_records(records_path)
    X_np, attrs, modality, _ = store.read_model_inputs(inputs_path)
    task, label_names, y_np = read_labels(records, attrs)
    check_views(complete(experiment.get("query"), "query")["views"], modality)
    member = membership.read_record_membership(records, membership_path)
    start, stop = model_range
    if stop > member.shape[0]:
        raise ValueError(f"shard models {start}:{stop} exceed the {member.shape[0]} sampled models")
    cfg = replace(TrainConfig.from_config(experiment["train"]), task=task)
    pool = (records["split"].astype(str) == "pool").to_numpy()
    X = torch.as_tensor(X_np, device=dev)
    del X_np
    norm = None
    if modality in ("image", "signal"):
        mean, std = channel_stats(X, np.flatnonzero(pool), modality)
        norm = {"mean": mean, "std": std, "over": "pool records"}
    meta = {
        "model": experiment["model"],
        "input_shape": list(X.shape[1:]),
        "num_outputs": len(label_names),
        "models": list(range(start, stop)),
        "train": cfg.__dict__,
        "seed": experiment["seed"],
        "label_names": label_names,
        "task": task,
        "modality": modality,
        "normalisation": norm,
        # model selection (mia_audit.train.selection): the candidate whose settings these are
        "selected_candidate": experiment.get("selected_candidate"),
    }
    build = builder(meta)
    spe = steps_per_epoch(pool.sum() / 2, cfg.batch_size)
    y = torch.as_tensor(y_np, device=dev)
    seeds = [model_seed(experiment["seed"], m) for m in range(start, stop)]
    rows = [np.flatnonzero(member[m]) for m in range(start, stop)]
    gen = torch.Generator(device=dev)
    gen.manual_seed(seeds[0] ^ 0xA06)
    transform = None if modality == "table" else input_transform(meta, dev, cfg.augment, gen)
    amp = cfg.amp and modality != "table"
    log(
        f"training models {start}–{stop - 1} on {dev} ({threads} threads): {cfg.epochs} epochs × {spe} steps of "
        f"{cfg.batch_size} records; {int(np.mean([len(r) for r in rows]))} member records per model on average; "
        f"{modality} inputs {tuple(X.shape[1:])} {X.dtype}, task {task}"
        + (
            f", augmentation {'on' if cfg.augment else 'off'}, "
            f"bf16 autocast {'on' if amp and dev.type == 'cuda' else 'off'}"
            if transform
            else ""
        )
    )
    t0 = time.perf_counter()
    guarantees = None
    if experiment.get("dp"):  # DP-SGD; the experiment's name is the folder above models/ (path contract)
        from mia_audit.train.dp_sgd import plan_for_shard, train_ensemble_dp

        plan, units = plan_for_shard(
            experiment["dp"],
            records["patient_id"],
            member,
            pool,
            cfg,
            key=f"experiments.{Path(weights_path).parents[1].name}.dp",
        )
        base, params, buffers, history, guarantees = train_ensemble_dp(
            build, X, y, rows, units, cfg, plan, seeds, dev, log=log, transform=transform
        )
        meta["dp"] = {**plan.to_dict(), **guarantees.to_dict(orient="list")}
    else:
        base, params, buffers, history = train_ensemble(
            build, X, y, rows, cfg, seeds, spe, dev, log=log, transform=transform, amp=amp
        )
    log(f"trained {stop - start} models in {time.perf_counter() - t0:.1f} s")
    weights.save_shard(weights_path, params, buffers, meta)
    bs = query_batch_size(stop - start, tuple(X.shape[1:]))
    logits = predict_ensemble(
        base,
        params,
        buffers,
        X,
        batch_size=bs,
        transform=None if transform is None else input_transform(meta, dev, False),
        amp=amp,
    )
    metrics = model_metrics(logits, y, member[start:stop], ~pool, task)
    df = pd.DataFrame(metrics)
    df.insert(0, "model", np.arange(start, stop))
    df["final_train_loss"] = history[-1]
    if guarantees is not None:
        df = pd.concat([df, guarantees], axis=1)
    df.to_csv(metrics_path, sep="\t", index=False)
    log(
        f"test ROC AUC: median {df['test_auc'].median():.3f}, min {df['test_auc'].min():.3f}; "
        f"train accuracy median {df['train_acc'].median():.3f}, test accuracy median {df['test_acc'].median():.3f}"
    )
