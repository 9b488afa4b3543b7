"""End to end: the workflow on the bundled cohort with a small configuration."""

import json

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from readme_columns import check_tables, readme_columns, undocumented_tables
from workflow_config import small_config
from workflow_runs import ROOT, run_snakemake


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    wd = tmp_path_factory.mktemp("wf")
    cfg = small_config(wd / "results", epochs=20, selection=True)
    proc = run_snakemake(wd, cfg)
    return wd, cfg, proc


@pytest.mark.slow
def test_every_output_exists_with_its_shape_and_invariants(run):
    wd, cfg, _ = run
    res = wd / "results" / "pbc"
    records = pd.read_parquet(res / "records.parquet")
    assert len(records) == 1945
    assert list(records.columns[:4]) == ["record_id", "patient_id", "label", "split"]
    assert {"sex", "stage", "trt", "age"} <= set(records.columns)
    pool = (records["split"] == "pool").to_numpy()

    inputs = xr.open_zarr(res / "inputs.zarr")
    assert inputs["features"].shape[0] == 1945
    assert (inputs["record_id"].values == records["record_id"].values).all()

    mem = xr.open_zarr(res / "membership.zarr")["member"]
    assert mem.shape == (8, records.loc[pool, "patient_id"].nunique())
    assert (mem.values.sum(axis=0) == 4).all()

    cube = xr.open_zarr(res / "mlp" / "cube.zarr")
    conf, member = cube["confidence"].values, cube["member"].values
    assert conf.shape == member.shape == (8, 1945) and conf.dtype == np.float32
    assert np.isfinite(conf).all()
    assert not member[:, ~pool].any()  # test records are never trained on
    assert (member[:, pool].sum(axis=0) == 4).all()
    assert (cube["record_id"].values == records["record_id"].values).all()
    assert (cube["sex"].values == records["sex"].values).all()
    # self-describing: record_id is the index, provenance and label names are recorded
    first_id = str(records["record_id"].iloc[0])
    np.testing.assert_array_equal(cube.sel(record_id=first_id)["confidence"].values, conf[:, 0])
    assert json.loads(cube.attrs["seeds"]) == {"split_seed": 0, "membership_seed": 0, "experiment_seed": 0}
    assert cube.attrs["code_version"].startswith("mia-audit ") and cube.attrs["created"].endswith("Z")
    assert json.loads(cube.attrs["experiment_config"])["models_per_job"] == 4
    assert json.loads(cube["label"].attrs["label_names"]) == json.loads(cube.attrs["label_names"])
    assert all(cube[v].attrs.get("description") for v in cube.variables)
    # all records of a patient share membership
    first = records.groupby("patient_id").head(1).index
    by_patient = dict(zip(records.loc[first, "patient_id"], first, strict=True))
    rep = records["patient_id"].map(by_patient).to_numpy()
    assert (member == member[:, rep]).all()

    rr = pd.read_parquet(res / "mlp" / "audit" / "record_risk.parquet")
    assert len(rr) == pool.sum()
    assert set(rr["record_id"]) == set(records.loc[pool, "record_id"])
    assert ((rr["n_in"] == 4) & (rr["n_out"] == 4)).all()
    assert rr["auc"].between(0, 1).all() and (rr["status"] == "ok").all()
    assert (rr["se"] > 0).all()
    assert rr["auc_emp"].between(0, 1).all() and rr["binormal_flag"].dtype == bool
    assert rr["binormal_z"].notna().mean() > 0.9

    pr = pd.read_parquet(res / "mlp" / "audit" / "patient_risk.parquet")
    assert len(pr) == records.loc[pool, "patient_id"].nunique()
    worst = rr.groupby("patient_id")["auc"].max()
    np.testing.assert_allclose(pr.set_index("patient_id")["auc"].loc[worst.index], worst)
    assert pr["n_records"].sum() == len(rr)
    # the interval of the maximum contains it; the cross-fitted direct attack is undefined exactly
    # where no record has 3 reference models on each side in the other folds (with 8 models in 2
    # folds: every patient; its behaviour is checked by simulation in tests/audit/test_patients.py)
    ok = pr["max_ci_low"].notna()
    assert ok.mean() > 0.9 and (pr.loc[ok, "max_ci_low"] <= pr.loc[ok, "auc"] + 1e-12).all()
    assert (pr["max_ci_high"] >= pr["auc"]).all() and pr["attack_auc"].dropna().between(0, 1).all()
    assert (pr["attack_auc"].isna() == (pr["attack_n_records"] == 0)).all()
    thresholds = pd.read_csv(res / "mlp" / "audit" / "patient_thresholds.tsv", sep="\t")
    assert {"count", "count_bc", "count_attack"} <= set(thresholds.columns)
    sub = pd.read_csv(res / "mlp" / "subgroups" / "sex.tsv", sep="\t")
    rec = sub[sub["level"] == "record"].iloc[0]
    assert rec["cluster_test"] == "patient_permutation" and 0 < rec["p_cluster_adj"] <= 1
    assert rec["n_tail_patients"] <= rec["n_tail_total"]
    # the default tail rule: auto, each level its own tail, the reason in the table and the log
    assert (sub["tail_rule"] == "auto").all() and sub["tail_reason"].str.startswith("auto:").all()
    assert sub["quantile"].between(0.8, 0.99).all() and sub["n_tail_needed"].notna().all()
    sg_log = (wd / "results" / "logs" / "pbc" / "mlp" / "compare_subgroup_tails.log").read_text()
    assert "record tail (auto)" in sg_log and "patient tail (auto)" in sg_log

    att = pd.read_csv(res / "mlp" / "audit" / "aggregate_attacks.tsv", sep="\t")
    assert {"attack", "target", "auc", "tpr_at_fpr_0.001", "tpr_at_fpr_0.01", "tpr_at_fpr_0.1"} <= set(att.columns)
    assert att["target"].nunique() == 2 and att["auc"].between(0, 1).all()
    # ~800 non-members per target: FPR 0.1 % cannot be resolved, 1 % can
    assert (att["min_resolvable_fpr"] > 0.001).all() and att["tpr_at_fpr_0.001"].isna().all()
    assert (att["tpr_status"] == "fpr_below_min_resolvable").all() and att["tpr_at_fpr_0.01"].notna().all()
    log = (wd / "results" / "logs" / "pbc" / "mlp" / "audit_records.log").read_text()
    assert "bi-normal check:" in log and "direct attack" in log

    metrics = pd.read_csv(res / "mlp" / "models" / "metrics.tsv", sep="\t")
    assert list(metrics["model"]) == list(range(8))
    assert metrics["test_auc"].between(0.5, 1).all()  # a meaningful diagnostic model

    for shard in (0, 1):
        done = json.loads((res / "mlp" / "query" / f"shard_{shard}.json").read_text())
        assert done["models"] == [4 * shard, 4 * shard + 4] and done["nonfinite"] == 0

    # model selection: the chosen candidate's settings are what the target models trained with
    sel = pd.read_csv(res / "mlp" / "selection" / "selection.tsv", sep="\t")
    assert sorted(sel["candidate"]) == sorted(cfg["experiments"]["mlp"]["selection"]["candidates"])
    assert sel["chosen"].sum() == 1 and (sel["models"] == 2).all()
    assert sel.loc[sel["chosen"], "val_loss"].item() == sel["val_loss"].min()
    chosen = json.loads((res / "mlp" / "selection" / "chosen.json").read_text())
    assert chosen["candidate"] == sel.loc[sel["chosen"], "candidate"].item() and chosen["metric"] == "val_loss"
    from mia_audit.train import weights

    _, _, meta = weights.load_shard(res / "mlp" / "models" / "shard_0.safetensors")
    assert meta["selected_candidate"] == chosen["candidate"] and meta["model"] == chosen["model"]
    assert meta["train"]["epochs"] == chosen["train"]["epochs"] == 20
    described = json.loads(cube.attrs["experiment_config"])
    assert described["model"] == chosen["model"] and described["selected_candidate"] == chosen["candidate"]
    # the headline of every tied candidate (each audited with the full design) and its range
    head = pd.read_csv(res / "mlp" / "audit" / "headline.tsv", sep="\t")
    assert set(head["candidate"]) == set(chosen["tied"]) and chosen["candidate"] in chosen["tied"]
    assert head.groupby("threshold")["range_candidates"].first().eq(len(chosen["tied"])).all()
    for name in set(chosen["tied"]) - {chosen["candidate"]}:
        own = pd.read_csv(res / "mlp" / "candidates" / name / "patient_thresholds.tsv", sep="\t")
        assert head.loc[head["candidate"] == name, "count"].tolist() == own["count"].tolist()
    assert {"ci_low_boot", "ci_high_eb", "share_eb"} <= set(head.columns)
    exposure = pd.read_csv(res / "mlp" / "subgroups" / "exposure_model.tsv", sep="\t")
    assert {"sex (all)", "records per patient (all)"} <= set(exposure["term"])
    # baselines on the targets' own member sets, and utility beside risk
    base = pd.read_csv(res / "baselines.tsv", sep="\t", dtype={"member_set": str})
    assert len(base) == 2 * 3 and set(base["member_set"]) == {"0", "1", "pool"}
    assert base["test_auc"].between(0.6, 1).all()
    util = pd.read_csv(res / "mlp" / "models" / "utility.tsv", sep="\t")
    assert util["test_auc"].item() == pytest.approx(metrics["test_auc"].mean())
    assert util["test_auc_ci_low"].item() <= util["test_auc"].item() <= util["test_auc_ci_high"].item()
    assert util["auc_gap_ci_low"].item() <= util["auc_gap"].item() <= util["auc_gap_ci_high"].item()
    assert (
        util["best_baseline_auc"].item()
        == base[base["member_set"] != "pool"].groupby("baseline")["test_auc"].mean().max()
    )
    assert thresholds["models_test_auc"].eq(util["test_auc"].item()).all()
    assert "target models: mean test AUC" in log

    for ext in ("png", "pdf"):
        assert (wd / "results" / "figures" / "pbc" / "mlp" / f"risk_contrast.{ext}").stat().st_size > 10_000
    assert (wd / "results" / "logs" / "pbc" / "mlp" / "train_models_0.log").read_text().count("epoch") >= 1


