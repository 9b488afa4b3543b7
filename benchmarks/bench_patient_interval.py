"""Benchmark: coverage of the patient-AUC interval and bias of the patient maximum.

Simulates patients with known true record AUCs and runs the audit's patient statistics
(:func:`mia_audit.patients.patient_statistics`: the bootstrap over models, the interval of
the maximum, the bias-corrected maximum). The signals follow the bundled cohort's
structure: 200 models, each patient IN for 100 of them; per model a patient's records have
correlated signals (within-patient correlation ``--rho``, 0.47 on the default cube) and
the out-SD is 1.45 × the in-SD (as on the default cube). A record with true AUC a has
in-mean Φ⁻¹(a)·√(1 + 1.45²). The true patient AUC is the largest true record AUC.

Configurations (each ``--patients`` patients):

* fixed ones that bracket the selection problem: one record; one dominant record among
  weaker ones; several records tied for the maximum (the hard case for any interval of a
  maximum); a spread of AUCs;
* ``realistic``: 1–16 records per patient with the default cube's record counts, patient
  level Φ⁻¹(AUC) ~ N(0.55, 0.75²) and records around it with SD 0.25 (probit scale).

Prints per configuration the coverage of the reported interval (``max_ci_low``,
``max_ci_high``), of the worst record's own interval (``ci_low``, ``ci_high``, what the
table gave before) and of the naive bootstrap interval of the maximum (basic interval
2·d_max − q*, from the same kind of Poisson bootstrap; not used by the audit), the mean
bias of the maximum and of the bias-corrected maximum, and the mean interval width.

    PYTHONPATH=workflow python benchmarks/bench_patient_interval.py              # 1,000 patients each
    PYTHONPATH=workflow python benchmarks/bench_patient_interval.py --patients 200 --boot 200
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
from scipy import stats as sps

from mia_audit import patients

N_MODELS = 200
SD_OUT = 1.45
#: record counts of the default cube's pool patients (1..16 records: number of patients)
PBC_RECORD_COUNTS = {1: 20, 2: 17, 3: 26, 4: 35, 5: 24, 6: 19, 7: 17, 8: 18, 9: 13, 10: 17, 11: 14, 12: 11}
PBC_RECORD_COUNTS.update({13: 5, 14: 5, 15: 6, 16: 3})

FIXED = {
    "one record 0.8": [0.8],
    "dominant 0.95 + 4 x 0.7": [0.95, 0.7, 0.7, 0.7, 0.7],
    "3 tied at 0.7": [0.7] * 3,
    "10 tied at 0.8": [0.8] * 10,
    "16 tied at 0.6": [0.6] * 16,
    "2 tied at 0.99 + 0.9": [0.99, 0.99, 0.9],
    "spread 0.6-0.9 (10)": list(np.linspace(0.6, 0.9, 10)),
}


def realistic_aucs(rng: np.random.Generator, n_patients: int) -> list[np.ndarray]:
    sizes = np.array(list(PBC_RECORD_COUNTS))
    p = np.array(list(PBC_RECORD_COUNTS.values()), dtype=float)
    n_rec = rng.choice(sizes, size=n_patients, p=p / p.sum())
    level = rng.normal(0.55, 0.75, size=n_patients)
    return [sps.norm.cdf(level[i] + 0.25 * rng.standard_normal(k)) for i, k in enumerate(n_rec)]


def simulate(rng: np.random.Generator, true_aucs: list, rho: float):
    """Signals (models, records), membership and patient ids for patients with these true record AUCs."""
    confs, members, ids = [], [], []
    for p, aucs in enumerate(true_aucs):
        aucs = np.asarray(aucs, dtype=float)
        r = aucs.size
        z = np.sqrt(rho) * rng.standard_normal((N_MODELS, 1)) + np.sqrt(1 - rho) * rng.standard_normal((N_MODELS, r))
        inside = np.zeros(N_MODELS, dtype=bool)
        inside[rng.choice(N_MODELS, N_MODELS // 2, replace=False)] = True
        mu = sps.norm.ppf(aucs) * np.sqrt(1 + SD_OUT**2)
        x = np.where(inside[:, None], mu + z, SD_OUT * z)
        confs.append(x)
        members.append(np.repeat(inside[:, None], r, axis=1))
        ids += [f"p{p}"] * r
    return np.hstack(confs), np.hstack(members), np.array(ids)


def naive_bootstrap_interval(conf, member, ids, n_boot: int, rng) -> pd.DataFrame:
    """Basic bootstrap interval of the maximum itself: [2 d_max − q*_0.975, 2 d_max − q*_0.025] (probit)."""
    w = patients.poisson_weights(conf.shape[0], n_boot, rng)
    d, _ = patients.weighted_probit_auc(conf, member, w)
    d0, _ = patients.weighted_probit_auc(conf, member, np.ones((1, conf.shape[0])))
    frame = pd.DataFrame(np.vstack([d0, d]).T, index=ids)
    best = frame.groupby(level=0, sort=False).max()
    d_max, star = best[0].to_numpy(), best.drop(columns=0).to_numpy()
    lo, hi = np.nanquantile(star, [0.025, 0.975], axis=1)
    return pd.DataFrame({"low": sps.norm.cdf(2 * d_max - hi), "high": sps.norm.cdf(2 * d_max - lo)}, index=best.index)


def evaluate(true_aucs: list, rng, rho: float, n_boot: int, seed: int) -> dict:
    conf, member, ids = simulate(rng, true_aucs, rho)
    t = patients.patient_statistics(conf, member, ids, n_boot=n_boot, seed=seed)
    truth = pd.Series([float(np.max(a)) for a in true_aucs], index=[f"p{i}" for i in range(len(true_aucs))])
    t = t.set_index("patient_id").loc[truth.index]
    naive = naive_bootstrap_interval(conf, member, ids, n_boot, rng).loc[truth.index]
    return {
        "patients": len(t),
        "coverage": float(((t["max_ci_low"] <= truth) & (truth <= t["max_ci_high"])).mean()),
        "miss_low": float((truth < t["max_ci_low"]).mean()),
        "miss_high": float((truth > t["max_ci_high"]).mean()),
        "coverage_worst_record_ci": float(((t["ci_low"] <= truth) & (truth <= t["ci_high"])).mean()),
        "coverage_naive_bootstrap": float(((naive["low"] <= truth) & (truth <= naive["high"])).mean()),
        "bias_max": float((t["auc"] - truth).mean()),
        "bias_bc": float((t["auc_bc"] - truth).mean()),
        "width": float((t["max_ci_high"] - t["max_ci_low"]).mean()),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--patients", type=int, default=1000, help="simulated patients per configuration")
    ap.add_argument("--boot", type=int, default=500, help="bootstrap replicates (audit.patient_bootstrap)")
    ap.add_argument("--rho", type=float, default=0.47)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    rng = np.random.default_rng(a.seed)
    t0 = time.perf_counter()
    rows = []
    for name, aucs in FIXED.items():
        rows.append({"configuration": name, **evaluate([aucs] * a.patients, rng, a.rho, a.boot, a.seed)})
    rows.append({"configuration": "realistic", **evaluate(realistic_aucs(rng, a.patients), rng, a.rho, a.boot, a.seed)})
    df = pd.DataFrame(rows)
    mc = np.sqrt(0.95 * 0.05 / a.patients)
    print(
        f"{a.patients} patients per configuration, {N_MODELS} models, rho {a.rho}, {a.boot} bootstrap replicates "
        f"({time.perf_counter() - t0:.0f} s); Monte-Carlo SE of a coverage near 95 %: {mc:.3f}"
    )
    print(df.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
