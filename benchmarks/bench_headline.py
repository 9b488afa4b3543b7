"""Benchmark: coverage of the headline's intervals (share of patients with AUC ≥ t), with known truth.

Simulates cohorts like the bundled one: ``--patients`` patients with the default cube's record
counts (1–16), a patient level Φ⁻¹(AUC) ~ N(0.55, 0.75²) and records around it with SD 0.25
(probit scale), ``--models`` models with balanced membership, each patient's records correlated
within a model (``--rho``), σ_out = 1.45 σ_in, and optionally a per-model shift of every signal
(``--model-effect``: models that are globally more confident, shared by all patients). The
signals are scaled so that a record's true bi-normal AUC is the one drawn; a patient's true AUC
is the largest of their records'.

Each data set runs the audit's patient statistics (:func:`mia_audit.audit.patients.patient_statistics`
with the joint bootstrap of the shares, ``--boot`` replicates) and the threshold table with the
deconvolution (:func:`mia_audit.audit.headline.threshold_rows`, ``--eb-boot`` replicates), and
checks, per threshold:

* the **joint interval** (``ci_low_boot``, ``ci_high_boot``) against its estimand, the share this
  design reports on average (estimated by the mean plug-in share over the data sets);
* the **deconvolved interval** (``ci_low_eb``, ``ci_high_eb``) against the population share of
  patients whose *true* AUC clears the threshold (from 400,000 simulated patients);
* for comparison, the binomial interval over patients (``ci_low``, ``ci_high``) against both.

    PYTHONPATH=workflow python benchmarks/bench_headline.py                       # 200 data sets
    PYTHONPATH=workflow python benchmarks/bench_headline.py --model-effect 0.3 --seed 1
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
from scipy import stats as sps

from mia_audit.audit import headline, patients

SD_OUT = 1.45
#: record counts of the default cube's pool patients (records: patients)
PBC_RECORD_COUNTS = {1: 20, 2: 17, 3: 26, 4: 35, 5: 24, 6: 19, 7: 17, 8: 18, 9: 13, 10: 17, 11: 14, 12: 11}
PBC_RECORD_COUNTS.update({13: 5, 14: 5, 15: 6, 16: 3})
THRESHOLDS = (0.7, 0.8, 0.9, 0.95)
LEVEL, LEVEL_SD, RECORD_SD = 0.55, 0.75, 0.25


def patient_truth(rng: np.random.Generator, n: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """Records per patient and each patient's true record probits."""
    sizes = np.array(list(PBC_RECORD_COUNTS))
    p = np.array(list(PBC_RECORD_COUNTS.values()), dtype=float)
    n_rec = rng.choice(sizes, size=n, p=p / p.sum())
    level = rng.normal(LEVEL, LEVEL_SD, size=n)
    return n_rec, [level[i] + RECORD_SD * rng.standard_normal(k) for i, k in enumerate(n_rec)]


def population_shares(thresholds, n: int = 400_000, seed: int = 99) -> np.ndarray:
    """Share of patients whose true AUC (the largest of their records') is at least each threshold."""
    rng = np.random.default_rng(seed)
    n_rec, d = patient_truth(rng, n)
    top = np.array([x.max() for x in d])
    return (top[:, None] >= sps.norm.ppf(thresholds)[None, :]).mean(axis=0)


def simulate(rng: np.random.Generator, n_patients: int, n_models: int, rho: float, model_effect: float):
    """Signals, membership, patient ids and each patient's true probit AUC."""
    n_rec, d = patient_truth(rng, n_patients)
    member_p = rng.random((n_models, n_patients)).argsort(axis=0).argsort(axis=0) < n_models // 2
    shift = model_effect * rng.standard_normal((n_models, 1))
    scale = np.sqrt(1 + SD_OUT**2 + 2 * model_effect**2)  # Δ/S of a record is its true probit
    confs, members, ids = [], [], []
    for p, dp in enumerate(d):
        z = np.sqrt(rho) * rng.standard_normal((n_models, 1)) + np.sqrt(1 - rho) * rng.standard_normal(
            (n_models, dp.size)
        )
        inside = member_p[:, p]
        confs.append(np.where(inside[:, None], dp * scale + z, SD_OUT * z) + shift)
        members.append(np.repeat(inside[:, None], dp.size, axis=1))
        ids += [f"p{p:04d}"] * dp.size
    return np.hstack(confs), np.hstack(members), np.array(ids), np.array([x.max() for x in d])