@pytest.mark.slow
def test_the_readme_column_lists_are_the_columns_the_run_writes(run):
    """README.md lists every column of every table of the run, and no column the run lacks."""
    wd, _, _ = run
    results = wd / "results"
    plain = {path for setting, path in readme_columns() if setting is None} - {
        "audit/adaptive.tsv",
        "dp_utility.tsv",
        "dp_empirical.tsv",
    }  # the DP tables: test_dp_workflow.py
    assert not check_tables(results, {"dataset": "pbc", "experiment": "mlp"}, {None: plain})
    assert not undocumented_tables(results), "tables of the run without a README column list"


@pytest.mark.slow
def test_nothing_left_to_do_after_a_run(run):
    wd, cfg, _ = run
    proc = run_snakemake(wd, cfg, "-n")
    assert "Nothing to be done" in proc.stdout + proc.stderr


@pytest.mark.slow
def test_a_deleted_figure_is_redrawn_by_naming_it_and_no_table_is_recomputed(run):
    """One job draws every figure of an experiment; naming one figure file reruns that job
    alone, from the tables already there."""
    wd, cfg, _ = run
    results = wd / "results"
    tables = {
        p: p.stat().st_mtime_ns
        for p in results.rglob("*")
        if p.is_file() and p.relative_to(results).parts[0] not in ("figures", "logs", "run.lock")
    }
    figure = results / "figures" / "pbc" / "mlp" / "se.png"
    sibling = results / "figures" / "pbc" / "mlp" / "convergence.pdf"
    drawn_before = sibling.stat().st_mtime_ns
    figure.unlink()
    proc = run_snakemake(wd, cfg, str(figure))
    stats = (proc.stdout + proc.stderr).split("Job stats:")[1].split("total")[0]
    assert "plot_experiment" in stats and len(stats.strip().splitlines()) == 3, stats  # header, rule, one job
    assert figure.stat().st_size > 10_000 and sibling.stat().st_mtime_ns > drawn_before
    assert {p: p.stat().st_mtime_ns for p in tables} == tables


