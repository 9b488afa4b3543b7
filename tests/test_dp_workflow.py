"""End to end: a patient-level DP experiment on the bundled cohort, with bounds in the audit."""

import copy
import json

import pandas as pd
import pytest
from safetensors import safe_open
from workflow_config import small_config
from workflow_runs import run_snakemake


@pytest.mark.slow
def test_patient_level_dp_run_has_bounds_and_no_patient_above_them(tmp_path):
    # 40 models (20 IN / 20 OUT per patient): with 4 + 4 the bi-normal SE is too unreliable
    # for a violation test (≈ 2.5 % of records were flagged at a true AUC ≈ 0.5).
    cfg = small_config(tmp_path / "results", n_models=40, per_job=20, epochs=2)
    exp = copy.deepcopy(cfg["experiments"].pop("mlp"))
    exp["dp"] = {"epsilon": 1, "level": "patient"}
    exp["train"]["batch_size"] = 16
    cfg["experiments"]["dp_pat_eps1"] = exp
    run_snakemake(tmp_path, cfg)
    res = tmp_path / "results" / "pbc"
    metrics = pd.read_csv(res / "dp_pat_eps1" / "models" / "metrics.tsv", sep="\t")
    assert {"dp_epsilon", "dp_delta", "dp_noise_multiplier", "dp_sample_rate", "dp_steps", "dp_level"} <= set(metrics)
    assert (metrics["dp_level"] == "patient").all() and (metrics["dp_epsilon"] <= 1).all()
    with safe_open(str(res / "dp_pat_eps1" / "models" / "shard_0.safetensors"), framework="pt") as f:
        meta = json.loads(f.metadata()["meta"])
    assert meta["dp"]["level"] == "patient" and len(meta["dp"]["dp_epsilon"]) == 20

    rec = pd.read_parquet(res / "dp_pat_eps1" / "audit" / "record_risk.parquet")
    pat = pd.read_parquet(res / "dp_pat_eps1" / "audit" / "patient_risk.parquet")
    for df in (rec, pat):
        assert {"dp_bound", "dp_violation"} <= set(df) and df["dp_violation"].dtype == bool
    assert pat["dp_bound"].nunique() == 1 and 0.5 < pat["dp_bound"].iloc[0] < 0.75  # ε ≤ 1 → AUC ≤ 0.731
    assert not pat["dp_violation"].any(), pat[pat["dp_violation"]]

    util = pd.read_csv(res / "dp_utility.tsv", sep="\t")
    assert util["experiment"].tolist() == ["dp_pat_eps1"] and util["patient_violations"].iloc[0] == 0
    for ext in ("png", "pdf"):
        assert (tmp_path / "results" / "figures" / "pbc" / f"dp_esf_patient.{ext}").stat().st_size > 5_000
