"""End to end: a patient-level DP experiment on the bundled cohort, with bounds in the audit."""

import copy
import json

import numpy as np
import pandas as pd
import pytest
from readme_columns import check_tables
from safetensors import safe_open
from workflow_config import small_config
from workflow_runs import run_snakemake

from mia_audit.dp import audit, bounds


@pytest.mark.slow
def test_patient_level_dp_run_has_bounds_and_no_patient_above_them(tmp_path):
    # 8 models (4 IN / 4 OUT per patient): the violation test keeps its error rate even so
    cfg = small_config(tmp_path / "results", n_models=8, per_job=4, epochs=2)
    exp = copy.deepcopy(cfg["experiments"].pop("mlp"))
    exp["dp"] = {"epsilon": 1, "level": "patient"}
    exp["train"]["batch_size"] = 16
    cfg["experiments"]["dp_pat_eps1"] = exp
    # only what this test reads (the rest of the run's figures and tables are tested elsewhere)
    out = tmp_path / "results"
    targets = [
        out / "pbc" / "dp_pat_eps1" / "audit" / "record_risk.parquet",
        out / "pbc" / "dp_pat_eps1" / "audit" / "patient_risk.parquet",
        out / "pbc" / "dp_utility.tsv",
        out / "figures" / "pbc" / "dp_esf_patient.png",
        out / "figures" / "pbc" / "dp_esf_patient.pdf",
    ]
    run_snakemake(tmp_path, cfg, *map(str, targets))
    res = tmp_path / "results" / "pbc"
    metrics = pd.read_csv(res / "dp_pat_eps1" / "models" / "metrics.tsv", sep="\t")
    assert {"dp_epsilon", "dp_delta", "dp_noise_multiplier", "dp_sample_rate", "dp_steps", "dp_level"} <= set(metrics)
    assert (metrics["dp_level"] == "patient").all() and (metrics["dp_epsilon"] <= 1).all()
    with safe_open(str(res / "dp_pat_eps1" / "models" / "shard_0.safetensors"), framework="pt") as f:
        meta = json.loads(f.metadata()["meta"])
    assert meta["dp"]["level"] == "patient" and len(meta["dp"]["dp_epsilon"]) == 4

    rec = pd.read_parquet(res / "dp_pat_eps1" / "audit" / "record_risk.parquet")
    pat = pd.read_parquet(res / "dp_pat_eps1" / "audit" / "patient_risk.parquet")
    for df in (rec, pat):
        assert set(audit.DP_AUDIT_COLUMNS) <= set(df) and df["dp_violation"].dtype == bool
        assert (df["dp_group_size"] == 1).all()  # patient level: one unit per patient
        assert not df["dp_violation"].any(), df[df["dp_violation"]]
    # the single point (ε ≤ 1 at the largest δ of any model) and the run's privacy profile, tighter
    single = bounds.max_auc_bound(metrics["dp_epsilon"].max(), metrics["dp_delta"].max())
    assert pat["dp_bound_single_point"].to_numpy() == pytest.approx(np.full(len(pat), single))
    assert pat["dp_bound"].nunique() == 1 and 0.5 < pat["dp_bound"].iloc[0] < single - 0.05
    assert (rec["dp_bound"] == pat["dp_bound"].iloc[0]).all()

    util = pd.read_csv(res / "dp_utility.tsv", sep="\t")
    assert util["experiment"].tolist() == ["dp_pat_eps1"] and util["patient_violations"].iloc[0] == 0
    assert util["dp_bound"].iloc[0] == pytest.approx(pat["dp_bound"].iloc[0])
    for ext in ("png", "pdf"):
        assert (tmp_path / "results" / "figures" / "pbc" / f"dp_esf_patient.{ext}").stat().st_size > 5_000
    # README.md lists the columns a DP experiment adds, and those of dp_utility.tsv
    tables = {"audit/record_risk.parquet", "audit/patient_risk.parquet", "models/metrics.tsv"}
    wanted = {None: tables | {"dp_utility.tsv"}, "dp": tables}
    assert not check_tables(tmp_path / "results", {"dataset": "pbc", "experiment": "dp_pat_eps1"}, wanted)
