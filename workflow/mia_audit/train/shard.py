"""One shard of target models: train it and save it (the query stage, :mod:`mia_audit.query.shard`,
puts its predictions into the cube).

Inputs of every modality come from inputs.zarr (:func:`mia_audit.data.store.read_model_inputs`);
images and signals are normalised per channel with pool statistics
(:func:`mia_audit.train.ensemble.channel_stats`, stored in the shard's metadata so the query
normalises as training did); multi-label data sets stack their ``label_<name>`` columns into a
(records, K) target. Estimator families take :func:`train_estimator_shard`: fitted in parallel
by their own library (:mod:`mia_audit.train.estimators`), their logits on every record stored
beside them in the same job. A user's network (``arch: torch``) is checked before training and
trained vectorised when :func:`torch.func.vmap` can run it, else one model after another. The
query views (``original``, ``hflip``, ``shift``): docs/datasets.md; the families:
docs/own_data.md.
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
from mia_audit.errors import ConfigError, DataError
from mia_audit.roc import roc_auc
from mia_audit.sampling import membership
from mia_audit.settings import complete
from mia_audit.train import weights
from mia_audit.train.ensemble import (
    InputTransform,
    TrainConfig,
    channel_stats,
    model_seed,
    predict_each,
    predict_ensemble,
    query_batch_size,
    steps_per_epoch,
    train_each,
    train_ensemble,
    vmap_failure,
)
from mia_audit.train.families import build_model, estimator_adapter, family

VIEWS = {"original": ("table", "image", "signal"), "hflip": ("image",), "shift": ("signal",)}


def builder(meta: dict):
    return partial(build_model, meta["model"], tuple(meta["input_shape"]), meta["num_outputs"])


def experiment_key(weights_path) -> str:
    """``experiments.<name>``: the experiment's name is the folder above models/ (path contract)."""
    return f"experiments.{Path(weights_path).parents[1].name}"


def check_network(build, X: torch.Tensor, num_outputs: int, key: str, transform=None) -> None:
    """A network built by ``build`` (a user's factory) maps two records to (2, num_outputs) logits;
    a ConfigError naming ``key`` otherwise, before any training."""
    model = build().to(X.device)
    model.eval()
    xb = X[:2] if transform is None else transform(X[:2], train=False)
    try:
        with torch.no_grad():
            out = model(xb)
    except Exception as e:
        raise ConfigError(
            f"config key {key}: the network fails on a batch of 2 records of shape {tuple(xb.shape[1:])} "
            f"({type(e).__name__}: {' '.join(str(e).split())[:300]})"
        ) from e
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (xb.shape[0], num_outputs):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ConfigError(
            f"config key {key}: the network must return logits of shape (batch, {num_outputs}) (one per "
            f"class or label); for a batch of {xb.shape[0]} records it returned {got}"
        )


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
    if family(experiment["model"]).kind == "estimator":
        return train_estimator_shard(
            records_path,
            inputs_path,
            membership_path,
            experiment,
            model_range,
            threads,
            weights_path,
            metrics_path,
            log,
        )
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
    vectorised = True
    if str(experiment["model"]["arch"]) == "torch":  # a user's network: checked, then trained with vmap if it can
        key = f"{experiment_key(weights_path)}.model.factory"
        eval_transform = None if modality == "table" else input_transform(meta, dev, False)
        check_network(build, X, meta["num_outputs"], key, eval_transform)
        failure = vmap_failure(build, X, torch.as_tensor(y_np, device=dev), np.flatnonzero(pool), cfg, dev,
                               eval_transform, cfg.amp and modality != "table")  # fmt: skip
        if failure:
            if experiment.get("dp"):
                raise ConfigError(
                    f"config key {key}: DP-SGD needs a network that runs under torch.func.vmap ({failure})"
                )
            vectorised = False
            log(f"the network cannot be trained as a vectorised ensemble ({failure}); training one model after another")
    meta["vectorised"] = vectorised
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
        train = train_ensemble if vectorised else train_each
        base, params, buffers, history = train(
            build, X, y, rows, cfg, seeds, spe, dev, log=log, transform=transform, amp=amp
        )
    log(f"trained {stop - start} models in {time.perf_counter() - t0:.1f} s")
    weights.save_shard(weights_path, params, buffers, meta)
    bs = query_batch_size(stop - start, tuple(X.shape[1:]))
    eval_transform = None if transform is None else input_transform(meta, dev, False)
    if vectorised:
        logits = predict_ensemble(base, params, buffers, X, batch_size=bs, transform=eval_transform, amp=amp)
    else:
        logits = predict_each(build, params, buffers, X, batch_size=bs, transform=eval_transform, amp=amp)
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


