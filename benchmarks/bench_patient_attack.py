"""Benchmark: is the direct patient attack's interval valid? Coverage of 0.5 for a patient without exposure.

Simulates data sets with one **null patient** (its records' signals do not depend on whether a
model trained on it): ``--models`` models, the patient IN for half of them, ``--records``
records per patient with a per-model shared component (within-patient correlation ``--rho``)
and record SDs from 0.6 to 1.6 (so the records' in- and out-Gaussians fitted on the models
differ by chance). For each data set it runs the audit's cross-fitted attack
(:func:`mia_audit.audit.patients.patient_statistics`: ``--folds`` folds, SE from
``--permutations`` membership shuffles) and, for comparison, the leave-one-out attack the audit
used before (every model scored with Gaussians fitted on all other models, empirical AUC with
its DeLong SE), and prints per configuration the coverage of 0.5 by each 95 % interval, the
rate of "significantly below 0.5", the mean AUC and the mean SE against the SD of the AUC over
data sets.

    PYTHONPATH=workflow python benchmarks/bench_patient_attack.py                    # 1,000 data sets each
    PYTHONPATH=workflow python benchmarks/bench_patient_attack.py --sets 300 --models 100
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
from scipy import stats as sps

from mia_audit.audit import patients, stats


def null_patient(rng: np.random.Generator, n_models: int, records: int, rho: float):
    """Signals (models, records) and membership of one patient without exposure."""
    inside = np.zeros(n_models, dtype=bool)
    inside[rng.choice(n_models, n_models // 2, replace=False)] = True
    z = np.sqrt(rho) * rng.standard_normal((n_models, 1)) + np.sqrt(1 - rho) * rng.standard_normal((n_models, records))
    return z * np.linspace(0.6, 1.6, records), np.repeat(inside[:, None], records, axis=1)


def leave_one_out(conf: np.ndarray, member: np.ndarray) -> tuple[float, float]:
    """The former attack: summed leave-one-out Gaussian log-likelihood ratios (each model's own
    side refitted without it: μ' = (nμ − x)/(n − 1), SS' = SS − (x − μ)(x − μ')), empirical AUC
    and DeLong SE."""
    x = np.asarray(conf, dtype=np.float64)
    gauss = {}
    for side, own in (("in", member), ("out", ~member)):
        n = own.sum(axis=0)
        mu = np.where(own, x, 0).sum(axis=0) / n
        ss = np.where(own, (x - mu) ** 2, 0).sum(axis=0)
        mu_loo = (n * mu - x) / (n - 1)
        sd_loo = np.sqrt(np.clip(ss - (x - mu) * (x - mu_loo), 0, None) / (n - 2))
        gauss[side] = (np.where(own, mu_loo, mu), np.where(own, sd_loo, np.sqrt(ss / (n - 1))))
    score = (sps.norm.logpdf(x, *gauss["in"]) - sps.norm.logpdf(x, *gauss["out"])).sum(axis=1)
    mw = stats.mann_whitney_auc(score[:, None], member[:, :1])
    return float(mw["auc_emp"][0]), float(mw["se_emp"][0])


def run(sets: int, n_models: int, records: int, rho: float, folds: int, permutations: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng([seed, records])
    rows = []
    for s in range(sets):
        conf, member = null_patient(rng, n_models, records, rho)
        t = patients.patient_statistics(
            conf,
            member,
            np.array(["p"] * records),
            n_boot=0,
            seed=seed * 100_003 + s,
            attack_folds=folds,
            attack_permutations=permutations,
        ).iloc[0]
        loo_auc, loo_se = leave_one_out(conf, member)
        rows.append(
            {
                "auc": t["attack_auc"],
                "se": t["attack_se"],
                "covers": t["attack_ci_low"] <= 0.5 <= t["attack_ci_high"],
                "below": t["attack_ci_high"] < 0.5,
                "p": t["attack_p"],
                "loo_auc": loo_auc,
                "loo_se": loo_se,
                "loo_covers": abs(loo_auc - 0.5) <= 1.96 * loo_se,
                "loo_below": loo_auc + 1.96 * loo_se < 0.5,
            }
        )
    return pd.DataFrame(rows)


def summarise(df: pd.DataFrame) -> dict:
    n = len(df)
    return {
        "sets": n,
        "coverage": float(df["covers"].mean()),
        "mc_se": float(np.sqrt(0.95 * 0.05 / n)),
        "below_0.5": float(df["below"].mean()),
        "p_le_0.05": float((df["p"] <= 0.05).mean()),
        "mean_auc": float(df["auc"].mean()),
        "sd_auc": float(df["auc"].std(ddof=1)),
        "mean_se": float(df["se"].mean()),
        "loo_coverage": float(df["loo_covers"].mean()),
        "loo_below_0.5": float(df["loo_below"].mean()),
        "loo_mean_auc": float(df["loo_auc"].mean()),
        "loo_sd_auc": float(df["loo_auc"].std(ddof=1)),
        "loo_mean_se": float(df["loo_se"].mean()),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sets", type=int, default=1000)
    ap.add_argument("--models", type=int, default=200)
    ap.add_argument("--records", default="1,4,16", help="records per patient, one configuration each")
    ap.add_argument("--rho", type=float, default=0.47)
    ap.add_argument("--folds", type=int, default=2)
    ap.add_argument("--permutations", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    out = []
    for r in (int(x) for x in a.records.split(",")):
        t0 = time.perf_counter()
        res = summarise(run(a.sets, a.models, r, a.rho, a.folds, a.permutations, a.seed))
        out.append({"records": r, **res, "seconds": round(time.perf_counter() - t0, 1)})
    s = pd.DataFrame(out)
    print(
        f"null patients: {a.sets} data sets per configuration, {a.models} models, {a.folds} folds, "
        f"{a.permutations} membership shuffles, within-patient correlation {a.rho}"
    )
    with pd.option_context("display.width", 250):
        print(s.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    ok = ((s["coverage"] >= 0.93) & (s["coverage"] <= 0.97)).all()
    print("cross-fitted interval covers 0.5 in 93-97 % of data sets:", "yes" if ok else "NO")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
