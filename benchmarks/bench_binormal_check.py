"""Benchmark: calibration and power of the per-record check of the bi-normal AUC.

For records whose in- and out-signals are normal (σ_out = 1.5 σ_in; 50 + 50 and
100 + 100 models; true AUC 0.55, 0.7, 0.9, 0.99; ``--records`` records each) it prints the
SD and mean of ``binormal_z`` (≈ 1 and ≈ 0 when calibrated), the share flagged at
α = 0.01 (≈ α at most), and the DeLong SE of the empirical AUC against the replicate SD;
then, for skewed (log-normal) signals, the share flagged and the mean |bi-normal −
empirical AUC| (the check's power). See :func:`mia_audit.audit.stats.mann_whitney_auc`.

    PYTHONPATH=workflow python benchmarks/bench_binormal_check.py
"""

from __future__ import annotations

import argparse

import numpy as np
from scipy import stats as sps

from mia_audit.audit import stats


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=4000)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    rng = np.random.default_rng(a.seed)
    print("normal signals: models per side, true AUC, SD and mean of z, share flagged (α 0.01), mean DeLong SE, SD")
    for n in (50, 100):
        for auc in (0.55, 0.7, 0.9, 0.99):
            d = sps.norm.ppf(auc) * np.sqrt(1 + 1.5**2)
            x = np.vstack([rng.normal(d, 1, (n, a.records)), rng.normal(0, 1.5, (n, a.records))])
            member = np.zeros(x.shape, dtype=bool)
            member[:n] = True
            rr = stats.record_risk(x, member, check_alpha=0.01)
            z = rr["binormal_z"]
            print(
                f"  {n:>3} {auc:.2f}  z SD {z.std():.3f} mean {z.mean():+.3f}  flagged {rr['binormal_flag'].mean():.4f}"
                f"  SE_emp {rr['se_emp'].mean():.4f} vs SD {rr['auc_emp'].std():.4f}"
            )
    print("log-normal signals (100 + 100 models): share flagged, mean |bi-normal - empirical|")
    for auc in (0.7, 0.9):
        x = np.vstack(
            [rng.lognormal(0, 1, (100, a.records)), rng.lognormal(0, 1, (100, a.records)) - sps.norm.ppf(auc) * 1.5]
        )
        member = np.zeros(x.shape, dtype=bool)
        member[:100] = True
        rr = stats.record_risk(x, member)
        diff = (rr["auc"] - rr["auc_emp"]).abs().mean()
        print(f"  {auc:.2f}  flagged {rr['binormal_flag'].mean():.3f}  |diff| {diff:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