def run(sets, n_patients, n_models, rho, model_effect, boot, eb_boot, seed) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(sets):
        conf, member, ids, truth = simulate(rng, n_patients, n_models, rho, model_effect)
        table, reps = patients.patient_statistics(
            conf, member, ids, n_boot=boot, seed=seed * 100_003 + s, thresholds=THRESHOLDS, attack_permutations=0
        )
        t = headline.threshold_rows(table, THRESHOLDS, reps, eb_boot, seed * 100_003 + s)
        t["true_sample_share"] = (truth[:, None] >= sps.norm.ppf(THRESHOLDS)[None, :]).mean(axis=0)
        rows.append(t.assign(set=s))
    return pd.concat(rows, ignore_index=True)


def summarise(df: pd.DataFrame, population: np.ndarray) -> pd.DataFrame:
    out = []
    for i, (t, d) in enumerate(df.groupby("threshold", sort=True)):
        plug = d["share"].mean()  # the estimand of the joint interval: the design's mean plug-in share
        pop = population[i]

        def cover(lo, hi, target, d=d):
            return float(((d[lo] <= target) & (target <= d[hi])).mean())

        out.append(
            {
                "threshold": t,
                "true_share": pop,
                "mean_plugin": plug,
                "mean_eb": d["share_eb"].mean(),
                "sd_plugin": d["share"].std(ddof=1),
                "sd_eb": d["share_eb"].std(ddof=1),
                "joint_covers_plugin": cover("ci_low_boot", "ci_high_boot", plug),
                "median_deff": d["deff_boot"].median(),
                "eb_covers_truth": cover("ci_low_eb", "ci_high_eb", pop),
                "binomial_covers_plugin": cover("ci_low", "ci_high", plug),
                "binomial_covers_truth": cover("ci_low", "ci_high", pop),
                "joint_width": (d["ci_high_boot"] - d["ci_low_boot"]).mean(),
                "eb_width": (d["ci_high_eb"] - d["ci_low_eb"]).mean(),
                "binomial_width": (d["ci_high"] - d["ci_low"]).mean(),
                "mc_se": float(np.sqrt(0.95 * 0.05 / d["set"].nunique())),
            }
        )
    return pd.DataFrame(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sets", type=int, default=200)
    ap.add_argument("--patients", type=int, default=250)
    ap.add_argument("--models", type=int, default=200)
    ap.add_argument("--rho", type=float, default=0.47)
    ap.add_argument("--model-effect", type=float, default=0.0)
    ap.add_argument("--boot", type=int, default=200)
    ap.add_argument("--eb-boot", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    df = run(a.sets, a.patients, a.models, a.rho, a.model_effect, a.boot, a.eb_boot, a.seed)
    s = summarise(df, population_shares(THRESHOLDS))
    print(
        f"{a.sets} data sets of {a.patients} patients, {a.models} models, model effect {a.model_effect}, "
        f"{a.boot} joint and {a.eb_boot} deconvolution bootstrap replicates ({time.perf_counter() - t0:.0f} s)"
    )
    with pd.option_context("display.width", 250):
        print(s.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    ok = s[["joint_covers_plugin", "eb_covers_truth"]].apply(lambda c: c.between(0.93, 0.97)).all().all()
    print("every new interval covers its estimand in 93-97 % of data sets:", "yes" if ok else "NO")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
