"""One shard of target models: train it, save it, query it into the cube."""

from __future__ import annotations

import json
import time
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score

from . import cube, signal, store
from .models import build_model
from .training import (
    TrainConfig,
    model_seed,
    predict_ensemble,
    resolve_device,
    steps_per_epoch,
    train_ensemble,
)


def _builder(meta: dict):
    return partial(build_model, meta["model"], tuple(meta["input_shape"]), meta["num_outputs"])


def _model_metrics(logits: torch.Tensor, y: torch.Tensor, member: np.ndarray, test: np.ndarray) -> list[dict]:
    """Per-model loss, accuracy and ROC AUC on its members (train) and on the test patients."""
    out = []
    prob = torch.softmax(logits.to(torch.float64), dim=-1)
    for m in range(logits.shape[0]):
        row = {}
        for name, mask in (("train", member[m]), ("test", test)):
            idx = torch.as_tensor(np.flatnonzero(mask), device=logits.device)
            if idx.numel() == 0:
                continue
            lg, yy = logits[m, idx], y[idx]
            row[f"{name}_loss"] = float(F.cross_entropy(lg.float(), yy))
            row[f"{name}_acc"] = float((lg.argmax(-1) == yy).float().mean())
            yy_np, p = yy.cpu().numpy(), prob[m, idx].cpu().numpy()
            try:
                if p.shape[1] == 2:
                    row[f"{name}_auc"] = float(roc_auc_score(yy_np, p[:, 1]))
                else:
                    row[f"{name}_auc"] = float(roc_auc_score(yy_np, p, multi_class="ovr", labels=np.arange(p.shape[1])))
            except ValueError:  # one class only among these records
                row[f"{name}_auc"] = float("nan")
        out.append(row)
    return out


def train_shard(
    records_path, inputs_path, membership_path, experiment: dict, model_range: tuple[int, int], device: str,
    threads: int, weights_path, metrics_path, log: Callable[[str], None] = print,
) -> None:
    torch.set_num_threads(max(1, int(threads)))
    dev = resolve_device(device)
    records = store.read_records(records_path)
    X_np, attrs = store.read_inputs(inputs_path)
    label_names = json.loads(attrs["label_names"])
    member = store.record_membership(records, membership_path)
    start, stop = model_range
    if stop > member.shape[0]:
        raise ValueError(f"shard models {start}:{stop} exceed the {member.shape[0]} sampled models")
    cfg = TrainConfig.from_config(experiment.get("train", {}))
    meta = {
        "model": experiment["model"], "input_shape": list(X_np.shape[1:]), "num_outputs": len(label_names),
        "models": list(range(start, stop)), "train": cfg.__dict__, "seed": experiment["seed"],
        "label_names": label_names,
    }
    build = _builder(meta)
    pool = (records["split"].astype(str) == "pool").to_numpy()
    spe = steps_per_epoch(pool.sum() / 2, cfg.batch_size)
    X = torch.as_tensor(X_np, device=dev)
    y = torch.as_tensor(records["label"].to_numpy(dtype=np.int64, copy=True), device=dev)
    seeds = [model_seed(experiment["seed"], m) for m in range(start, stop)]
    rows = [np.flatnonzero(member[m]) for m in range(start, stop)]
    log(f"training models {start}–{stop - 1} on {dev} ({threads} threads): {cfg.epochs} epochs × {spe} steps of "
        f"{cfg.batch_size} records; {int(np.mean([len(r) for r in rows]))} member records per model on average")
    t0 = time.perf_counter()
    guarantees = None
    if experiment.get("dp"):  # DP-SGD; the experiment's name is the folder above models/ (path contract)
        from .dp_training import plan_for_shard, train_ensemble_dp

        plan, units = plan_for_shard(experiment["dp"], records["patient_id"], member, pool, cfg,
                                     key=f"experiments.{Path(weights_path).parents[1].name}.dp")
        base, params, buffers, history, guarantees = train_ensemble_dp(build, X, y, rows, units, cfg, plan, seeds, dev, log=log)
        meta["dp"] = {**plan.to_dict(), **guarantees.to_dict(orient="list")}
    else:
        base, params, buffers, history = train_ensemble(build, X, y, rows, cfg, seeds, spe, dev, log=log)
    log(f"trained {stop - start} models in {time.perf_counter() - t0:.1f} s")
    store.save_shard(weights_path, params, buffers, meta)
    logits = predict_ensemble(base, params, buffers, X)
    metrics = _model_metrics(logits, y, member[start:stop], ~pool)
    import pandas as pd

    df = pd.DataFrame(metrics)
    df.insert(0, "model", np.arange(start, stop))
    df["final_train_loss"] = history[-1]
    if guarantees is not None:
        df = pd.concat([df, guarantees], axis=1)
    df.to_csv(metrics_path, sep="\t", index=False)
    log(f"test ROC AUC: median {df['test_auc'].median():.3f}, min {df['test_auc'].min():.3f}; "
        f"train accuracy median {df['train_acc'].median():.3f}, test accuracy median {df['test_acc'].median():.3f}")


def query_shard(
    weights_path, records_path, inputs_path, cube_path, device: str, threads: int, done_path,
    log: Callable[[str], None] = print,
) -> None:
    torch.set_num_threads(max(1, int(threads)))
    dev = resolve_device(device)
    params, buffers, meta = store.load_shard(weights_path, dev)
    base = _builder(meta)().to("meta")
    records = store.read_records(records_path)
    X_np, _ = store.read_inputs(inputs_path)
    X = torch.as_tensor(X_np, device=dev)
    y = torch.as_tensor(records["label"].to_numpy(dtype=np.int64, copy=True), device=dev)
    t0 = time.perf_counter()
    logits = predict_ensemble(base, params, buffers, X)
    phi = signal.logit_confidence(logits, y.expand(logits.shape[:2])).cpu().numpy().astype(np.float32)
    models = meta["models"]
    cube.write_confidence(cube_path, models[0], phi)
    nonfinite = int((~np.isfinite(phi)).sum())
    summary = {"models": [models[0], models[-1] + 1], "records": int(phi.shape[1]), "nonfinite": nonfinite,
               "seconds": round(time.perf_counter() - t0, 3), "device": str(dev)}
    with open(done_path, "w") as fh:
        json.dump(summary, fh)
    log(f"queried models {models[0]}–{models[-1]} on {phi.shape[1]} records in {summary['seconds']} s"
        + (f"; {nonfinite} non-finite confidences" if nonfinite else ""))