def test_a_bad_dataset_stops_before_training_with_one_message(tmp_path):
    cfg = small_config(tmp_path / "results")
    cfg["datasets"]["pbc"]["features"] = cfg["datasets"]["pbc"]["features"] + ["albumen"]
    proc = run_snakemake(tmp_path, cfg, check=False)
    assert proc.returncode != 0
    (log,) = (tmp_path / "results" / "logs" / "pbc").glob("validate_dataset_*.log")
    assert "['albumen']" in log.read_text() and "features" in log.read_text()
    assert not (tmp_path / "results" / "pbc" / "records.parquet").exists()  # stopped before prepare
    assert not (tmp_path / "results" / "pbc" / "mlp" / "models").exists()


def test_a_schema_violation_is_reported_before_any_job(tmp_path):
    cfg = small_config(tmp_path / "results")
    cfg["experiments"]["mlp"]["models_per_job"] = 3  # does not divide 8
    proc = run_snakemake(tmp_path, cfg, "-n", check=False)
    assert proc.returncode != 0
    assert "experiments.mlp.models_per_job = 3 must divide datasets.pbc.n_models = 8" in proc.stdout + proc.stderr


def test_default_config_dry_run_and_lint_are_clean(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    snakemake = str(Path(sys.executable).with_name("snakemake"))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    dry = subprocess.run(
        [snakemake, "-n", "--cores", "1", "--directory", str(ROOT), "--snakefile", str(ROOT / "Snakefile")],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=ROOT,
    )
    assert dry.returncode == 0, dry.stderr[-3000:]
    lint = subprocess.run(
        [snakemake, "--lint", "--snakefile", str(ROOT / "Snakefile")],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=ROOT,
    )
    out = lint.stdout + lint.stderr
    assert lint.returncode == 0 and "Lints for" not in out, out[-3000:]


@pytest.mark.slow
def test_offline_rmia_against_a_workflow_model_treated_as_external(run, tmp_path):
    """Model 0 of the run plays an external target; models 1 and 2 are the references."""
    from sklearn.metrics import roc_auc_score

    wd, cfg, _ = run
    cube = xr.open_zarr(wd / "results" / "pbc" / "mlp" / "cube.zarr")
    pool = cube["split"].values == "pool"
    conf, member = cube["confidence"].values[:, pool], cube["member"].values[:, pool]
    table = pd.DataFrame(
        {
            "record_id": cube["record_id"].values[pool],
            "patient_id": cube["patient_id"].values[pool],
            "member": member[0],
            "target": conf[0],
            "reference_1": conf[1],
            "reference_2": conf[2],
            "reference_1_member": member[1],
            "reference_2_member": member[2],
        }
    )
    table.to_parquet(tmp_path / "candidates.parquet")
    cfg = {
        **cfg,
        "external_attacks": {"m0": {"candidates": str(tmp_path / "candidates.parquet"), "population_size": 300}},
    }
    proc = run_snakemake(wd, cfg)
    assert "attack_external" in proc.stdout + proc.stderr
    assert "train_models" not in (proc.stdout + proc.stderr).split("Job stats")[-1]  # nothing else reruns
    out = wd / "results" / "external" / "m0"
    scores = pd.read_parquet(out / "scores.parquet")
    summary = pd.read_csv(out / "summary.tsv", sep="\t").set_index("attack")
    assert len(scores) == pool.sum() and scores["rmia_offline"].notna().mean() > 0.5
    ok = scores["rmia_offline"].notna()
    assert summary.loc["rmia_offline", "auc"] == pytest.approx(
        roc_auc_score(scores.loc[ok, "member"], scores.loc[ok, "rmia_offline"])
    )
    # the models memorise their members: the attack beats chance on the external target
    assert summary.loc["rmia_offline", "auc"] > 0.55
    assert summary.loc["loss_threshold", "auc"] > 0.55
    patients = pd.read_parquet(out / "patient_scores.parquet")
    assert len(patients) == table["patient_id"].nunique()


@pytest.mark.slow
def test_html_report_holds_every_figure_and_the_config(run):
    """The report a reader opens: every figure, every table (patient thresholds, aggregate
    attacks, model metrics, subgroup tests), the configuration and the software versions,
    each with its caption."""
    import base64
    import html as html_lib
    import re

    wd, cfg, _ = run
    report = wd / "report.html"
    run_snakemake(wd, cfg, "--report", str(report))
    html = report.read_text(errors="replace")
    assert report.stat().st_size > 100_000
    for name in (
        "risk_contrast.png",
        "attack_roc.png",
        "record_auc.png",
        "se.png",
        "subgroups_sex.png",
        "binormal_check.png",
        "patient_intervals.png",
        "patient_thresholds.tsv",
    ):
        assert name in html, name
    # the tables a reader needs, the run's configuration and software, by file and by caption
    sections = {
        "patient_thresholds.tsv": "How many patients are highly exposed",
        "aggregate_attacks.tsv": "The aggregate attacks of the standard protocol",
        "metrics.tsv": "Utility of every target model",
        "subgroup_tests.tsv": "Every tail-composition test of the run",
        "sex.tsv": "Tail-composition table of one subgroup attribute",
        "composition.tsv": "Supplementary table: composition of the tail",
        "meta_summary.tsv": "Meta-analysis summary per level",
        "config.yaml": "The configuration this run used",
        "software.tsv": "Software that made these results",
    }
    text = html_lib.unescape(html)
    for name, caption in sections.items():
        assert name in html, f"{name} is not in the report"
        assert caption in text, f"caption of {name} is not in the report"
    # captions match their figures: the risk-contrast caption describes the mean ROC it shows
    assert "mean true-positive rate over the" in text and "one curve per target model" not in text
    # the embedded configuration is this run's (validated: defaults filled in) and the
    # software table names the workflow's version
    run_dir = wd / "results" / "run"
    assert "n_models: 8" in (run_dir / "config.yaml").read_text()
    assert "retry_growth" in (run_dir / "config.yaml").read_text()  # a default the schema filled in
    software = pd.read_csv(run_dir / "software.tsv", sep="\t").set_index("software")
    here, train = software["version (analysis jobs)"], software["train jobs"]
    assert here["mia-audit"] and here["torch"] != "not installed" and "python" in software.index
    assert here["dp-accounting"] != "not installed" and train["torch"] == here["torch"]  # one environment here
    assert train["GPU"] == "none" and {"torch CUDA build", "NVIDIA driver", "host"} <= set(software.index)
    encoded = {m for m in re.findall(r"data:[^,\"']*?;base64,([A-Za-z0-9+/=]{40,})", html)}
    decoded = "\n".join(base64.b64decode(e).decode("utf-8", "replace") for e in encoded)
    assert "threshold\tcount\tn\tshare" in decoded, "the patient-threshold table's content is not embedded"


@pytest.mark.slow
def test_convergence_of_the_run_ends_at_the_audit(run):
    wd, _, _ = run
    audit_dir = wd / "results" / "pbc" / "mlp" / "audit"
    table = pd.read_csv(audit_dir / "convergence.tsv", sep="\t", dtype={"key": str})
    thresholds = pd.read_csv(audit_dir / "patient_thresholds.tsv", sep="\t")
    shares = table[(table["quantity"] == "share_at_or_above") & (table["estimator"] == "binormal")]
    assert (shares["n_models"] == 8).all()
    np.testing.assert_allclose(shares["estimate"], thresholds["share"])
    assert table["within_final"].all() and shares["mc_sd"].notna().all()
    summary = pd.read_csv(audit_dir / "convergence_summary.tsv", sep="\t")
    assert (summary["models_needed"] == 8).all()
    assert (wd / "results" / "figures" / "pbc" / "mlp" / "convergence.png").stat().st_size > 10_000


@pytest.mark.slow
def test_adaptive_audit_trains_waves_until_a_checkpoint_stops_it(tmp_path):
    """Waves of 4 models, cap 12: the first wave is below min_models, the second meets a loose
    target, so the third wave is never trained and the audit uses 8 models."""
    from workflow_config import deep_update

    cfg = deep_update(
        small_config(tmp_path / "results", n_models=12, per_job=4),
        {
            "datasets": {"pbc": {"adaptive": {"wave_models": 4, "min_models": 8, "half_width": 1.0, "splits": 4}}},
            "audit": {"moderated_variance": True},  # the waves then assess the moderated share
        },
    )
    exp = tmp_path / "results" / "pbc" / "mlp"
    targets = [str(exp / "audit" / "adaptive.tsv"), str(exp / "audit" / "record_risk.parquet")]
    run_snakemake(tmp_path, cfg, *targets)
    waves = pd.read_csv(exp / "audit" / "adaptive.tsv", sep="\t")
    assert waves["decision"].tolist() == ["continue", "precision"]
    assert (waves["estimator"] == "moderated").all()
    assert (waves["models_trained"] == 8).all() and (waves["models_saved"] == 4).all()
    assert (exp / "models" / "shard_1.safetensors").exists()
    assert not (exp / "models" / "shard_2.safetensors").exists()  # the third wave was not needed
    records = pd.read_parquet(exp / "audit" / "record_risk.parquet")
    assert (records["n_in"] == 4).all() and (records["n_out"] == 4).all()
    assert records["auc_mod"].between(0, 1).all() and (records["df_in_mod"] > 3).all()  # moderated columns
    assert (records["ci_low_mod"] <= records["auc_mod"]).all() and (records["auc_mod"] <= records["ci_high_mod"]).all()
    thresholds = pd.read_csv(exp / "audit" / "patient_thresholds.tsv", sep="\t")
    assert {"share", "share_mod", "ci_low_mod", "ci_high_mod"} <= set(thresholds.columns)
    assert "auc_mod" in pd.read_parquet(exp / "audit" / "patient_risk.parquet").columns
    audit = {"audit/record_risk.parquet", "audit/patient_risk.parquet", "audit/patient_thresholds.tsv"}
    moderated = {None: audit | {"audit/adaptive.tsv"}, "audit.moderated_variance: true": audit}
    assert not check_tables(tmp_path / "results", {"dataset": "pbc", "experiment": "mlp"}, moderated)  # README lists
    membership = xr.open_zarr(tmp_path / "results" / "pbc" / "membership.zarr")["member"].values
    assert membership.shape[0] == 12 and (membership[4:8].sum(axis=0) == 2).all()  # balanced waves
    again = run_snakemake(tmp_path, cfg, "-n", *targets)
    assert "Nothing to be done" in again.stdout + again.stderr


@pytest.mark.slow
def test_a_damaged_cube_stops_the_audit_and_the_named_command_rebuilds_it(run):
    """Deleting one chunk of the cube (last: it damages the run's cube until rebuilt)."""
    from mia_audit.integrity import CubeCheck

    wd, cfg, _ = run
    exp = wd / "results" / "pbc" / "mlp"
    original = xr.open_zarr(exp / "cube.zarr")["confidence"].values
    (exp / "cube.zarr" / "confidence" / "c" / "1" / "0").unlink()  # models 4–7, every record
    proc = run_snakemake(wd, cfg, "--force", str(exp / "audit" / "record_risk.parquet"), check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "Traceback" not in out
    line = next(x for x in out.splitlines() if "IntegrityError" in x)
    assert "the confidences of models 4–7 (shard 1), records 0–1944, differ from what was written" in line
    command = line.split("rebuild it with: ", 1)[1].split(" (add your usual", 1)[0]
    assert command == f"snakemake --force {exp / 'cube.zarr'}"  # re-assembled from the shards' own outputs
    run_snakemake(wd, cfg, *command.split()[1:])  # the command the message names
    np.testing.assert_array_equal(xr.open_zarr(exp / "cube.zarr")["confidence"].values, original)
    CubeCheck(exp / "cube.zarr", sorted((exp / "query").glob("shard_*.json"))).verify()
