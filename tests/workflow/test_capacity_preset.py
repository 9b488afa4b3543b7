"""The capacity-sweep preset validates and dry-runs against the CheXpert fixture layout."""

import re
import subprocess
import sys
from pathlib import Path

import yaml
from fixtures_datasets import write_chexpert

REPO = Path(__file__).resolve().parents[2]
PRESET = REPO / "config/presets/capacity.yaml"
EXPERIMENTS = {f"{a}_{s}" for a in ("wrn28_2", "wrn40_4", "vitb16", "vitl16") for s in (64, 128)}


def test_capacity_preset_covers_four_architectures_at_two_sizes():
    cfg = yaml.safe_load(PRESET.read_text())
    exps = cfg["experiments"]
    assert set(exps) == EXPERIMENTS
    archs = {e["model"]["arch"] for e in exps.values()}
    assert archs == {"wrn-28-2", "wrn-40-4", "vit-b-16", "vit-l-16"}
    for name, e in exps.items():
        ds = cfg["datasets"][e["dataset"]]
        assert ds["image_size"] == int(name.rsplit("_", 1)[1]) and ds["n_models"] == 200
        assert 200 % e["models_per_job"] == 0


def test_capacity_preset_dry_run(tmp_path):
    root = tmp_path / "chexpert"
    root.mkdir()
    write_chexpert(root)
    res = tmp_path / "results"
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "-n",
        "--configfile",
        str(PRESET),
        "--config",
        f"datasets={{chexpert_64: {{root: {root}}}, chexpert_128: {{root: {root}}}}}",
        f"results={res}",
    ]
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    for size in (64, 128):
        assert f"{res}/chexpert_{size}/records.parquet" in r.stdout
    for exp in EXPERIMENTS:
        assert f"{res}/chexpert_{exp.rsplit('_', 1)[1]}/{exp}/audit/record_risk.parquet" in r.stdout
    # one training job per shard: 200 / models_per_job per experiment
    expected = 2 * (200 // 50 + 200 // 25 + 200 // 10 + 200 // 4)
    m = re.search(r"^train_models\s+(\d+)", r.stdout, re.M)
    assert m and int(m.group(1)) == expected, r.stdout[-2000:]


def test_synthetic_images_preset_dry_runs_without_any_data_file(tmp_path):
    res = tmp_path / "results"
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "-n",
        "--configfile",
        str(REPO / "config/presets/synthetic_images.yaml"),
        "--config",
        f"results={res}",
    ]
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert f"{res}/synthetic_images/synthetic_wrn/audit/record_risk.parquet" in r.stdout
