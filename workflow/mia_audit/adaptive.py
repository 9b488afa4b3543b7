"""Adaptive audits: train target models in waves and stop when the headline is known.

An adaptive data set (config key ``datasets.<name>.adaptive``) draws its membership as
balanced waves (:func:`mia_audit.sampling.wave_membership`): every patient is IN for exactly
half of the models of every wave, so after any number of whole waves the models trained
so far are a balanced design of their own. After each wave, :func:`assess` computes the
headline on every model trained so far, the share of patients with AUC ≥ ``threshold``
(bi-normal or moderated record AUCs, :mod:`mia_audit.moderation`), and its Monte-Carlo
95 % half-width 1.96 · SD over models (:mod:`mia_audit.convergence`: disjoint balanced
half-splits, conservative k^{-1/2} scaling). The decision:

* ``precision``: stop, the half-width is at most ``half_width``, at least ``min_models``
  models are trained, and the share moved by at most ``half_width`` since the previous
  wave (a guard against the small-sample bias of the first waves, which the Monte-Carlo
  SD does not see: with few models noisy record AUCs spread the patient distribution and
  the share is too high; so the first wave never stops on precision);
* ``cap``: stop, every wave up to ``n_models`` (the fixed design's size) is trained;
* ``continue``: train the next wave.

Snakemake runs one checkpoint per wave (``rules/adaptive.smk``); which wave comes next is
:func:`mia_audit.plan.next_wave` of the decisions so far, so the wave logic does not depend
on how the train and query jobs are arranged. The final decision names the number of
models the audit then uses (:func:`audited_models`); ``audit/adaptive.tsv`` lists every
wave and what the run saved against the fixed design (:func:`wave_table`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from . import convergence, moderation, stats, subsets

STOP_PRECISION = "precision"
STOP_CAP = "cap"
CONTINUE = "continue"
TABLE_COLUMNS = [
    "wave",
    "n_models",
    "estimator",
    "threshold",
    "share",
    "mc_sd",
    "half_width",
    "mc_low",
    "mc_high",
    "change",
    "ci_low",
    "ci_high",
    "target_half_width",
    "decision",
    "models_trained",
    "models_fixed_design",
    "models_saved",
]


def share_precision(
    cube_path,
    n_models: int,
    threshold: float,
    estimator: str = "binormal",
    splits: int = 50,
    seed: int = 0,
    block_records: int = 65536,
) -> dict:
    """The share of patients with AUC ≥ ``threshold`` from the first ``n_models`` models and its
    Monte-Carlo SD (``mc_sd``), with the patients' exact 95 % interval (``ci_low, ci_high``).

    ``cube_path`` is a cube (or a :class:`mia_audit.convergence.PoolCube`) whose first
    ``n_models`` models are balanced on their own (whole waves).
    """
    if estimator not in convergence.ESTIMATORS:
        raise ValueError(f"estimator must be one of {convergence.ESTIMATORS}, got {estimator!r}")
    cube = convergence.as_pool(cube_path, n_models)
    if not subsets.prefix_is_balanced(cube.patient_member, n_models):
        raise ValueError(
            f"{cube_path}: models 0..{n_models - 1} are not balanced on their own; an adaptive audit "
            "assesses whole waves of a wave-balanced membership (datasets.<name>.adaptive)"
        )
    if n_models % 4:
        raise ValueError(f"the Monte-Carlo error needs a multiple of 4 models, got {n_models}")
    everything = np.ones_like(cube.patient_member)
    records = convergence.subset_record_risk(cube, {n_models: everything}, block_records)[n_models]
    priors = moderation.fit_priors(records) if estimator == "moderated" else None
    if estimator == "moderated":
        records = records.assign(auc=moderation.moderated_columns(records, priors)["auc_mod"])
    patients = stats.patient_risk(records)
    row = stats.exposure_table(patients["auc"], thresholds=[threshold]).iloc[0]
    rng = np.random.default_rng([seed, 18])
    halves = [subsets.split_halves(cube.patient_member, everything, rng) for _ in range(splits)]
    half_auc = convergence.half_patient_auc(cube, halves, priors, block_records)[estimator]
    mc_sd = float(convergence.mc_sd_of_shares(half_auc, [threshold])[0])
    return {
        "n_models": int(n_models),
        "estimator": estimator,
        "threshold": float(threshold),
        "share": float(row["share"]),
        "count": int(row["count"]),
        "n_patients": int(row["n"]),
        "ci_low": float(row["ci_low"]),
        "ci_high": float(row["ci_high"]),
        "mc_sd": mc_sd,
        "half_width": convergence.Z95 * mc_sd,
    }


def decide(n_models: int, half_width: float, change: float | None, *, target: float, min_models: int, cap: int) -> str:
    """``precision`` when ``min_models`` are trained, ``half_width`` ≤ ``target`` and the share
    changed by at most ``target`` since the previous wave (``change``; None for the first wave,
    which never stops on precision); else ``cap`` when ``cap`` models are trained; else
    ``continue``."""
    stable = change is not None and np.isfinite(change) and abs(change) <= target
    if n_models >= min_models and np.isfinite(half_width) and half_width <= target and stable:
        return STOP_PRECISION
    if n_models >= cap:
        return STOP_CAP
    return CONTINUE


def assess(
    cube_path,
    wave: int,
    spec: Mapping,
    estimator: str,
    cap: int,
    previous: Mapping | None = None,
    block_records: int = 65536,
    log: Callable[[str], None] | None = None,
) -> dict:
    """The decision after ``wave`` (0-based) of an adaptive audit with config block ``spec``;
    ``previous`` is the decision of the wave before (None for wave 0)."""
    if (previous is None) != (int(wave) == 0) or (previous is not None and int(previous["wave"]) != int(wave) - 1):
        raise ValueError(f"the assessment of wave {wave} needs the decision of wave {int(wave) - 1} (and only then)")
    if previous is not None and previous.get("stop"):
        raise ValueError(f"wave {previous['wave']} already stopped the adaptive audit ({previous['decision']})")
    n_models = (int(wave) + 1) * int(spec["wave_models"])
    res = share_precision(
        cube_path,
        n_models,
        spec["threshold"],
        estimator=estimator,
        splits=int(spec["splits"]),
        seed=int(spec["seed"]),
        block_records=block_records,
    )
    change = None if previous is None else res["share"] - float(previous["share"])
    decision = decide(
        n_models,
        res["half_width"],
        change,
        target=float(spec["half_width"]),
        min_models=int(spec["min_models"]),
        cap=cap,
    )
    out = {
        "wave": int(wave),
        **res,
        "mc_low": res["share"] - res["half_width"],
        "mc_high": res["share"] + res["half_width"],
        "change": change,
        "target_half_width": float(spec["half_width"]),
        "min_models": int(spec["min_models"]),
        "models_fixed_design": int(cap),
        "decision": decision,
        "stop": decision != CONTINUE,
    }
    if log:
        log(
            f"wave {wave}: {n_models} models, share of patients with AUC ≥ {res['threshold']:g} = "
            f"{res['share']:.4f} ± {res['half_width']:.4f} (Monte-Carlo 95 %, target ± {out['target_half_width']:g})"
            + ("" if change is None else f", {change:+.4f} since wave {wave - 1}")
            + f" → {decision}"
        )
    return out


def write_decision(path, decision: Mapping) -> None:
    Path(path).write_text(json.dumps(dict(decision), indent=1) + "\n")


def read_decision(path) -> dict:
    return json.loads(Path(path).read_text())


def audited_models(decision_path=None) -> int | None:
    """Models an audit job uses: those of the final wave decision of an adaptive experiment
    (the job's ``decision`` input), or None without one (every model of the cube)."""
    if not decision_path:
        return None
    decision = read_decision(decision_path)
    if not decision.get("stop"):
        raise ValueError(f"{decision_path}: wave {decision.get('wave')} did not stop the adaptive audit")
    return int(decision["n_models"])


def wave_table(decisions: list[Mapping]) -> pd.DataFrame:
    """``audit/adaptive.tsv``: one row per wave, with models trained, and saved against the fixed design."""
    if not decisions:
        raise ValueError("no wave decisions to tabulate")
    df = pd.DataFrame([dict(d) for d in decisions]).sort_values("wave")
    trained = int(df["n_models"].iloc[-1])
    df["models_trained"] = trained
    df["models_saved"] = df["models_fixed_design"] - trained
    return df[TABLE_COLUMNS].reset_index(drop=True)
