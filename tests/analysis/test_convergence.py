"""The convergence analysis (workflow/mia_audit/analysis/convergence.py) on simulated cubes.

Every expectation is computed another way: the all-model headlines from the audit's own
functions on the whole cube, the Monte-Carlo SD from independent replicate cubes.
"""

import numpy as np
import pandas as pd
import pytest
from simulated_cubes import simulate, simulated_cube

from mia_audit.analysis import adaptive, convergence
from mia_audit.audit import cube_audit, stats
from mia_audit.sampling.membership import balanced_membership, wave_membership


@pytest.fixture(scope="module")
def analysed(tmp_path_factory):
    path = tmp_path_factory.mktemp("conv") / "cube.zarr"
    pm = balanced_membership(48, 80, seed=0)
    auc = np.random.default_rng(1).uniform(0.5, 0.99, 80)
    records = simulated_cube(path, pm, auc, records_per_patient=2, seed=2, model_effect=0.3)
    table, summary = convergence.analyse(
        path,
        records,
        sizes=[8, 16],
        splits=4,
        subgroup_settings={"attributes": ["grp"], "quantile": 0.9, "draws": 1000},
        n_targets=2,
        population=None,
        attack_names=("lira_online", "loss_threshold"),
    )
    return path, records, table, summary


def test_sizes_balance_and_the_all_model_rows_are_the_audit(analysed):
    path, records, table, summary = analysed
    assert sorted(table["n_models"].unique()) == [8, 16, 48]
    cube = convergence.PoolCube.open(path)
    per_k = convergence.subset_record_risk(cube, {16: convergence.subsets.nested_subsets(cube.patient_member, 16)})
    assert (per_k[16]["n_in"] == 8).all() and (per_k[16]["n_out"] == 8).all()
    # all models: the shares are those of the audit's record and patient risk
    rr = cube_audit.record_risk_from_cube(path)
    shares = stats.exposure_table(stats.patient_risk(rr)["auc"])
    got = table[(table["n_models"] == 48) & (table["estimator"] == "binormal")]
    got = got[got["quantity"] == "share_at_or_above"].set_index("key")["estimate"]
    np.testing.assert_allclose(got.loc[["0.8", "0.9", "0.95", "0.99"]].to_numpy(), shares["share"].to_numpy())
    # ... and the attacks those of the audit's aggregate attacks
    att, _ = cube_audit.aggregate_attacks_from_cube(path, n_targets=2, population=None, names=["lira_online"])
    row = table[(table["quantity"] == "attack_auc") & (table["key"] == "lira_online") & (table["n_models"] == 48)]
    assert row["estimate"].iloc[0] == pytest.approx(att["auc"].mean())
    assert row["estimator"].iloc[0] == "any"
    # every quantity has a summary row, and all-model rows are within their own interval
    assert table.loc[table["n_models"] == 48, "within_final"].all()
    assert {"share_at_or_above", "survival", "residual", "test", "attack_auc"} <= set(summary["quantity"])
    assert summary["models_needed"].between(8, 48).all()


def test_models_needed_is_the_size_from_which_on_every_row_is_within():
    rows = []
    for k, est in zip([16, 32, 64, 128, 200], [0.50, 0.33, 0.40, 0.31, 0.316], strict=True):
        rows.append({"estimator": "binormal", "quantity": "share_at_or_above", "key": "0.9", "n_models": k})
        rows[-1].update(estimate=est, ci_low=est - 0.06, ci_high=est + 0.06)
    for k, p in zip([16, 32, 64, 128, 200], [0.2, 0.01, 0.02, 0.2, 0.03], strict=True):
        rows.append({"estimator": "binormal", "quantity": "test", "key": "record/sex", "n_models": k, "estimate": p})
    table = convergence.within_final(pd.DataFrame(rows))
    share = table[table["quantity"] == "share_at_or_above"]
    assert share["within_final"].tolist() == [False, True, False, True, True]
    assert table[table["quantity"] == "test"]["within_final"].tolist() == [False, True, True, False, True]
    needed = convergence.models_needed(table).set_index("quantity")["models_needed"]
    assert needed["share_at_or_above"] == 128 and needed["test"] == 200


def test_monte_carlo_sd_matches_the_spread_of_independent_audits():
    """20 independent 32-model audits of the same 300 patients (known AUCs): the SD of their
    shares against the mean of their Monte-Carlo SD estimates."""
    auc = np.random.default_rng(7).uniform(0.5, 0.99, 300)
    shares, sds = [], []
    for rep in range(20):
        conf, member, records = simulate(wave_membership(1, 32, 300, seed=rep), auc, seed=100 + rep)
        pool = convergence.PoolCube.from_arrays(conf, member, records["record_id"], records["patient_id"])
        res = adaptive.share_precision(pool, 32, 0.9, splits=10, seed=rep)
        shares.append(res["share"])
        sds.append(res["mc_sd"])
    ratio = np.mean(sds) / np.std(shares, ddof=1)
    # conservative by design (module docstring), never optimistic; the ratio's own noise at 20
    # replicates is about ±0.3
    assert 0.75 < ratio < 1.9, ratio
