"""Estimators for few models: simulation with known record AUCs, and the 64-model share on real cubes.

1. Simulation. The true parameters of every record (μ_in, μ_out, σ_in, σ_out) are those a
   finished audit estimated from all its models (record_risk.parquet); signals are drawn
   normal with them for k models (k/2 IN, k/2 OUT per record, independently per record), so
   every record's AUC and every patient's (the maximum over its records) is known. Printed
   per k: coverage of the 95 % record intervals (all records, records with AUC > 0.9), RMSE
   and bias of the record AUC, for the bi-normal and the moderated estimator; the share of
   patients with AUC >= 0.9 against the true share, its Monte-Carlo SD (split halves)
   against the SD over replicates; the bias-corrected share (half-sample jackknife); how
   often the error bound |bias| + 1.96·mc_sd of the adaptive audit holds for either, with the
   default bias_exponent 1 and with the conservative 0.5.
2. Real cubes. The share of patients with AUC >= 0.9 from nested balanced 64-model subsets
   (random model orders) against the audit's all-model 95 % interval (patient_thresholds.tsv).

    .venv/bin/python benchmarks/bench_few_models.py --audit results/pbc/mlp [--audit other/exp] \
        [--sizes 8 16 32 64 128] [--replicates 20] [--orders 20] [--splits 20]

An ``--audit`` folder is ``{results}/{dataset}/{experiment}`` of a finished run (with
audit/record_risk.parquet, audit/patient_thresholds.tsv and cube.zarr).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats as sps

from mia_audit.analysis import adaptive, convergence
from mia_audit.audit import moderation, stats
from mia_audit.sampling import subsets


def simulate(truth: pd.DataFrame, k: int, rng: np.random.Generator):
    """(conf, member) of k models for every record of ``truth`` (k/2 IN, k/2 OUT)."""
    n = k // 2
    r = len(truth)
    x_in = truth["mu_in"].to_numpy() + truth["sd_in"].to_numpy() * rng.standard_normal((n, r))
    x_out = truth["mu_out"].to_numpy() + truth["sd_out"].to_numpy() * rng.standard_normal((n, r))
    member = np.zeros((k, r), dtype=bool)
    member[:n] = True
    return np.vstack([x_in, x_out]), member


def share(auc, patient_index, t=0.9) -> float:
    best = pd.Series(auc).groupby(patient_index).max()
    return float((best >= t).mean())


def simulation(audit: Path, sizes, replicates: int, splits: int, rng) -> None:
    truth = pd.read_parquet(audit / "audit" / "record_risk.parquet")
    truth = truth[truth["status"].astype(str) == "ok"].reset_index(drop=True)
    true_auc = stats.binormal_auc(truth["mu_in"], truth["mu_out"], truth["sd_in"], truth["sd_out"])
    pidx = pd.factorize(truth["patient_id"])[0]
    true_share = share(true_auc, pidx)
    print(f"\n## simulation from {audit} ({len(truth)} records, {pidx.max() + 1} patients)")
    print(f"true share of patients with AUC >= 0.9: {true_share:.4f}")
    print(
        "k    estimator  coverage  cov(AUC>0.9)  rmse    bias     share   sd(share)  mean mc_sd  "
        "|share-true|<=bound  share_bc  sd(share_bc)  |share_bc-true|<=bound"
    )
    for k in sizes:
        keys = ("cov", "cov_hi", "se2", "bias", "share", "mc", "hit", "bc", "hit_bc", "hit_c", "hit_bc_c")
        res = {e: {key: [] for key in keys} for e in ("binormal", "moderated")}
        for _ in range(replicates):
            conf, member = simulate(truth, k, rng)
            rr = stats.record_risk(conf, member)
            mod, _ = moderation.add_moderated(rr)
            # the first k/2 models are IN for every record (and patient): balanced on its own
            pool = convergence.PoolCube.from_arrays(conf, member, truth["record_id"], truth["patient_id"])
            for est, (auc, lo, hi) in {
                "binormal": (rr["auc"], rr["ci_low"], rr["ci_high"]),
                "moderated": (mod["auc_mod"], mod["ci_low_mod"], mod["ci_high_mod"]),
            }.items():
                covered = (lo <= true_auc) & (true_auc <= hi)
                res[est]["cov"].append(covered.mean())
                res[est]["cov_hi"].append(covered[true_auc > 0.9].mean())
                res[est]["se2"].append(np.mean((auc - true_auc) ** 2))
                res[est]["bias"].append(np.mean(auc - true_auc))
                if k % 4 == 0 and splits:
                    p = adaptive.share_precision(
                        pool, k, 0.9, estimator=est, splits=splits, seed=int(rng.integers(1 << 30))
                    )
                    res[est]["share"].append(p["share"])
                    res[est]["mc"].append(p["mc_sd"])
                    res[est]["hit"].append(abs(p["share"] - true_share) <= p["error_bound"])
                    res[est]["bc"].append(p["share_bc"])
                    res[est]["hit_bc"].append(abs(p["share_bc"] - true_share) <= p["error_bound"])
                    # the conservative bound: bias taken to fall like k^-1/2 (bias_exponent 0.5)
                    bound_c = abs(p["bias"]) / (np.sqrt(2) - 1) + p["half_width"]
                    res[est]["hit_c"].append(abs(p["share"] - true_share) <= bound_c)
                    res[est]["hit_bc_c"].append(abs(p["share"] - p["bias"] / (np.sqrt(2) - 1) - true_share) <= bound_c)
                else:
                    res[est]["share"].append(share(auc, pidx))
        for est, r in res.items():
            mc = f"{np.mean(r['mc']):.4f}" if r["mc"] else "   -  "
            hit = f"{np.mean(r['hit']):.3f}" if r["hit"] else "  -  "
            if r["bc"]:
                hit += f"   {np.mean(r['bc']):.4f}  {np.std(r['bc'], ddof=1):.4f}   {np.mean(r['hit_bc']):.3f}"
                hit += f"     β=0.5: {np.mean(r['hit_c']):.3f} {np.mean(r['hit_bc_c']):.3f}"
            print(
                f"{k:<4} {est:<10} {np.mean(r['cov']):.3f}     {np.mean(r['cov_hi']):.3f}         "
                f"{np.sqrt(np.mean(r['se2'])):.4f}  {np.mean(r['bias']):+.4f}  {np.mean(r['share']):.4f}  "
                f"{np.std(r['share'], ddof=1):.4f}     {mc}      {hit}"
            )


def real_cube(audit: Path, k: int, orders: int, rng) -> None:
    thresholds = pd.read_csv(audit / "audit" / "patient_thresholds.tsv", sep="\t").set_index("threshold")
    final = thresholds.loc[0.9]
    cube = convergence.PoolCube.open(audit / "cube.zarr")
    print(
        f"\n## {audit}: share of patients >= 0.9 with {k} of {cube.n_models} models "
        f"({orders} random nested balanced subsets) against the all-model 95 % interval "
        f"{final['share']:.4f} [{final['ci_low']:.4f}, {final['ci_high']:.4f}]"
    )
    out = {"binormal": [], "moderated": []}
    for _ in range(orders):
        mask = subsets.nested_subsets(cube.patient_member, k, rng.permutation(cube.n_models))
        rr = convergence.subset_record_risk(cube, {k: mask})[k]
        mod = moderation.moderated_columns(rr)
        pidx = pd.factorize(rr["patient_id"])[0]
        out["binormal"].append(share(rr["auc"], pidx))
        out["moderated"].append(share(mod["auc_mod"], pidx))
    for est, v in out.items():
        v = np.asarray(v)
        inside = (v >= final["ci_low"]) & (v <= final["ci_high"])
        print(
            f"{est:<10} mean {v.mean():.4f}  min {v.min():.4f}  max {v.max():.4f}  "
            f"within the all-model interval: {inside.mean():.0%} of subsets"
        )


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--audit", action="append", type=Path, required=True)
    ap.add_argument("--sizes", type=int, nargs="+", default=[8, 16, 32, 64, 128])
    ap.add_argument("--replicates", type=int, default=20)
    ap.add_argument("--orders", type=int, default=20)
    ap.add_argument("--splits", type=int, default=20)
    ap.add_argument("--k", type=int, default=64, help="models of the real-cube check")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    for audit in args.audit:
        real_cube(audit, args.k, args.orders, rng)
        simulation(audit, args.sizes, args.replicates, args.splits, rng)
    print(f"\n{time.perf_counter() - t0:.0f} s; z = {sps.norm.ppf(0.975):.3f}")


if __name__ == "__main__":
    main()
