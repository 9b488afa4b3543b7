"""Adaptive audits: train target models in waves and stop when the headline is known.

After each balanced wave (:func:`mia_audit.sampling.membership.wave_membership`), :func:`assess`
computes the share of patients at or above a threshold from every model trained so far, its
Monte-Carlo half-width and finite-model bias (:mod:`mia_audit.analysis.convergence`), and
decides ``precision`` (stop), ``cap`` (stop) or ``continue``. Snakemake runs one checkpoint
per wave (``workflow/rules/adaptive.smk``); :func:`mia_audit.pipeline.plan.next_wave` picks the
next. Method and measured savings: docs/methods.md, "How many target models are enough".
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from mia_audit.analysis import convergence
from mia_audit.audit import moderation, stats
from mia_audit.sampling import subsets
from mia_audit.settings import complete

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
    "bias",
    "share_bc",
    "error_bound",
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
    subset: np.ndarray | None = None,
    bias_exponent: float = 1.0,
) -> dict:
    """The share of patients with AUC ≥ ``threshold`` from the first ``n_models`` models, with the
    patients' exact 95 % interval (``ci_low, ci_high``), its Monte-Carlo SD (``mc_sd``) and
    half-width, its half-sample bias estimate (``bias``), the bias-corrected share
    (``share_bc``) and the error bound |bias| + half-width (docs/methods.md).

    ``cube_path`` is a cube (or a :class:`mia_audit.analysis.convergence.PoolCube`) whose first
    ``n_models`` models are balanced on their own (whole waves). ``subset`` instead takes a
    (models, patients) mask of the models each patient uses (e.g.
    :func:`mia_audit.sampling.subsets.nested_subsets` of a fixed design: a replay of waves,
    ``benchmarks/bench_adaptive.py``); ``n_models`` is then the cube's model count.
    """
    if estimator not in convergence.ESTIMATORS:
        raise ValueError(f"estimator must be one of {convergence.ESTIMATORS}, got {estimator!r}")
    cube = convergence.as_pool(cube_path, n_models)
    if subset is None:
        if not subsets.prefix_is_balanced(cube.patient_member, n_models):
            raise ValueError(
                f"{cube_path}: models 0..{n_models - 1} are not balanced on their own; an adaptive audit "
                "assesses whole waves of a wave-balanced membership (datasets.<name>.adaptive)"
            )
        subset = np.ones_like(cube.patient_member)
    k = int(subset.sum(axis=0).max())
    if k % 4:
        raise ValueError(f"the Monte-Carlo error needs a multiple of 4 models, got {k}")
    records = convergence.subset_record_risk(cube, {k: subset}, block_records)[k]
    priors = moderation.fit_priors(records) if estimator == "moderated" else None
    if estimator == "moderated":
        records = records.assign(auc=moderation.moderated_columns(records, priors)["auc_mod"])
    rng = np.random.default_rng([seed, 18])
    halves = [subsets.split_halves(cube.patient_member, subset, rng) for _ in range(splits)]
    half_auc = convergence.half_patient_auc(cube, halves, priors, block_records)[estimator]
    patients = stats.patient_risk(records)
    row = stats.exposure_table(patients["auc"], thresholds=[threshold]).iloc[0]
    mc_sd = float(convergence.mc_sd_of_shares(half_auc, [threshold])[0])
    half_minus_full = float(convergence.half_shares(half_auc, [threshold]).mean()) - float(row["share"])
    bias = half_minus_full / (2.0**bias_exponent - 1.0)
    return {
        "n_models": k,
        "estimator": estimator,
        "threshold": float(threshold),
        "share": float(row["share"]),
        "count": int(row["count"]),
        "n_patients": int(row["n"]),
        "ci_low": float(row["ci_low"]),
        "ci_high": float(row["ci_high"]),
        "mc_sd": mc_sd,
        "half_width": convergence.Z95 * mc_sd,
        "bias": bias,
        "share_bc": float(np.clip(row["share"] - bias, 0.0, 1.0)),
        "error_bound": abs(bias) + convergence.Z95 * mc_sd,
    }


def decide(n_models: int, error_bound: float, *, target: float, min_models: int, cap: int) -> str:
    """``precision`` when ``min_models`` are trained and ``error_bound`` ≤ ``target``; else ``cap``
    when ``cap`` models are trained; else ``continue``."""
    if n_models >= min_models and np.isfinite(error_bound) and error_bound <= target:
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
    spec = complete(spec, "adaptive")
    n_models = (int(wave) + 1) * int(spec["wave_models"])
    res = share_precision(
        cube_path,
        n_models,
        spec["threshold"],
        estimator=estimator,
        splits=int(spec["splits"]),
        seed=int(spec["seed"]),
        block_records=block_records,
        bias_exponent=float(spec["bias_exponent"]),
    )
    change = None if previous is None else res["share"] - float(previous["share"])
    decision = decide(
        n_models, res["error_bound"], target=float(spec["half_width"]), min_models=int(spec["min_models"]), cap=cap
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
            f"{res['share']:.4f} (bias-corrected {res['share_bc']:.4f}), Monte-Carlo 95 % ± {res['half_width']:.4f}, "
            f"error bound {res['error_bound']:.4f} (target {out['target_half_width']:g}) → {decision}"
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
