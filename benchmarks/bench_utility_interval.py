"""Benchmark: coverage of the patient-clustered intervals of the test AUC and of the gap to a baseline.

Simulates test sets like the bundled cohort's: ``--patients`` test patients with the default
cube's record counts (1–16), a label constant within the patient (share ``--positive``), and
per record a latent risk score = patient effect + visit noise that is higher for positive
patients (so records of a patient are correlated). ``--models`` target models and
``--baselines`` baseline fits score each record as signal × strength + their own noise (the
targets a little stronger than the baseline). The truth — each model's AUC on the population
of patients — is computed from 40,000 simulated patients (about 270,000 records), and its mean over models (the
quantity ``test_auc`` estimates) and the gap between the means are what the intervals should
cover.

Each data set runs :func:`mia_audit.train.model_utility.clustered_intervals` (``--boot``
replicates over test patients) and, for comparison, a naive bootstrap over records (patients
ignored) and the spread of single models (2.5th–97.5th percentile of the models' AUCs).

    PYTHONPATH=workflow python benchmarks/bench_utility_interval.py                  # 500 data sets
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from mia_audit.train import model_utility

PBC_RECORD_COUNTS = {1: 20, 2: 17, 3: 26, 4: 35, 5: 24, 6: 19, 7: 17, 8: 18, 9: 13, 10: 17, 11: 14, 12: 11}
PBC_RECORD_COUNTS.update({13: 5, 14: 5, 15: 6, 16: 3})


def cohort(rng: np.random.Generator, n_patients: int, positive: float):
    """Records of ``n_patients`` patients: patient ids, label, latent signal."""
    sizes = np.array(list(PBC_RECORD_COUNTS))
    p = np.array(list(PBC_RECORD_COUNTS.values()), dtype=float)
    n_rec = rng.choice(sizes, size=n_patients, p=p / p.sum())
    pid = np.repeat(np.arange(n_patients), n_rec)
    y = (rng.random(n_patients) < positive)[pid]
    signal = 1.2 * y + 0.8 * rng.standard_normal(n_patients)[pid] + 0.6 * rng.standard_normal(pid.size)
    return pid, y, signal


def scores(rng, signal, strengths) -> np.ndarray:
    """(models, records): each model's score, its own strength times the signal plus noise."""
    s = np.asarray(strengths, dtype=float)[:, None]
    return s * signal[None, :] + rng.standard_normal((s.size, signal.size))


def population_auc(strengths, positive: float, n: int = 40_000, seed: int = 99) -> np.ndarray:
    """Each model's AUC over the records of a very large cohort (the truth)."""
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(seed)
    _, y, signal = cohort(rng, n, positive)
    sc = scores(rng, signal, strengths)
    return np.array([roc_auc_score(y, row) for row in sc])


def run(sets, n_patients, n_models, n_baselines, positive, boot, seed):
    rng = np.random.default_rng(seed)
    strengths = rng.uniform(0.9, 1.1, n_models)
    base_strengths = rng.uniform(0.75, 0.9, n_baselines)
    truth_t = population_auc(strengths, positive).mean()
    truth_b = population_auc(base_strengths, positive).mean()
    rows = []
    for s in range(sets):
        pid, y, signal = cohort(rng, n_patients, positive)
        st, sb = scores(rng, signal, strengths), scores(rng, signal, base_strengths)
        iv = model_utility.clustered_intervals(st, y, pid, {"b": sb}, "b", n_boot=boot, seed=seed * 100_003 + s)
        # naive: records resampled as if independent
        w = rng.multinomial(pid.size, np.full(pid.size, 1 / pid.size), size=boot).astype(float)
        naive_t = np.nanmean(model_utility.weighted_auc(st, y, w), axis=1)
        one = model_utility.weighted_auc(st, y, np.ones((1, pid.size)))[0]
        lo_n, hi_n = np.quantile(naive_t, [0.025, 0.975])
        rows.append(
            {
                "auc_covers": iv["test_auc_ci_low"] <= truth_t <= iv["test_auc_ci_high"],
                "gap_covers": iv["auc_gap_ci_low"] <= truth_t - truth_b <= iv["auc_gap_ci_high"],
                "naive_covers": lo_n <= truth_t <= hi_n,
                "spread_covers": np.quantile(one, 0.025) <= truth_t <= np.quantile(one, 0.975),
                "auc_width": iv["test_auc_ci_high"] - iv["test_auc_ci_low"],
                "gap_width": iv["auc_gap_ci_high"] - iv["auc_gap_ci_low"],
                "naive_width": hi_n - lo_n,
                "spread_width": np.quantile(one, 0.975) - np.quantile(one, 0.025),
            }
        )
    return pd.DataFrame(rows), truth_t, truth_b


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sets", type=int, default=500)
    ap.add_argument("--patients", type=int, default=62)
    ap.add_argument("--models", type=int, default=50)
    ap.add_argument("--baselines", type=int, default=10)
    ap.add_argument("--positive", type=float, default=0.4)
    ap.add_argument("--boot", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    df, truth_t, truth_b = run(a.sets, a.patients, a.models, a.baselines, a.positive, a.boot, a.seed)
    s = df.mean()
    print(
        f"{a.sets} test sets of {a.patients} patients, {a.models} target models, {a.baselines} baselines, "
        f"{a.boot} replicates; true mean AUC {truth_t:.4f}, gap {truth_t - truth_b:+.4f} "
        f"({time.perf_counter() - t0:.0f} s; Monte-Carlo SE of a 95 % coverage {np.sqrt(0.95 * 0.05 / a.sets):.4f})"
    )
    print(s.to_string(float_format=lambda v: f"{v:.4f}"))
    ok = 0.93 <= s["auc_covers"] <= 0.97 and 0.93 <= s["gap_covers"] <= 0.97
    print("patient-clustered intervals cover in 93-97 % of test sets:", "yes" if ok else "NO")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
