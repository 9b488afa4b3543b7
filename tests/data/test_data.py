from pathlib import Path

import numpy as np
import pytest
import yaml
from snakemake.utils import validate

from mia_audit.data.adapters.table import prepare_table, read_table
from mia_audit.errors import DataError

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def pbc_spec():
    cfg = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    validate(cfg, str(ROOT / "config/schema.yaml"))
    return cfg["datasets"]["pbc"]


@pytest.fixture(scope="module")
def pbc(pbc_spec):
    return read_table(ROOT / pbc_spec["path"])


def test_bundled_cohort_is_the_documented_file():
    import hashlib

    digest = hashlib.sha256((ROOT / "data/pbcseq.csv").read_bytes()).hexdigest()
    assert digest == "25d65662903664e598e5650554f6811cfc1b2ccadc09e74b16a824de6f381d48"


def test_prepare_pbc(pbc, pbc_spec):
    prep = prepare_table(pbc, pbc_spec)
    rec = prep.records
    assert len(rec) == 1945 and rec["patient_id"].nunique() == 312
    assert rec["record_id"].is_unique
    # the split is by patient: no patient on both sides; about 20 % of patients held out
    sides = rec.groupby("patient_id")["split"].nunique()
    assert (sides == 1).all()
    n_test = rec.loc[rec["split"] == "test", "patient_id"].nunique()
    assert n_test == round(0.2 * 312)
    # label: death = status 2
    assert np.array_equal(rec["label"].to_numpy(), (pbc["status"] == 2).to_numpy().astype(int))
    assert set(rec["sex"]) == {"f", "m"} and rec.groupby("patient_id")["sex"].first().eq("m").sum() == 36
    assert set(rec["age"]) <= {"<40", "40-49", "50-59", ">=60"}
    assert set(rec["trt"]) == {"D-penicillamine", "placebo"}
    # inputs: finite, standardised on the pool, a missingness indicator where values were missing
    X, pool = prep.features, (rec["split"] == "pool").to_numpy()
    assert X.dtype == np.float32 and np.isfinite(X).all() and X.shape[0] == 1945
    np.testing.assert_allclose(X[pool].mean(axis=0), 0, atol=1e-4)
    np.testing.assert_allclose(X[pool].std(axis=0), 1, atol=1e-3)
    assert "chol__missing" in prep.feature_names and "bili__missing" not in prep.feature_names
    assert {"sex=f", "sex=m"} <= set(prep.feature_names)


def test_missing_values_get_the_pool_median(pbc, pbc_spec):
    prep = prepare_table(pbc, pbc_spec)
    j = prep.feature_names.index("chol")
    pre = prep.preprocessing["chol"]
    raw = prep.features[:, j] * pre["sd"] + pre["mean"]
    miss = pbc["chol"].isna().to_numpy()
    pool = (prep.records["split"] == "pool").to_numpy()
    assert miss.any()
    np.testing.assert_allclose(raw[miss], np.nanmedian(pbc["chol"].to_numpy()[pool]), rtol=1e-4)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda df, s: (df.drop(columns=["bili"]), s), r"\['bili'\].*features"),
        (
            lambda df, s: (df, {**s, "label": {"column": "status", "positive": [0, 1, 2], "negative": "other"}}),
            "single class",
        ),
        (
            lambda df, s: (df.assign(chol=df["chol"].astype(object).where(df.index != 5, "high")), s),
            r"'chol' has non-numeric value 'high'",
        ),
        (
            lambda df, s: (df.assign(visit=np.zeros(len(df), int)), {**s, "record_id": "visit"}),
            "record ids are not unique",
        ),
        (lambda df, s: (df.assign(id=df["id"].where(df.index != 3)), s), r"patient-id column 'id' has 1 missing"),
        (lambda df, s: (df, {**s, "subgroups": {"sex": {"column": "gender"}}}), r"\['gender'\].*subgroups"),
    ],
    ids=["missing-column", "single-class", "non-numeric", "duplicate-record-id", "patient-id-missing", "bad-subgroup"],
)
def test_bad_input_gets_one_clear_message(pbc, pbc_spec, mutate, message):
    df, spec = mutate(pbc.copy(), dict(pbc_spec))
    with pytest.raises(DataError, match=message):
        prepare_table(df, spec, path="pbcseq.csv")


def test_schema_rejects_bad_config_and_fills_defaults():
    cfg = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    bad = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    bad["datasets"]["pbc"]["n_models"] = 7
    with pytest.raises(Exception, match="multiple of 2|n_models"):
        validate(bad, str(ROOT / "config/schema.yaml"))
    bad = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    bad["experiments"]["mlp"]["train"]["epochs"] = "many"
    with pytest.raises(Exception, match="epochs|many"):
        validate(bad, str(ROOT / "config/schema.yaml"))
    del cfg["audit"]
    validate(cfg, str(ROOT / "config/schema.yaml"))
    assert cfg["audit"]["n_targets"] == 10
    assert cfg["experiments"]["mlp"]["train"]["optimizer"] == "adamw"


def test_read_table_missing_file_names_it(tmp_path):
    with pytest.raises(DataError, match="nope.csv"):
        read_table(tmp_path / "nope.csv")


def test_midranks_and_separation_auc_match_scipy_and_sklearn():
    """The NumPy mid-ranks (kept out of scipy.stats for the light jobs' start-up) equal
    scipy.stats.rankdata exactly, ties included, and the folded AUC equals sklearn's."""
    from scipy.stats import rankdata
    from sklearn.metrics import roc_auc_score

    from mia_audit.data.adapters.table import midranks, separation_auc

    rng = np.random.default_rng(3)
    for x in (rng.normal(size=200), rng.integers(0, 5, size=300).astype(float), np.array([2.0]), np.array([])):
        np.testing.assert_array_equal(midranks(x), rankdata(x))
        if x.size > 20:
            y = rng.random(x.size) < 0.3
            a = roc_auc_score(y, x)
            assert separation_auc(x, y) == pytest.approx(max(a, 1 - a), abs=1e-12)
    assert np.isnan(midranks(np.array([1.0, np.nan]))).all()
