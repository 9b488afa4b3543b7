"""Model selection: the target models' settings chosen on validation patients from the pool.

Every candidate of an experiment's ``selection`` block (:func:`candidates`) is trained as a
small vectorised ensemble on validation splits of the pool patients only
(:func:`validation_splits`), with common random numbers across candidates; :func:`choose`
picks the lowest mean validation loss (or highest AUC) and :func:`apply_choice` lays its
settings over the experiment's. The test patients never enter the choice. :func:`tied` marks
the candidates whose paired validation difference from the chosen one is within ``tie_se``
SEs (the validation data cannot tell them apart); ``chosen.json`` lists them and the audit
trains each with the full target-model design (``selection.audit_tied``). Method:
docs/methods.md, "Model selection and baselines".
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd

from mia_audit.errors import DataError
from mia_audit.settings import complete
from mia_audit.train.choice import apply_choice, candidates, read_choice

__all__ = ["apply_choice", "candidates", "choose", "read_choice", "run_selection", "tied", "validation_splits"]


def validation_splits(
    pool_patients: np.ndarray, splits: int, models: int, fraction: float, seed: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``splits`` × (validation patient ids, (models, P_train) bool training masks over the
    split's non-validation patients, in the order of ``setdiff1d``).

    Each split holds out round(fraction × P) ≥ 1 of the P pool patients; each model trains on
    ⌊P/2⌋ patients (at most all of the rest) drawn without replacement. Deterministic from
    ``seed`` (numpy PCG64 through ``SeedSequence([seed, s])``).
    """
    pool_patients = np.asarray(pool_patients)
    P = len(pool_patients)
    n_val = max(1, int(round(fraction * P)))
    if P - n_val < 2:
        raise DataError(
            f"selection: {P} pool patients leave fewer than 2 training patients after holding out "
            f"{n_val} validation patients (config key selection.validation_fraction = {fraction})"
        )
    out = []
    for s in range(int(splits)):
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), s]))
        perm = rng.permutation(P)
        val = np.sort(pool_patients[perm[:n_val]])
        rest = P - n_val
        k = min(P // 2, rest)
        masks = np.zeros((int(models), rest), dtype=bool)
        for m in range(int(models)):
            masks[m, rng.choice(rest, size=k, replace=False)] = True
        out.append((val, masks))
    return out


def choose(table: pd.DataFrame, metric: str = "loss") -> str:
    """The chosen candidate: lowest ``val_loss`` (metric ``loss``) or highest ``val_auc``
    (metric ``auc``); ties to the first row (config order). NaN never wins."""
    if metric not in ("loss", "auc"):
        raise DataError(f"config key selection.metric = {metric!r}; expected 'loss' or 'auc'")
    col = f"val_{metric}"
    values = table[col].to_numpy(dtype=float)
    if not np.isfinite(values).any():
        raise DataError(f"selection: every candidate's {col} is NaN (no validation records of both classes?)")
    scores = np.where(np.isfinite(values), values if metric == "loss" else -values, np.inf)
    return str(table["candidate"].iloc[int(np.argmin(scores))])


def tied(table: pd.DataFrame, metric: str = "loss", tie_se: float = 2.0) -> np.ndarray:
    """Bool per row of the selection table: the candidate's paired difference from the chosen
    one in the selection metric (``val_{metric}_vs_chosen``, oriented so that worse is positive)
    is at most ``tie_se`` × its SE (``val_{metric}_vs_chosen_se``). The chosen row is always
    tied; a NaN difference (a metric undefined on some split-model) never is."""
    if metric not in ("loss", "auc"):
        raise DataError(f"config key selection.metric = {metric!r}; expected 'loss' or 'auc'")
    diff = table[f"val_{metric}_vs_chosen"].to_numpy(dtype=float)
    se = table[f"val_{metric}_vs_chosen_se"].to_numpy(dtype=float)
    with np.errstate(invalid="ignore"):
        out = diff <= float(tie_se) * se
    return out | table["chosen"].to_numpy(dtype=bool)


def _metrics(logits, y, masks: np.ndarray, test: np.ndarray, task: str) -> pd.DataFrame:
    """Per model: ``train_*`` = loss, accuracy, AUC on the records of ``masks[m]``;
    ``test_*`` on the records of ``test`` (:func:`mia_audit.train.shard.model_metrics`)."""
    from mia_audit.train.shard import model_metrics

    return pd.DataFrame(model_metrics(logits, y, masks, test, task))


def run_selection(
    records: pd.DataFrame,
    X_np: np.ndarray,
    y_np: np.ndarray,
    task: str,
    n_outputs: int,
    experiment: Mapping,
    device: str,
    threads: int,
    log: Callable[[str], None] = print,
    trainer: Callable | None = None,
) -> tuple[pd.DataFrame, dict]:
    """Train every candidate on the validation splits; (selection table, chosen candidate).

    The table has one row per candidate: ``candidate, settings`` (its overrides, JSON),
    ``models`` (split-models trained), ``val_loss, val_loss_sd, val_auc, val_auc_sd``
    (mean and SD over split-models), ``train_loss, train_acc, train_auc`` (on each model's
    training records), ``test_loss, test_acc, test_auc`` (held-out test patients; reported,
    never used), ``arch`` (the candidate's model family), ``seconds``, ``chosen``, and ``val_loss_vs_chosen`` /
    ``val_loss_vs_chosen_se``: the mean over split-models of the candidate's validation loss
    minus the chosen candidate's on the same split-model (paired: same splits, seeds and
    batch orders) and its standard error SD(d)/√n; ``val_auc_vs_chosen`` /
    ``val_auc_vs_chosen_se`` the same for the chosen candidate's validation AUC minus the
    candidate's; ``tied``: within ``selection.tie_se`` SEs of the chosen one in the selection
    metric (:func:`tied`). The chosen candidate's dict also lists the tied candidates
    (``tied``, config order) and the rule (``tie_rule``). Tables only. Candidates may be of
    different families (:func:`candidate_logits`).
    ``trainer(name, build, X, y, rows, cfg, seeds, device)`` → ``(base, params, buffers)``
    replaces the ordinary ensemble training of each network candidate (DP-SGD for a DP
    experiment: :func:`mia_audit.train.dp_sgd.selection_trainer`).
    """
    import torch

    from mia_audit.device import resolve_device
    from mia_audit.train.ensemble import model_seed

    spec = complete(experiment["selection"], "selection")
    torch.set_num_threads(max(1, int(threads)))
    dev = resolve_device(device)
    split = records["split"].astype(str).to_numpy()
    pool = split == "pool"
    test = ~pool
    pids = records["patient_id"].astype(str).to_numpy()
    pool_patients = np.unique(pids[pool])
    plan = validation_splits(pool_patients, spec["splits"], spec["models"], spec["validation_fraction"], spec["seed"])
    member_masks, val_masks = [], []
    for val, masks in plan:
        rest = np.setdiff1d(pool_patients, val)
        is_val = np.isin(pids, val) & pool
        val_masks += [is_val] * masks.shape[0]
        for mask in masks:
            member_masks.append(np.isin(pids, rest[mask]) & pool)
    member = np.stack(member_masks)
    val_mask = np.stack(val_masks)
    X = torch.as_tensor(X_np, device=dev)
    y = torch.as_tensor(y_np, device=dev)
    rows = [np.flatnonzero(m) for m in member]
    table, per_model = [], {}
    for name, cand in candidates(experiment).items():
        # common random numbers: every candidate gets the same splits, training sets, seeds and
        # batch orders, so their difference is the settings' (and independent of their order)
        seeds = [model_seed(int(spec["seed"]), m) for m in range(len(rows))]
        t0 = time.perf_counter()
        logits = candidate_logits(
            {**cand, "name": name}, X, y, rows, seeds, pool, task, n_outputs, dev, threads, trainer
        )
        val = _metrics(logits, y, val_mask, np.zeros_like(test), task)
        fit = _metrics(logits, y, member, test, task)
        seconds = time.perf_counter() - t0
        per_model[name] = (val["train_loss"].to_numpy(dtype=float), val["train_auc"].to_numpy(dtype=float))
        overrides = (spec["candidates"][name] or {}) if spec.get("candidates") else {}
        table.append(
            {
                "candidate": name,
                "arch": str(cand["model"]["arch"]),
                "settings": json.dumps(overrides, sort_keys=True),
                "models": len(rows),
                "val_loss": val["train_loss"].mean(),
                "val_loss_sd": val["train_loss"].std(ddof=1),
                "val_auc": val["train_auc"].mean(),
                "val_auc_sd": val["train_auc"].std(ddof=1),
                "train_loss": fit["train_loss"].mean(),
                "train_acc": fit["train_acc"].mean(),
                "train_auc": fit["train_auc"].mean(),
                "test_loss": fit["test_loss"].mean(),
                "test_acc": fit["test_acc"].mean(),
                "test_auc": fit["test_auc"].mean(),
                "seconds": round(seconds, 2),
            }
        )
        row = table[-1]
        log(
            f"candidate {name}: validation loss {row['val_loss']:.3f} (SD {row['val_loss_sd']:.3f}), "
            f"validation AUC {row['val_auc']:.3f}; train loss {row['train_loss']:.3f}; "
            f"test AUC {row['test_auc']:.3f} ({len(rows)} models, {seconds:.1f} s)"
        )
    df = pd.DataFrame(table)
    metric = spec["metric"]
    best = choose(df, metric)
    df["chosen"] = df["candidate"] == best
    # paired by model (common random numbers): each candidate's difference from the chosen one
    # (oriented so that worse is positive), its mean and the SE of that mean
    for i, name in enumerate(("loss", "auc")):
        sign = 1.0 if name == "loss" else -1.0
        diff = {c: sign * (per_model[c][i] - per_model[best][i]) for c in df["candidate"]}
        df[f"val_{name}_vs_chosen"] = [float(np.mean(diff[c])) for c in df["candidate"]]
        df[f"val_{name}_vs_chosen_se"] = [
            float(np.std(diff[c], ddof=1) / np.sqrt(len(diff[c]))) for c in df["candidate"]
        ]
    tie_se = float(spec["tie_se"])
    df["tied"] = tied(df, metric, tie_se)
    chosen = {
        "candidate": best,
        "metric": f"val_{metric}",
        **candidates(experiment)[best],
        "tied": df.loc[df["tied"], "candidate"].tolist(),
        "tie_rule": f"paired validation {metric} difference from the chosen candidate within {tie_se:g} SE",
    }
    for name in chosen["tied"]:
        if name != best:
            log(f"candidate {name} is tied with the chosen {best} (validation {metric} within {tie_se:g} SE)")
    return df, chosen


def candidate_logits(
    cand: Mapping,
    X,
    y,
    rows: list,
    seeds: list,
    pool,
    task: str,
    n_outputs: int,
    dev,
    threads: int,
    trainer: Callable | None = None,
):
    """Logits (models, records, outputs) of one candidate's models, model m trained on ``rows[m]``
    with ``seeds[m]``: a network family as a vectorised ensemble with the candidate's ``train``
    block and the target models' steps per epoch (one model after another when vmap cannot run
    it), or by ``trainer`` when given (see :func:`run_selection`); an estimator family fitted
    by its library, ``threads`` models at a time, with its metric logits
    (:mod:`mia_audit.train.estimators`)."""
    import torch

    from mia_audit.train.ensemble import (
        TrainConfig,
        predict_each,
        predict_ensemble,
        query_batch_size,
        steps_per_epoch,
        train_each,
        train_ensemble,
        vmap_failure,
    )
    from mia_audit.train.families import build_model, family

    if family(cand["model"]).kind == "estimator":
        from mia_audit.train.estimators import fit_models

        fitted = fit_models(
            cand["model"], X.cpu().numpy(), y.cpu().numpy(), rows, seeds, n_outputs, threads, keep=False
        )
        return torch.as_tensor(np.stack([f.metric_logits for f in fitted]), device=X.device)
    cfg = TrainConfig.from_config({**cand["train"], "task": task})
    spe = steps_per_epoch(pool.sum() / 2, cfg.batch_size)

    def build():
        return build_model(cand["model"], tuple(X.shape[1:]), n_outputs)

    bs = query_batch_size(len(rows), tuple(X.shape[1:]))
    if trainer is not None:
        base, params, buffers = trainer(cand["name"], build, X, y, rows, cfg, seeds, dev)
        return predict_ensemble(base, params, buffers, X, batch_size=bs)
    vectorised = True
    if cand["model"]["arch"] == "torch":  # a user's network: checked before training, vmap if it can
        from mia_audit.train.shard import check_network

        check_network(build, X, n_outputs, f"selection.candidates.{cand['name']}.model.factory")
        vectorised = vmap_failure(build, X, y, rows[0], cfg, dev) is None
    train, predict = (train_ensemble, predict_ensemble) if vectorised else (train_each, predict_each)
    base, params, buffers, _ = train(build, X, y, rows, cfg, seeds, spe, dev)
    return predict(base if vectorised else build, params, buffers, X, batch_size=bs)
