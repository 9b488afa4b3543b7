"""Benchmark: type-I error of the tail-composition tests when records cluster within patients.

Simulates the null many times: ``--patients`` patients with 1–20 records each (uniform),
record AUCs correlated within patient (a patient effect with intra-class correlation
``--icc``), and two subgroup attributes independent of the AUCs:

* ``arm``: constant within a patient (three groups, shares 0.5 / 0.3 / 0.2), like sex or
  a treatment arm;
* ``age``: changes over a patient's visits (baseline age 30–75 plus one year per
  record, bands <40, 40–49, 50–59, ≥60), like the bundled cohort's age bands.

For each replicate and attribute it runs the naive record-level test
(:func:`mia_audit.subgroups.goodness_of_fit`: records as independent units) and the
patient-clustered permutation test (:func:`mia_audit.subgroups.cluster_permutation_test`)
on the tail at ``--quantile``, and prints each test's rejection rate at α = 0.05 with its
Monte-Carlo SE, the band 0.05 ± 2 SE, and the median design effect and tail patients.

    PYTHONPATH=workflow python benchmarks/bench_cluster_test.py                  # 2,000 replicates
    PYTHONPATH=workflow python benchmarks/bench_cluster_test.py --quantile 0.99
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from mia_audit import subgroups as sg

AGE_BINS = [0, 40, 50, 60, 200]


def simulate(rng: np.random.Generator, n_patients: int, icc: float, max_records: int = 20):
    """One null data set: per record its patient, AUC score and the two attributes (codes)."""
    n_rec = rng.integers(1, max_records + 1, size=n_patients)
    patient = np.repeat(np.arange(n_patients), n_rec)
    effect = rng.standard_normal(n_patients)[patient]
    score = np.sqrt(icc) * effect + np.sqrt(1 - icc) * rng.standard_normal(patient.size)
    arm = rng.choice(3, size=n_patients, p=[0.5, 0.3, 0.2])[patient]
    visit = np.concatenate([np.arange(k) for k in n_rec])
    age = rng.uniform(30, 75, size=n_patients)[patient] + visit
    age_band = np.digitize(age, AGE_BINS[1:-1])
    return patient, score, {"arm": arm, "age": age_band}


def one_replicate(rng, n_patients, icc, quantile, permutations):
    patient, score, attrs = simulate(rng, n_patients, icc)
    tail, _ = sg.tail_mask(score, quantile)
    out = {}
    for name, codes in attrs.items():
        present = np.unique(codes)
        codes = np.searchsorted(present, codes)
        overall = np.bincount(codes)
        observed = np.bincount(codes[tail], minlength=present.size)
        naive = sg.goodness_of_fit(observed, overall, rng=rng, draws=100_000)
        n = observed.sum()
        clustered = sg.cluster_permutation_test(
            codes, tail, patient, overall / overall.sum() * n, permutations=permutations, rng=rng
        )
        out[name] = (naive["p"], clustered["p"], clustered["design_effect"], clustered["n_tail_patients"])
    return out


def run(replicates: int, n_patients: int, icc: float, quantile: float, permutations: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for r in range(replicates):
        for name, (p_naive, p_cluster, deff, n_pat) in one_replicate(
            rng, n_patients, icc, quantile, permutations
        ).items():
            rows.append(
                {
                    "replicate": r,
                    "attribute": name,
                    "p_naive": p_naive,
                    "p_cluster": p_cluster,
                    "design_effect": deff,
                    "n_tail_patients": n_pat,
                }
            )
    return pd.DataFrame(rows)


def summarise(df: pd.DataFrame, alpha: float = 0.05) -> pd.DataFrame:
    out = []
    for name, d in df.groupby("attribute", sort=False):
        n = len(d)
        se = np.sqrt(alpha * (1 - alpha) / n)
        out.append(
            {
                "attribute": name,
                "replicates": n,
                "type1_naive": float((d["p_naive"] < alpha).mean()),
                "type1_cluster": float((d["p_cluster"] < alpha).mean()),
                "band_low": alpha - 2 * se,
                "band_high": alpha + 2 * se,
                "median_design_effect": float(d["design_effect"].median()),
                "median_tail_patients": float(d["n_tail_patients"].median()),
            }
        )
    return pd.DataFrame(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--replicates", type=int, default=2000)
    ap.add_argument("--patients", type=int, default=300)
    ap.add_argument("--icc", type=float, default=0.5)
    ap.add_argument("--quantile", type=float, default=0.95)
    ap.add_argument("--permutations", type=int, default=999)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    df = run(a.replicates, a.patients, a.icc, a.quantile, a.permutations, a.seed)
    s = summarise(df)
    print(
        f"{a.replicates} null replicates, {a.patients} patients with 1-20 records, ICC {a.icc}, "
        f"tail at the {a.quantile} quantile, {a.permutations} permutations ({time.perf_counter() - t0:.0f} s)"
    )
    print(s.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    ok = ((s["type1_cluster"] >= s["band_low"]) & (s["type1_cluster"] <= s["band_high"])).all()
    print("clustered test within 0.05 ± 2 Monte-Carlo SE:", "yes" if ok else "NO")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
