"""Meta-analysis: correlation CIs against hand arithmetic and simulation; the planning of one figure."""

import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from mia_audit.analysis import meta_analysis

ROOT = Path(__file__).resolve().parents[2]


def test_pearson_ci_is_fisher_z():
    rng = np.random.default_rng(3)
    x = rng.normal(size=30)
    y = 0.6 * x + rng.normal(size=30)
    c = meta_analysis.correlations(x, y)
    r = np.corrcoef(x, y)[0, 1]
    half = 1.959963984540054 / math.sqrt(27)
    assert c["pearson_r"] == pytest.approx(r)
    assert c["pearson_ci_low"] == pytest.approx(math.tanh(math.atanh(r) - half))
    assert c["pearson_ci_high"] == pytest.approx(math.tanh(math.atanh(r) + half))


def test_spearman_ci_covers_by_simulation():
    # Bivariate normal with ρ = 0.5: population Spearman ρ_s = (6/π) asin(ρ/2).
    rng = np.random.default_rng(7)
    reps, n, rho = 2000, 40, 0.5
    truth = 6 / math.pi * math.asin(rho / 2)
    z = rng.normal(size=(reps, n, 2))
    x = z[..., 0]
    y = rho * x + math.sqrt(1 - rho**2) * z[..., 1]
    rx, ry = sps.rankdata(x, axis=1), sps.rankdata(y, axis=1)
    rs = np.array([np.corrcoef(a, b)[0, 1] for a, b in zip(rx, ry, strict=True)])
    cover = np.mean([lo <= truth <= hi for lo, hi in (meta_analysis.spearman_ci(r, n) for r in rs)])
    assert 0.93 <= cover <= 0.97, cover
    # and the interval matches spearmanr's estimate through correlations()
    c = meta_analysis.correlations(x[0], y[0])
    assert c["spearman_rho"] == pytest.approx(rs[0])
    assert (c["spearman_ci_low"], c["spearman_ci_high"]) == pytest.approx(meta_analysis.spearman_ci(rs[0], n))


def test_too_few_points_and_constant():
    c = meta_analysis.correlations([0.1, 0.2, 0.3], [1, 2, 3])
    assert np.isnan(c["pearson_r"]) and "at least 4" in c["note"]
    c = meta_analysis.correlations([0.1] * 5, [1, 2, 3, 4, 5])
    assert np.isnan(c["spearman_rho"]) and "constant" in c["note"]


def test_summary_share_of_large_residuals_from_small_groups():
    t = pd.DataFrame(
        {
            "dataset": "d",
            "experiment": "e",
            "level": "record",
            "attribute": ["a", "a", "b", "b", "b", "c"],
            "group": ["x", "y", "u", "v", "w", "only"],
            "share_overall": [0.9, 0.1, 0.5, 0.35, 0.15, 1.0],
            "n_overall": [90, 10, 50, 35, 15, 100],
            "n_tail": [5, 5, 2, 2, 6, 10],
            "expected": [9, 1, 5, 3.5, 1.5, 10],
            "residual": [-1.33, 4.0, -1.34, -0.8, 3.67, 0.0],
            "rel_change": 0.0,
            "p_adj": 0.01,
        }
    )
    pts = meta_analysis.points(t, large_residual=2.0, small_group_share=0.2)
    assert len(pts) == 5  # the one-group attribute "c" is left out
    s = meta_analysis.summary(pts).set_index("level")
    assert s.loc["record", "n_large_positive"] == 2
    assert s.loc["record", "share_large_positive_small"] == 1.0
    assert s.loc["record", "share_small_groups_all"] == pytest.approx(2 / 5)
    assert s.loc["record", "pearson_r"] == pytest.approx(np.corrcoef(pts["share_overall"], pts["residual"])[0, 1])
    assert s.loc["patient", "n_points"] == 0


# the audit reads models/metrics.tsv (a DP experiment's achieved ε sets its bound) and
# models/utility.tsv (beside the baselines); the default's models are chosen by select_model
UPSTREAM = {
    "validate_dataset",
    "record_experiment_settings",
    "prepare_dataset",
    "sample_membership",
    "select_model",
    "fit_baselines",
    "train_models",
    "collect_model_metrics",
    "create_cube",
    "query_models",
    "assemble_cube",
    "audit_records",
}


def _snakemake():
    exe = Path(sys.executable).parent / "snakemake"
    return str(exe) if exe.exists() else shutil.which("snakemake")


# one job draws every figure of an experiment, from all its tables (the subgroup tables are
# adjusted over every experiment's tests; the risk contrast shows the tied candidates' range
# from headline.tsv, the exposure model has its forest plot)
EXPERIMENT_FIGURES = {
    "attack_aggregate",
    "analyse_convergence",
    "compare_subgroup_tails",
    "adjust_subgroups",
    "fit_exposure_model",
    "tabulate_headline",
    "plot_experiment",
}


@pytest.mark.skipif(_snakemake() is None, reason="snakemake not installed")
@pytest.mark.parametrize(
    "figure,own",
    [("figures/pbc/mlp/se.png", EXPERIMENT_FIGURES), ("figures/pbc/mlp/subgroups_sex.png", EXPERIMENT_FIGURES)],
)
def test_dry_run_of_one_figure_plans_only_its_jobs(tmp_path, figure, own):
    cmd = [
        _snakemake(),
        f"{tmp_path}/{figure}",
        "-n",
        "--quiet",
        "rules",
        "--cores",
        "1",
        "--directory",
        str(ROOT),
        "--snakefile",
        str(ROOT / "Snakefile"),
        "--config",
        f"results={tmp_path}",
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT)
    text = out.stdout + out.stderr
    assert out.returncode == 0, text
    lines = text.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("-----")) + 1
    planned = set()
    for line in lines[first:]:
        name, count = line.split()
        if name == "total":
            break
        planned.add(name)
    assert planned == UPSTREAM | own, text
