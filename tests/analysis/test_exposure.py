"""The exposure model (mia_audit.analysis.exposure) against an independent weighted least-squares
fit written out here, and a reduced-size run of benchmarks/bench_exposure_model.py (a known
effect, and an attribute that goes with records per patient; figures in docs/methods.md)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from benchmark_modules import load_benchmark
from scipy import stats as sps

from mia_audit.analysis import exposure


def _frame(rng, n=300):
    arm = rng.choice(["a", "b"], n, p=[0.6, 0.4])
    stage = rng.choice(["1", "2", "3"], n, p=[0.5, 0.3, 0.2])
    n_rec = 1 + rng.binomial(9, np.where(stage == "1", 0.6, 0.3))
    s = rng.uniform(0.05, 0.4, n)
    y = 0.3 + 0.4 * (arm == "b") + 0.2 * np.log(n_rec) + rng.normal(0, 0.3, n) + s * rng.standard_normal(n)
    return pd.DataFrame(
        {
            "patient_id": [f"p{i}" for i in range(n)],
            "y": y,
            "s": s,
            "n_records": n_rec,
            "arm": arm,
            "stage": stage,
            "response": "auc_bc",
        }
    )


def test_exposure_model_is_the_written_out_wls_with_moment_tau2_and_hc3():
    """Design, τ² (DerSimonian–Laird moments with the explicit projection P), the WLS estimate
    and its HC3 sandwich computed from their formulas with numpy, against the library."""
    f = _frame(np.random.default_rng(5))
    got = exposure.fit_exposure_model(f, ["arm", "stage"]).set_index("term")
    logn = np.log(f["n_records"].to_numpy(float))
    c = logn - logn.mean()
    X = np.column_stack([np.ones(len(f)), f["stage"] == "2", f["stage"] == "3", f["arm"] == "b", c, c**2]).astype(float)
    y, s = f["y"].to_numpy(), f["s"].to_numpy()
    n, p = X.shape
    W = np.diag(1 / s**2)
    P = W - W @ X @ np.linalg.inv(X.T @ W @ X) @ X.T @ W
    q = y @ P @ y
    tau2 = max(0.0, (q - (n - p)) / np.trace(P))
    assert got["tau2"].iloc[0] == pytest.approx(tau2, rel=1e-8)
    w = 1 / (s**2 + tau2)
    xt, yt = X * np.sqrt(w)[:, None], y * np.sqrt(w)
    bread = np.linalg.inv(xt.T @ xt)
    beta = bread @ xt.T @ yt
    e = yt - xt @ beta
    h = np.einsum("ij,jk,ik->i", xt, bread, xt)
    cov = bread @ (xt.T * (e / (1 - h)) ** 2) @ xt @ bread
    for i, term in ((1, "stage[2]"), (2, "stage[3]"), (3, "arm[b]"), (4, "log(records)")):
        se = np.sqrt(cov[i, i])
        assert got.loc[term, "estimate"] == pytest.approx(beta[i], rel=1e-8)
        assert got.loc[term, "se"] == pytest.approx(se, rel=1e-6)
        assert got.loc[term, "ci_high"] == pytest.approx(beta[i] + sps.t.ppf(0.975, n - p) * se, rel=1e-6)
        assert got.loc[term, "p"] == pytest.approx(2 * sps.t.sf(abs(beta[i] / se), n - p), rel=1e-5, abs=1e-12)
    # the joint test of stage: the Wald F of its two coefficients with the HC3 covariance
    b, v = beta[1:3], cov[1:3, 1:3]
    fstat = b @ np.linalg.solve(v, b) / 2
    assert got.loc["stage (all)", "p"] == pytest.approx(sps.f.sf(fstat, 2, n - p), rel=1e-5, abs=1e-12)
    assert got.loc["arm[b]", "reference"] == "a" and got.loc["stage[3]", "reference"] == "1"


def test_exposure_model_covers_a_known_effect_and_keeps_its_level_in_a_small_simulation():
    """Reduced-size run of benchmarks/bench_exposure_model.py: 40 cohorts of 150 patients, 40
    models (the benchmark: 300 cohorts of 250 patients, 100 models). The arm effect (0.25 on the
    probit scale) is covered; stage, whose patients have 10.0 to 5.1 records but no effect,
    is rejected near the nominal rate once records per patient are adjusted for."""
    bench = load_benchmark("bench_exposure_model")
    df = bench.run(sets=40, n_patients=150, n_models=40, effect=0.25, boot=40, seed=2)
    assert df["arm_covers"].mean() >= 0.85
    assert abs(df["arm_estimate"].mean() - 0.25) < 0.06
    assert df["stage_joint_rejects"].mean() <= 0.15  # 40 sets: 0.05 + 3 SE
    assert df["unadjusted_stage_joint_rejects"].mean() >= df["stage_joint_rejects"].mean()


def test_exposure_model_refuses_missing_columns_and_too_few_patients():
    f = _frame(np.random.default_rng(1), n=6)
    out = exposure.fit_exposure_model(f, ["arm", "stage"])
    assert "no fit" in out["note"].iloc[0]
    with pytest.raises(Exception, match="n_records"):
        exposure.patient_frame(
            pd.DataFrame({"patient_id": ["p"], "arm": ["a"]}),
            pd.DataFrame({"patient_id": ["p"], "auc": [0.7]}),
            ["arm"],
        )
