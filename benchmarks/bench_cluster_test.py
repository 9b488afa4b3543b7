"""Benchmark: type-I error of the tail-composition tests when records cluster within patients.

Simulates the null many times: ``--patients`` patients with 1–20 records each (uniform),
record AUCs correlated within patient (a patient effect with intra-class correlation
``--icc``), and two subgroup attributes independent of the AUCs:

* ``arm``: constant within a patient (three groups, shares ``--arm-shares``, default
  0.5 / 0.3 / 0.2), like sex or a treatment arm;
* ``age``: changes over a patient's visits (baseline age 30–75 plus one year per
  record, bands <40, 40–49, 50–59, ≥60), like the bundled cohort's age bands;
* with ``--records-attribute``, ``stage``: constant within a patient (shares 0.2 / 0.3 / 0.3 /
  0.2) and going with the number of records, as disease stage does on the bundled cohort:
  a stage-g patient has 1 + Binomial(19, p_g) records, on average 10.0, 8.0, 6.5 and 5.1
  (every patient's records then follow their stage instead of being uniform on 1–20).
  A patient's AUC, the maximum over their records, rises with the number of records, so
  under H0 stage 1 is over-represented in the patient tail; the patient-level test must
  permute within strata of equal records per patient to keep its level.

For each replicate and attribute it runs, at record level, the naive test
(:func:`mia_audit.analysis.subgroups.goodness_of_fit`: records as independent units) and the
patient-clustered permutation test (:func:`mia_audit.analysis.subgroups.cluster_permutation_test`);
at patient level (a patient's score is their worst record's, their group their first
record's group) the multinomial test (``p`` of the patient tables), the permutation test of
patients within strata of equal records per patient
(:func:`mia_audit.analysis.subgroups.stratified_permutation_test`, their ``p_cluster``) and, for
comparison, the unstratified permutation of patients
(:func:`mia_audit.analysis.subgroups.unit_permutation_test`, ``type1_unstratified``). The tail of each
level comes from
:func:`mia_audit.analysis.subgroups.level_tail` — the code path of the workflow — under ``--tail``:
``quantile`` (the ``--quantile`` tail) or ``auto`` (chosen from the data, starting at
``--quantile`` and growing no further than ``--auto-min-quantile``). It prints each test's
rejection rate (p ≤ 0.05) with the band 0.05 ± 2 Monte-Carlo SE, the median design effect,
tail patients and tail quantile, and how often ``auto`` enlarged the tail.

    PYTHONPATH=workflow python benchmarks/bench_cluster_test.py                  # 2,000 replicates
    PYTHONPATH=workflow python benchmarks/bench_cluster_test.py --quantile 0.99
    PYTHONPATH=workflow python benchmarks/bench_cluster_test.py --tail auto --quantile 0.99 --patients 150
    PYTHONPATH=workflow python benchmarks/bench_cluster_test.py --records-attribute --tail auto --patients 250
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from mia_audit.analysis import subgroups as analysis_subgroups

AGE_BINS = [0, 40, 50, 60, 200]
#: stage shares and the mean records of a stage's patients (--records-attribute)
STAGE_SHARES = (0.2, 0.3, 0.3, 0.2)
STAGE_MEAN_RECORDS = (10.0, 8.0, 6.5, 5.1)


def simulate(
    rng: np.random.Generator,
    n_patients: int,
    icc: float,
    max_records: int = 20,
    arm_shares=(0.5, 0.3, 0.2),
    records_attribute: bool = False,
):
    """One null data set: per record its patient, AUC score and the attributes (codes)."""
    if records_attribute:
        stage = rng.choice(len(STAGE_SHARES), size=n_patients, p=list(STAGE_SHARES))
        p = (np.asarray(STAGE_MEAN_RECORDS) - 1) / (max_records - 1)
        n_rec = 1 + rng.binomial(max_records - 1, p[stage])
    else:
        n_rec = rng.integers(1, max_records + 1, size=n_patients)
    patient = np.repeat(np.arange(n_patients), n_rec)
    effect = rng.standard_normal(n_patients)[patient]
    score = np.sqrt(icc) * effect + np.sqrt(1 - icc) * rng.standard_normal(patient.size)
    arm = rng.choice(len(arm_shares), size=n_patients, p=list(arm_shares))[patient]
    visit = np.concatenate([np.arange(k) for k in n_rec])
    age = rng.uniform(30, 75, size=n_patients)[patient] + visit
    age_band = np.digitize(age, AGE_BINS[1:-1])
    attrs = {"arm": arm, "age": age_band}
    if records_attribute:
        attrs["stage"] = stage[patient]
    return patient, score, attrs


def patient_level(patient: np.ndarray, score: np.ndarray, attrs: dict) -> tuple[np.ndarray, dict, np.ndarray]:
    """Per patient: the worst record's score, the first record's groups (the patient tables'
    definitions) and the number of records."""
    order = np.lexsort((-score, patient))  # by patient, highest score first
    worst = order[np.r_[True, patient[order][1:] != patient[order][:-1]]]
    first = np.flatnonzero(np.r_[True, patient[1:] != patient[:-1]])  # records are in patient order
    return score[worst], {name: codes[first] for name, codes in attrs.items()}, np.bincount(patient)


def one_replicate(
    rng,
    n_patients,
    icc,
    quantile,
    permutations,
    tail="quantile",
    auto_min_quantile=0.8,
    arm_shares=None,
    records_attribute=False,
):
    patient, score, attrs = simulate(
        rng, n_patients, icc, arm_shares=arm_shares or (0.5, 0.3, 0.2), records_attribute=records_attribute
    )
    p_score, p_attrs, n_records = patient_level(patient, score, attrs)
    kw = {"rule": tail, "quantile": quantile, "auto_min_quantile": auto_min_quantile}
    out = {}
    for level, s, a, clusters in (("record", score, attrs, patient), ("patient", p_score, p_attrs, None)):
        chosen = analysis_subgroups.level_tail(s, a, clusters=clusters, unit=level, **kw)
        for name, codes in a.items():
            present = np.unique(codes)
            codes = np.searchsorted(present, codes)
            overall = np.bincount(codes)
            observed = np.bincount(codes[chosen.mask], minlength=present.size)
            naive = analysis_subgroups.goodness_of_fit(observed, overall, rng=rng, draws=100_000)
            row = {
                "p_naive": naive["p"],
                "p_cluster": naive["p"],
                "p_unstratified": np.nan,
                "design_effect": 1.0,
                "n_tail_patients": chosen.n_patients,
                "tail_quantile": chosen.quantile,
                "enlarged": chosen.quantile < quantile,
                "too_small": "too small for any" in chosen.reason,
            }
            if clusters is None and np.isfinite(naive["p"]):
                row["p_cluster"] = analysis_subgroups.stratified_permutation_test(
                    codes, chosen.mask, n_records, permutations=permutations, rng=rng
                )
                row["p_unstratified"] = analysis_subgroups.unit_permutation_test(
                    observed, overall, permutations=permutations, rng=rng
                )
            elif clusters is not None:
                expected = overall / overall.sum() * observed.sum()
                clustered = analysis_subgroups.cluster_permutation_test(
                    codes, chosen.mask, clusters, expected, permutations=permutations, rng=rng
                )
                row.update(p_cluster=clustered["p"], design_effect=clustered["design_effect"])
            out[(level, name)] = row
    return out


def run(
    replicates: int,
    n_patients: int,
    icc: float,
    quantile: float,
    permutations: int,
    seed: int,
    tail: str = "quantile",
    auto_min_quantile: float = 0.8,
    arm_shares=(0.5, 0.3, 0.2),
    records_attribute: bool = False,
) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for r in range(replicates):
        res = one_replicate(
            rng, n_patients, icc, quantile, permutations, tail, auto_min_quantile, arm_shares, records_attribute
        )
        for (level, name), row in res.items():
            rows.append({"replicate": r, "level": level, "attribute": name, **row})
    return pd.DataFrame(rows)


def summarise(df: pd.DataFrame, alpha: float = 0.05) -> pd.DataFrame:
    out = []
    for (level, name), d in df.groupby(["level", "attribute"], sort=False):
        n = len(d)
        se = np.sqrt(alpha * (1 - alpha) / n)
        out.append(
            {
                "level": level,
                "attribute": name,
                "replicates": n,
                # a valid p-value has P(p ≤ α) ≤ α under H0
                "type1_naive": float((d["p_naive"] <= alpha).mean()),
                "type1_cluster": float((d["p_cluster"] <= alpha).mean()),
                "type1_unstratified": float((d["p_unstratified"] <= alpha).mean()) if level == "patient" else np.nan,
                "band_low": alpha - 2 * se,
                "band_high": alpha + 2 * se,
                "median_design_effect": float(d["design_effect"].median()),
                "median_tail_patients": float(d["n_tail_patients"].median()),
                "median_tail_quantile": float(d["tail_quantile"].median()),
                "share_enlarged": float(d["enlarged"].mean()),
                "share_too_small": float(d["too_small"].mean()),
            }
        )
    return pd.DataFrame(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--replicates", type=int, default=2000)
    ap.add_argument("--patients", type=int, default=300)
    ap.add_argument("--icc", type=float, default=0.5)
    ap.add_argument("--quantile", type=float, default=0.95)
    ap.add_argument("--tail", choices=["quantile", "auto"], default="quantile")
    ap.add_argument("--auto-min-quantile", type=float, default=0.8)
    ap.add_argument("--arm-shares", default="0.5,0.3,0.2", help="shares of the patient-constant groups")
    ap.add_argument("--permutations", type=int, default=999)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--records-attribute", action="store_true", help="add stage, an attribute that goes with records per patient"
    )
    a = ap.parse_args(argv)
    shares = tuple(float(x) for x in a.arm_shares.split(","))
    t0 = time.perf_counter()
    df = run(
        a.replicates,
        a.patients,
        a.icc,
        a.quantile,
        a.permutations,
        a.seed,
        a.tail,
        a.auto_min_quantile,
        shares,
        a.records_attribute,
    )
    s = summarise(df)
    print(
        f"{a.replicates} null replicates, {a.patients} patients with 1-20 records"
        + (" (by stage)" if a.records_attribute else "")
        + f", ICC {a.icc}, arm shares {shares}, "
        f"tail {a.tail} from the {a.quantile} quantile"
        + (f" (no further than {a.auto_min_quantile})" if a.tail == "auto" else "")
        + f", {a.permutations} permutations ({time.perf_counter() - t0:.0f} s)"
    )
    with pd.option_context("display.width", 200):
        print(s.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    # validity: the rate does not exceed 0.05 + 2 SE; below 0.05 − 2 SE the test is conservative
    # (as with a tail of 2 patients, which no test can find unusual): valid but without power
    ok = (s["type1_cluster"] <= s["band_high"]).all()
    print("clustered test (patients as units) holds its level (≤ 0.05 + 2 Monte-Carlo SE):", "yes" if ok else "NO")
    low = s[s["type1_cluster"] < s["band_low"]]
    if len(low):
        print("conservative (below 0.05 − 2 SE):", ", ".join(f"{r.level}/{r.attribute}" for r in low.itertuples()))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
