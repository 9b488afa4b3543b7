"""Benchmark: coverage of the patient-AUC interval and bias of the patient maximum.

Simulates patients with known true record AUCs and runs the audit's patient statistics
(:func:`mia_audit.audit.patients.patient_statistics`: the bootstrap over models, the interval of
the maximum, the bias-corrected maximum). The signals follow the bundled cohort's
structure: 200 models, each patient IN for 100 of them; per model a patient's records have
correlated signals (within-patient correlation ``--rho``, 0.47 on the default cube) and
the out-SD is 1.45 × the in-SD (as on the default cube). A record with true AUC a has
in-mean Φ⁻¹(a)·√(1 + 1.45²). The true patient AUC is the largest true record AUC.

Configurations (each ``--patients`` patients):

* fixed ones that bracket the selection problem: one record; one dominant record among
  weaker ones; several records tied for the maximum (the hard case for any interval of a
  maximum); near-ties (records 1 and 2 SEs below the top: the hard case for an interval
  that exploits ties); a spread of AUCs;
* ``realistic``: 1–16 records per patient with the default cube's record counts, patient
  level Φ⁻¹(AUC) ~ N(0.55, 0.75²) and records around it with SD 0.25 (probit scale).

The patients of a configuration are run in ``--batches`` batches, each with its own
bootstrap seed: the audit draws one Poisson weight matrix for all patients, so within a
batch the patients share the bootstrap's own noise, and a single batch would estimate the
coverage for one weight matrix rather than the method's. ``mc_se`` is the Monte-Carlo SE
of the coverage from the spread between batches.

Prints per configuration the coverage of the reported interval (``max_ci_low``,
``max_ci_high``) and how often each end misses, and, computed here from a bootstrap of
their own for comparison: the previous interval of the audit (lower end simultaneous over
*all* the patient's records, upper end the largest of the records' own upper bounds), the
worst record's own interval (``ci_low``, ``ci_high``) and the naive bootstrap interval of
the maximum (basic interval 2·d_max − q*); the mean bias of the maximum, of the
bias-corrected maximum ``auc_bc`` and of the selection-based (half-median-unbiased)
estimator of Chernozhukov, Lee & Rosen (2013), and the mean widths.

    PYTHONPATH=workflow python benchmarks/bench_patient_interval.py              # 1,000 patients each
    PYTHONPATH=workflow python benchmarks/bench_patient_interval.py --patients 200 --boot 200
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
from scipy import stats as sps

from mia_audit.audit import patients

N_MODELS = 200
SD_OUT = 1.45
#: record counts of the default cube's pool patients (1..16 records: number of patients)
PBC_RECORD_COUNTS = {1: 20, 2: 17, 3: 26, 4: 35, 5: 24, 6: 19, 7: 17, 8: 18, 9: 13, 10: 17, 11: 14, 12: 11}
PBC_RECORD_COUNTS.update({13: 5, 14: 5, 15: 6, 16: 3})
#: probit-scale SE of a record with AUC 0.8 in this design (for the near-tie configurations)
SE_08 = 0.11

FIXED = {
    "one record 0.8": [0.8],
    "dominant 0.95 + 4 x 0.7": [0.95, 0.7, 0.7, 0.7, 0.7],
    "3 tied at 0.7": [0.7] * 3,
    "10 tied at 0.8": [0.8] * 10,
    "16 tied at 0.6": [0.6] * 16,
    "2 tied at 0.99 + 0.9": [0.99, 0.99, 0.9],
    "0.8 + 1 at 1 SE below": [0.8, float(sps.norm.cdf(sps.norm.ppf(0.8) - SE_08))],
    "0.8 + 4 at 2 SE below": [0.8] + [float(sps.norm.cdf(sps.norm.ppf(0.8) - 2 * SE_08))] * 4,
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


def reference_intervals(conf, member, ids, n_boot: int, rng) -> pd.DataFrame:
    """Per patient, from a Poisson bootstrap of their own (probit scale, then Φ):

    * ``prev_low``, ``prev_high``: the audit's previous interval, Φ(max_j d_j − c s_j) with c
      the 97.5 % quantile of max_j t*_j over *all* the patient's records, and Φ(max_j d_j + z s_j);
    * ``naive_low``, ``naive_high``: the basic bootstrap interval of the maximum,
      2·d_max − q*_0.975 and 2·d_max − q*_0.025 of the bootstrap maxima;
    * ``sel``: the half-median-unbiased estimator Φ(max_{j∈S}(d_j − k s_j)), k the bootstrap
      median of max_{j∈S} t*_j over the records S within κ_n SEs of the top (CLR 2013).
    """
    w = patients.poisson_weights(conf.shape[0], n_boot, rng)
    ds, ss = patients.weighted_probit_auc(conf, member, w)
    d0, s0 = (a[0] for a in patients.weighted_probit_auc(conf, member, np.ones((1, conf.shape[0]))))
    t = (ds - d0) / ss
    kappa, _ = patients.selection_margins(conf.shape[0])
    z = sps.norm.ppf(1 - patients.TAIL)
    rows = {}
    for pid, idx in pd.Series(np.arange(ids.size)).groupby(ids):
        idx = idx.to_numpy()
        d, s, tj = d0[idx], s0[idx], t[:, idx]
        c = np.nanquantile(tj.max(axis=1), 1 - patients.TAIL)
        star = ds[:, idx].max(axis=1)
        lo, hi = np.nanquantile(star, [patients.TAIL, 1 - patients.TAIL])
        sel = (d.max() - d) / s <= kappa
        k = np.nanmedian(tj[:, sel].max(axis=1))
        rows[pid] = [(d - c * s).max(), (d + z * s).max(), 2 * d.max() - hi, 2 * d.max() - lo, (d - k * s)[sel].max()]
    columns = ["prev_low", "prev_high", "naive_low", "naive_high", "sel"]
    out = pd.DataFrame.from_dict(rows, orient="index", columns=columns)
    return pd.DataFrame(sps.norm.cdf(out), index=out.index, columns=out.columns)


def evaluate(true_aucs: list, rng, rho: float, n_boot: int, seed: int, batches: int = 1) -> dict:
    """Coverage and bias over the patients ``true_aucs``, in ``batches`` with their own bootstrap seeds."""
    parts = []
    for b, chunk in enumerate(np.array_split(np.arange(len(true_aucs)), batches)):
        aucs = [true_aucs[i] for i in chunk]
        conf, member, ids = simulate(rng, aucs, rho)
        t = patients.patient_statistics(conf, member, ids, n_boot=n_boot, seed=seed * 100_003 + b)
        index = [f"p{i}" for i in range(len(aucs))]
        t = t.set_index("patient_id").loc[index].join(reference_intervals(conf, member, ids, n_boot, rng))
        t["truth"] = [float(np.max(a)) for a in aucs]
        t["batch"] = b
        parts.append(t)
    t = pd.concat(parts)
    truth = t["truth"]

    def covers(lo, hi):
        return (t[lo] <= truth) & (truth <= t[hi])

    cov = covers("max_ci_low", "max_ci_high")
    per_batch = cov.groupby(t["batch"]).mean()
    return {
        "patients": len(t),
        "coverage": float(cov.mean()),
        "mc_se": float(per_batch.std(ddof=1) / np.sqrt(batches)) if batches > 1 else np.nan,
        "miss_low": float((truth < t["max_ci_low"]).mean()),
        "miss_high": float((truth > t["max_ci_high"]).mean()),
        "coverage_previous": float(covers("prev_low", "prev_high").mean()),
        "miss_low_previous": float((truth < t["prev_low"]).mean()),
        "miss_high_previous": float((truth > t["prev_high"]).mean()),
        "coverage_worst_record_ci": float(covers("ci_low", "ci_high").mean()),
        "coverage_naive_bootstrap": float(covers("naive_low", "naive_high").mean()),
        "bias_max": float((t["auc"] - truth).mean()),
        "bias_bc": float((t["auc_bc"] - truth).mean()),
        "bias_sel": float((t["sel"] - truth).mean()),
        "rmse_bc": float(np.sqrt(((t["auc_bc"] - truth) ** 2).mean())),
        "rmse_sel": float(np.sqrt(((t["sel"] - truth) ** 2).mean())),
        "width": float((t["max_ci_high"] - t["max_ci_low"]).mean()),
        "width_previous": float((t["prev_high"] - t["prev_low"]).mean()),
        "candidates": float(t["max_candidates"].mean()),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--patients", type=int, default=1000, help="simulated patients per configuration")
    ap.add_argument("--boot", type=int, default=500, help="bootstrap replicates (audit.patient_bootstrap)")
    ap.add_argument("--batches", type=int, default=20, help="batches per configuration, each its own bootstrap seed")
    ap.add_argument("--rho", type=float, default=0.47)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    rng = np.random.default_rng(a.seed)
    t0 = time.perf_counter()
    rows = []
    for name, aucs in FIXED.items():
        rows.append({"configuration": name, **evaluate([aucs] * a.patients, rng, a.rho, a.boot, a.seed, a.batches)})
    realistic = realistic_aucs(rng, a.patients)
    rows.append({"configuration": "realistic", **evaluate(realistic, rng, a.rho, a.boot, a.seed, a.batches)})
    df = pd.DataFrame(rows).set_index("configuration")
    print(
        f"{a.patients} patients per configuration in {a.batches} batches, {N_MODELS} models, rho {a.rho}, "
        f"{a.boot} bootstrap replicates ({time.perf_counter() - t0:.0f} s); "
        f"binomial SE of a coverage near 95 %: {np.sqrt(0.95 * 0.05 / a.patients):.3f}"
    )
    fmt = {"float_format": lambda v: f"{v:.3f}"}
    print("\ninterval of the maximum (reported) and the previous one:")
    print(df.loc[:, "patients":"miss_high_previous"].to_string(**fmt))
    print("\nother intervals, bias of the estimators, widths:")
    print(df.loc[:, "coverage_worst_record_ci":].to_string(**fmt))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