def train_estimator_shard(
    records_path,
    inputs_path,
    membership_path,
    experiment: dict,
    model_range: tuple[int, int],
    threads: int,
    weights_path,
    metrics_path,
    log: Callable[[str], None] = print,
) -> None:
    """One shard of an estimator family (module docstring): fit the models in parallel across
    ``threads``, compute each model's logits on every record, save models and logits, write the metrics."""
    from mia_audit.train.estimators import check_classes, fit_models, library_version

    key = f"{experiment_key(weights_path)}.model"
    spec = complete(experiment["model"], "model", key)
    adapter = estimator_adapter(spec)
    if experiment.get("dp"):
        raise ConfigError(
            f"config key {experiment_key(weights_path)}.dp: DP-SGD trains networks only; model.arch "
            f"{spec['arch']!r} is fitted by its own library"
        )
    records = store.read_records(records_path)
    X_np, attrs, modality, _ = store.read_model_inputs(inputs_path)
    if modality != "table":
        raise ConfigError(
            f"config key {key}.arch: {spec['arch']!r} takes table inputs; the data set has {modality} inputs"
        )
    task, label_names, y_np = read_labels(records, attrs)
    if task != "multiclass":
        raise DataError(f"config key {key}.arch: {spec['arch']!r} fits single-label (multiclass) tasks, not {task}")
    check_views(complete(experiment.get("query"), "query")["views"], modality)
    member = membership.read_record_membership(records, membership_path)
    start, stop = model_range
    if stop > member.shape[0]:
        raise ValueError(f"shard models {start}:{stop} exceed the {member.shape[0]} sampled models")
    pool = (records["split"].astype(str) == "pool").to_numpy()
    rows = [np.flatnonzero(member[m]) for m in range(start, stop)]
    seeds = [model_seed(experiment["seed"], m) for m in range(start, stop)]
    n_classes = len(label_names)
    check_classes(y_np, rows, n_classes, list(range(start, stop)), label_names)
    adapter.check(spec, key)
    log(
        f"fitting models {start}–{stop - 1} ({spec['arch']}, {library_version(adapter)}) with {threads} threads; "
        f"{int(np.mean([len(r) for r in rows]))} member records per model on average; table inputs "
        f"{tuple(X_np.shape[1:])}, {n_classes} classes"
    )
    t0 = time.perf_counter()
    fitted = fit_models(spec, X_np, y_np, rows, seeds, n_classes, threads, keep=True, log=log)
    t1 = time.perf_counter()
    logits = np.stack([f.logits for f in fitted])
    meta = {
        "model": spec,
        "kind": "estimator",
        "storage": adapter.storage,
        "library": library_version(adapter),
        "input_shape": list(X_np.shape[1:]),
        "num_outputs": n_classes,
        "models": list(range(start, stop)),
        "train": None,
        "seed": experiment["seed"],
        "label_names": label_names,
        "task": task,
        "modality": modality,
        "normalisation": None,
        "logits": {"records": int(X_np.shape[0]), "views": ["original"], "computed": "train job"},
        "selected_candidate": experiment.get("selected_candidate"),
    }
    weights.save_estimator_shard(weights_path, [f.data for f in fitted], logits, meta)
    t2 = time.perf_counter()
    metric_logits = torch.as_tensor(np.stack([f.metric_logits for f in fitted]))
    df = pd.DataFrame(model_metrics(metric_logits, torch.as_tensor(y_np), member[start:stop], ~pool, task))
    df.insert(0, "model", np.arange(start, stop))
    df["final_train_loss"] = df["train_loss"]
    df.to_csv(metrics_path, sep="\t", index=False)
    log(
        f"fitted and queried {stop - start} models in {t1 - t0:.1f} s, saved in {t2 - t1:.1f} s; "
        f"test ROC AUC: median {df['test_auc'].median():.3f}, min {df['test_auc'].min():.3f}; "
        f"train accuracy median {df['train_acc'].median():.3f}, test accuracy median {df['test_acc'].median():.3f}"
    )
