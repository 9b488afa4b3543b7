"""Benchmark: the exposure model recovers a known effect and keeps its level for attributes that go
with the number of records.

Simulates cohorts of ``--patients`` patients and runs the audit on them: a confidence cube of
``--models`` models with balanced membership (each patient's records correlated within a model,
σ_out = 1.45 σ_in), the patient statistics of :func:`mia_audit.audit.patients.patient_statistics`
and the exposure model of :mod:`mia_audit.analysis.exposure` on the patient table. Each patient
has three attributes and a label:

* ``arm`` (two groups, 1:1) with a **known effect**: every record of an arm-``b`` patient has its
  true probit AUC raised by ``--effect`` (0.25), so the patient's true exposure (the largest
  record's) rises by exactly that much;
* ``stage`` (four groups, shares 0.2/0.3/0.3/0.2), **no effect**, but its patients have on
  average 10.0, 8.0, 6.5 and 5.1 records (1 + Binomial(19, p)), so their maxima differ;
* ``sex`` (30 % ``m``), no effect; the label (40 % positive), no effect.

A patient's true record probits are a patient level N(0.3, 0.6²) plus N(0, 0.25²) per record.
Printed: the mean estimate of the arm effect, the coverage of its 95 % interval, and the
rejection rates at 0.05 of the null coefficients and joint tests (stage, sex, label), each
with its Monte-Carlo band; the same for an unadjusted model (without records per patient),
which shows why the adjustment is there.

    PYTHONPATH=workflow python benchmarks/bench_exposure_model.py                   # 300 cohorts
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from mia_audit.analysis import exposure
from mia_audit.audit import patients

SD_OUT = 1.45
STAGE_SHARES = (0.2, 0.3, 0.3, 0.2)
STAGE_MEAN_RECORDS = (10.0, 8.0, 6.5, 5.1)


def cohort(rng: np.random.Generator, n_patients: int, n_models: int, effect: float, rho: float = 0.47):
    """(conf, member, records table, patient ids per record)."""
    stage = rng.choice(4, size=n_patients, p=list(STAGE_SHARES))
    n_rec = 1 + rng.binomial(19, (np.asarray(STAGE_MEAN_RECORDS)[stage] - 1) / 19)
    arm = rng.integers(0, 2, n_patients)
    sex = np.where(rng.random(n_patients) < 0.3, "m", "f")
    label = (rng.random(n_patients) < 0.4).astype(int)
    level = rng.normal(0.3, 0.6, n_patients) + effect * arm
    member_p = rng.random((n_models, n_patients)).argsort(axis=0).argsort(axis=0) < n_models // 2
    scale = np.sqrt(1 + SD_OUT**2)
    confs, members, pid = [], [], []
    for p in range(n_patients):
        d = level[p] + 0.25 * rng.standard_normal(n_rec[p])
        z = np.sqrt(rho) * rng.standard_normal((n_models, 1)) + np.sqrt(1 - rho) * rng.standard_normal(
            (n_models, n_rec[p])
        )
        inside = member_p[:, p]
        confs.append(np.where(inside[:, None], d * scale + z, SD_OUT * z))
        members.append(np.repeat(inside[:, None], n_rec[p], axis=1))
        pid += [f"p{p:04d}"] * n_rec[p]
    pid = np.array(pid)
    idx = np.repeat(np.arange(n_patients), n_rec)
    records = pd.DataFrame(
        {
            "record_id": [f"r{i}" for i in range(pid.size)],
            "patient_id": pid,
            "label": label[idx],
            "arm": np.array(["a", "b"])[arm][idx],
            "stage": (stage + 1).astype(str)[idx],
            "sex": sex[idx],
        }
    )
    return np.hstack(confs), np.hstack(members), records


def fit(records, table, attributes, adjust: bool = True) -> pd.DataFrame:
    frame = exposure.patient_frame(records, table, attributes)
    if not adjust:
        frame = frame.assign(n_records=1.0)  # one record count for all: no adjustment
    return exposure.fit_exposure_model(frame, attributes).set_index("term")


def run(sets, n_patients, n_models, effect, boot, seed) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    attrs = ["arm", "stage", "sex"]
    rows = []
    for s in range(sets):
        conf, member, records = cohort(rng, n_patients, n_models, effect)
        table = patients.patient_statistics(
            conf, member, records["patient_id"].to_numpy(), n_boot=boot, seed=s, attack_permutations=0
        )
        row = {}
        for name, adjust in (("", True), ("unadjusted_", False)):
            m = fit(records, table, attrs, adjust)
            # the reference is the larger arm: b − a is either the coefficient of b or minus that of a
            sign = 1.0 if "arm[b]" in m.index else -1.0
            arm = m.loc["arm[b]" if sign > 0 else "arm[a]"]
            lo, hi = sorted((sign * arm["ci_low"], sign * arm["ci_high"]))
            row |= {
                f"{name}arm_estimate": sign * arm["estimate"],
                f"{name}arm_covers": lo <= effect <= hi,
                f"{name}stage_joint_rejects": m.loc["stage (all)", "p"] <= 0.05,
                # the reference is the larger of stages 2 and 3: the three other coefficients
                f"{name}stage_coef_rejects": (m.loc[m.index.str.startswith("stage["), "p"] <= 0.05).mean(),
                # two groups: the joint test is the coefficient's t test (F(1, df) = t²)
                f"{name}sex_rejects": m.loc["sex (all)", "p"] <= 0.05,
                f"{name}label_rejects": m.loc["label (all)", "p"] <= 0.05,
            }
        rows.append(row)
    return pd.DataFrame(rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sets", type=int, default=300)
    ap.add_argument("--patients", type=int, default=250)
    ap.add_argument("--models", type=int, default=100)
    ap.add_argument("--effect", type=float, default=0.25)
    ap.add_argument("--boot", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    df = run(a.sets, a.patients, a.models, a.effect, a.boot, a.seed)
    s = df.mean()
    se = np.sqrt(0.05 * 0.95 / a.sets)
    print(
        f"{a.sets} cohorts of {a.patients} patients, {a.models} models, arm effect {a.effect} "
        f"({time.perf_counter() - t0:.0f} s); band for a rate of 0.05: {0.05 - 2 * se:.3f}-{0.05 + 2 * se:.3f}, "
        f"for a coverage of 0.95: {0.95 - 2 * se:.3f}-{0.95 + 2 * se:.3f}"
    )
    print(s.to_string(float_format=lambda v: f"{v:.4f}"))
    ok = 0.93 <= s["arm_covers"] <= 0.97 and all(
        s[c] <= 0.05 + 2 * se for c in ("stage_joint_rejects", "sex_rejects", "label_rejects")
    )
    print("the adjusted model covers the effect and keeps its level:", "yes" if ok else "NO")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
