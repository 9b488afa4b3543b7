"""End to end: a DP comparison added to a finished run, as the dp_pbc preset adds one to the
default run. The first run's experiment stays byte-identical; the DP experiment (patient level,
canaries, a clip-norm sweep) gets its bounds, flags, utility row and empirical lower bounds."""

import copy
import hashlib
import json

import numpy as np
import pandas as pd
import pytest
import yaml
from readme_columns import check_tables
from safetensors import safe_open
from workflow_config import REPO, small_config
from workflow_runs import run_snakemake

from mia_audit.dp import audit, bounds, empirical


def digests(root, *folders):
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for folder in folders
        for p in sorted((root / folder).rglob("*"))
        if p.is_file()
    }


@pytest.mark.slow
def test_a_dp_comparison_added_to_a_run_leaves_it_unchanged_and_audits_dp_from_both_sides(tmp_path):
    out = tmp_path / "results"
    base = small_config(out, n_models=8, per_job=4, epochs=2, selection=True)
    run_snakemake(tmp_path, base)
    before = digests(out, "pbc/mlp", "figures/pbc/mlp", "meta")

    # the preset's patient-level ε = 1 experiment, shrunk like the base run
    preset = yaml.safe_load((REPO / "config/presets/dp_pbc.yaml").read_text())
    exp = copy.deepcopy(preset["experiments"]["dp_pat_eps1"])
    exp["train"]["epochs"] = 2
    exp["models_per_job"] = 4
    exp["selection"].update({"splits": 1, "models": 2})
    exp["selection"]["candidates"] = {k: exp["selection"]["candidates"][k] for k in ("lr2e-3-C1", "lr2e-3-C0.1")}
    cfg = copy.deepcopy(base)
    cfg["experiments"]["dp_pat_eps1"] = exp
    run_snakemake(tmp_path, cfg)
    assert digests(out, "pbc/mlp", "figures/pbc/mlp", "meta") == before  # nothing of the first run rewritten
    # left out of the subgroup tests: only its own exposure model, no tail table
    assert sorted(p.name for p in (out / "pbc/dp_pat_eps1/subgroups").iterdir()) == ["exposure_model.tsv"]

    res = out / "pbc"
    metrics = pd.read_csv(res / "dp_pat_eps1" / "models" / "metrics.tsv", sep="\t")
    assert (metrics["dp_level"] == "patient").all() and (metrics["dp_epsilon"] <= 1).all()
    assert (metrics["dp_accountant"] == "pld").all() and (metrics["dp_delta"] == 1e-5).all()
    with safe_open(str(res / "dp_pat_eps1" / "models" / "shard_0.safetensors"), framework="pt") as f:
        meta = json.loads(f.metadata()["meta"])
    assert meta["dp"]["level"] == "patient" and len(meta["dp"]["dp_epsilon"]) == 4
    assert np.asarray(meta["dp"]["canaries"]["logits"]).shape == (4, 16 + 4 * 5, 2)
    chosen = json.loads((res / "dp_pat_eps1" / "selection" / "chosen.json").read_text())
    assert meta["dp"]["max_grad_norm"] == {"lr2e-3-C1": 1.0, "lr2e-3-C0.1": 0.1}[chosen["candidate"]]

    rec = pd.read_parquet(res / "dp_pat_eps1" / "audit" / "record_risk.parquet")
    pat = pd.read_parquet(res / "dp_pat_eps1" / "audit" / "patient_risk.parquet")
    for df in (rec, pat):
        assert set(audit.DP_AUDIT_COLUMNS) <= set(df) and df["dp_violation"].dtype == bool
        assert (df["dp_group_size"] == 1).all()  # patient level: one unit per patient
        assert not df["dp_violation"].any(), df[df["dp_violation"]]
    single = bounds.max_auc_bound(metrics["dp_epsilon"].max(), metrics["dp_delta"].max())
    assert pat["dp_bound_single_point"].to_numpy() == pytest.approx(np.full(len(pat), single))
    assert pat["dp_bound"].nunique() == 1 and 0.5 < pat["dp_bound"].iloc[0] < single - 0.05

    util = pd.read_csv(res / "dp_utility.tsv", sep="\t")
    assert util["experiment"].tolist() == ["mlp", "dp_pat_eps1"]  # the baseline (same model block), then DP
    row = util.set_index("experiment").loc["dp_pat_eps1"]
    assert row["patient_violations"] == 0 and row["dp_bound"] == pytest.approx(pat["dp_bound"].iloc[0])
    # δ is 1e-5 already: the same ε up to the PLD grid (its step is set by the target ε in training,
    # by the achieved ε in the audit; both are upper bounds)
    assert row["epsilon_ref_delta"] == pytest.approx(row["epsilon_achieved_max"], rel=1e-3)
    assert row["selected_candidate"] == chosen["candidate"]

    emp = pd.read_csv(res / "dp_empirical.tsv", sep="\t")
    assert list(emp.columns) == list(empirical.COLUMNS) and emp["canary"].tolist() == ["record", "patient"]
    assert (emp["epsilon_lower"] <= emp["epsilon_upper"]).all() and (emp["auc_lower"] <= emp["auc_upper"]).all()
    for name in ("dp_esf_patient", "dp_bounds"):
        for ext in ("png", "pdf"):
            assert (out / "figures" / "pbc" / f"{name}.{ext}").stat().st_size > 5_000
    # README.md lists the columns a DP experiment adds, and those of dp_utility.tsv and dp_empirical.tsv
    tables = {"audit/record_risk.parquet", "audit/patient_risk.parquet", "models/metrics.tsv"}
    wanted = {None: tables | {"dp_utility.tsv", "dp_empirical.tsv"}, "dp": tables}
    assert not check_tables(out, {"dataset": "pbc", "experiment": "dp_pat_eps1"}, wanted)
