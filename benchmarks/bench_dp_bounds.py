"""Benchmark: the DP bounds of the audit (tightness, group bounds, flag error rates, time).

Five parts, each printing its figures:

``reference``  the issue's table: subsampled Gaussian, q = 64/780, 1,300 steps, δ = 1/780,
               σ calibrated with the RDP accountant; the AUC bound from one (ε, δ) point and
               from the whole PLD privacy profile (and the envelope of the symmetric profile,
               max of add and remove, as a check), with the time of each.
``groups``     the group bound for a patient with k records under record-level DP against a
               Monte-Carlo estimate of the most powerful attack on a simulated DP-SGD run
               (each record Poisson-sampled on its own, gradients aligned, exact
               likelihood-ratio score) and against the classic group statement.
``sizes``      the bi-normal test's rejection rate at the boundary (normal signals whose AUC
               equals the bound) against its level, ν = min(n) − 1 and with Welch–Satterthwaite
               degrees of freedom, for in/out SD ratios 1, 4 and 10 (reported beside the flag).
``flags``      false flags of the distribution-free tests: simulated correct DP-SGD runs
               (``mia_audit.dp.simulation``) audited with the workflow's own code
               (``stats.record_risk``, ``dp_audit.record_statistics`` → ``add_dp_bounds``), in
               three kinds of scenario: near-normal signals (the linear attack on a 365-step run,
               patients with 1–20 records, patient and record level, ε = 1 and 10 at δ = 1e-5),
               non-normal signals (one subsampled Gaussian step, q 0.5, σ 0.2: bimodal), and the
               exact likelihood-ratio attack (the most powerful one: each unit's ROC is the
               run's trade-off curve). Per row the share of correct experiments with any flagged
               record or patient (95 % Clopper–Pearson interval), the share of records with
               p ≤ 0.05 before adjustment, the bi-normal test's flags on the same experiments,
               and the power against the same run with half the noise.
``preset``     the accountant time of the audit for every DP experiment of a preset (cold
               cache): the plan's σ, q, T and the cohort's group sizes, as the workflow does.

Run:  PYTHONPATH=workflow python benchmarks/bench_dp_bounds.py [reference groups sizes flags preset]
      [--reps 1000] [--models 40 200] [--scenarios "exact LR" non-normal] [--preset config/presets/dp_pbc.yaml]
"""

from __future__ import annotations

import argparse
import math
import time
import warnings
from pathlib import Path

import numpy as np

from mia_audit.audit import stats
from mia_audit.dp import audit, bounds, simulation, violations
from mia_audit.sampling import membership
from mia_audit.train import accounting

REF_Q, REF_STEPS, REF_DELTA = 64 / 780, 1300, 1 / 780


def reference() -> None:
    print("== reference: q = 64/780, T = 1300, δ = 1/780 ==")
    print(f"{'ε':>6} {'σ (RDP)':>9} {'single point':>13} {'profile':>9} {'symmetric':>10} {'time':>7}")
    for target in (1.0, 10.0, 100.0):
        sigma = accounting.noise_multiplier_for(target, REF_DELTA, REF_Q, REF_STEPS, "rdp")
        bounds._profile_auc_bound.cache_clear()
        bounds._profile.cache_clear()
        t0 = time.perf_counter()
        tight = bounds.profile_auc_bound(sigma, REF_Q, REF_STEPS)
        dt = time.perf_counter() - t0
        pld = bounds.group_pld(sigma, REF_Q, REF_STEPS)
        eps = np.linspace(0, min(bounds.PROFILE_MAX_EPSILON, pld.get_epsilon_for_delta(1e-15)), bounds.PROFILE_POINTS)
        sym = bounds.tradeoff_auc_bound(eps, pld.get_delta_for_epsilon(eps))
        single = bounds.max_auc_bound(target, REF_DELTA)
        print(f"{target:6g} {sigma:9.4f} {single:13.5f} {tight:9.4f} {sym:10.4f} {dt:6.2f}s")


def groups(n: int) -> None:
    rng = np.random.default_rng(0)
    q, steps = 64 / 778, 365  # the dp_pbc preset at record level (30 epochs)
    print(f"== groups: record-level DP, q = {q:.4f}, T = {steps}; MC most powerful attack, {n} runs per side ==")
    print(
        f"{'ε':>4} {'σ':>7} {'k':>3} {'bound':>8} {'MC AUC':>8} {'± SE':>7} {'(b−MC)/SE':>10} {'classic':>8} {'s':>4}"
    )
    for target in (1.0, 10.0):
        sigma = accounting.noise_multiplier_for(target, 1 / 778, q, steps, "rdp")
        eps_1 = accounting.achieved_epsilon(sigma, q, steps, 1 / 778, "rdp")
        for k in (1, 2, 3, 5, 10, 20):
            t0 = time.perf_counter()
            bound = bounds.profile_auc_bound(sigma, q, steps, k)
            dt = time.perf_counter() - t0
            auc, se = simulation.optimal_attack_auc(k, sigma, q, steps, n, rng)
            z = (bound - auc) / se if se > 0 else math.nan
            ek, dk = bounds.group_privacy(eps_1, 1 / 778, k)
            classic = bounds.max_auc_bound(ek, dk)
            print(
                f"{target:4g} {sigma:7.3f} {k:3d} {bound:8.4f} {auc:8.4f} {se:7.4f} {z:10.1f} {classic:8.4f} {dt:5.1f}s"
            )


def sizes(reps: int) -> None:
    """Size of the violation test at the boundary (AUC = bound) for normal signals."""
    from scipy.stats import nct, norm

    rng = np.random.default_rng(2)
    bound = 0.9
    print(f"== sizes: normal signals with AUC = bound = {bound}, {reps} draws per row; rejection rate / level ==")
    print(f"{'n per side':>10} {'SD ratio':>8}   {'ours (ν = min n − 1)':>26}   {'Welch–Satterthwaite ν':>26}")
    print(f"{'':>10} {'':>8}   {'0.05    1e-3    1e-4':>26}   {'0.05    1e-3    1e-4':>26}")
    for n in (4, 10, 30):
        for ratio in (1.0, 4.0, 10.0):
            mu = norm.ppf(bound) * np.sqrt(1 + ratio**2)
            xi, xo = rng.normal(mu, ratio, (reps, n)), rng.normal(0.0, 1.0, (reps, n))
            mi, mo, si, so = xi.mean(1), xo.mean(1), xi.std(1, ddof=1), xo.std(1, ddof=1)
            ours = violations.binormal_pvalues(mi, mo, si, so, n, n, bound)
            vi, vo = si**2 / n, so**2 / n
            ws = nct.sf(
                (mi - mo) / np.sqrt(vi + vo), (vi + vo) ** 2 / ((vi**2 + vo**2) / (n - 1)), norm.ppf(bound) * np.sqrt(n)
            )
            cells = [" ".join(f"{np.mean(p <= a) / a:6.2f}x" for a in (0.05, 1e-3, 1e-4)) for p in (ours, ws)]
            print(f"{n:10d} {ratio:8g}   {cells[0]:>26}   {cells[1]:>26}", flush=True)


def _cp(x: int, n: int) -> str:
    from statsmodels.stats.proportion import proportion_confint

    lo, hi = proportion_confint(x, n, alpha=0.05, method="beta")
    return f"{x / n:6.3f} [{lo:.3f}, {hi:.3f}]"


def _audit_of(conf, member, pid, spec, fprs=(0.001, 0.01, 0.1)):
    """The workflow's own record and patient tables of one simulated experiment."""
    rec = stats.record_risk(conf, member)
    rec.insert(0, "patient_id", pid)
    rec.insert(0, "record_id", np.arange(len(pid)).astype(str))
    st = audit.record_statistics(conf, member, fprs)
    st.insert(0, "record_id", rec["record_id"])
    return audit.add_dp_bounds(rec, stats.patient_risk(rec), spec, st)


def _scenarios(n_patients: int, rng):
    """(name, level, σ, q, T, signals(member, σ) → (conf, member, patient of record)) of correct runs."""
    q, steps = 0.08, 365  # the dp_pbc preset's record-level schedule
    ks = rng.integers(1, 21, n_patients)  # patients with 1–20 records
    ones = np.ones(n_patients, dtype=np.int64)

    def linear(level, k, q, steps):
        return lambda member, s: simulation.linear_attack_signals(member, k, s, q, steps, level, rng)

    def exact(q, steps):
        def draw(member, s):
            return simulation.exact_lr_signals(member, s, q, steps, rng), member, np.arange(member.shape[1])

        return draw

    out = []
    for target in (1.0, 10.0):
        sigma = accounting.noise_multiplier_for(target, 1e-5, q, steps)
        for level in ("patient", "record"):
            out.append((f"normal, {level} level, ε = {target:g}", level, sigma, q, steps, linear(level, ks, q, steps)))
        out.append((f"exact LR, ε = {target:g}", "patient", sigma, q, steps, exact(q, steps)))
    # one subsampled Gaussian step, q = 0.5, σ = 0.2: bimodal member signals
    out.append(("non-normal: one step q 0.5 σ 0.2", "patient", 0.2, 0.5, 1, linear("patient", ones, 0.5, 1)))
    out.append(("non-normal, exact LR attack", "patient", 0.2, 0.5, 1, exact(0.5, 1)))
    return out


def flags(reps: int, models: list[int], n_patients: int = 250, only: list[str] | None = None) -> None:
    """False flags of correct runs: the distribution-free tests (the flag) against the bi-normal
    test, per scenario; the share of records with p ≤ 0.05 before adjustment (the per-record
    level); and the power against the same run with half its noise."""
    rng = np.random.default_rng(1)
    n_power = max(20, reps // 5)
    print(
        f"== flags: {n_patients} patients per experiment (normal: 1–20 records each; exact LR and one step: 1 "
        f"record), {reps} correct experiments per row ({n_power} for the power against σ/2), α = 0.05 (Holm) =="
    )
    print(
        f"{'scenario':>34} {'models':>6} {'bound':>6} {'flagged experiments':>24} {'records p≤.05':>13} "
        f"{'bi-normal flagged':>24} {'power σ/2':>9} {'AUC/bound':>9}"
    )
    for name, level, sigma, q, steps, draw in _scenarios(n_patients, rng):
        if only and not any(o in name for o in only):
            continue
        spec = {
            "epsilon": accounting.achieved_epsilon(sigma, q, steps, 1e-5),
            "delta": 1e-5,
            "level": level,
            "accountant": "pld",
            "runs": [(sigma, q, steps)],
        }
        bound = bounds.profile_auc_bound(sigma, q, steps, 1)
        for m in models:
            false = old = power = 0
            rec_p, ratio = [], []
            for i in range(reps):
                member = membership.balanced_membership(m, n_patients, 10_000 + i)
                conf, mem, pid = draw(member, sigma)
                r, p = _audit_of(conf, mem, pid, spec)
                false += bool(r["dp_violation"].any() or p["dp_violation"].any())
                old += bool((violations.holm_adjust(r["dp_p_binormal"]) <= 0.05).any())
                rec_p.append(np.mean(r["dp_p"] <= 0.05))
                ratio.append(float((r["auc_emp"] / r["dp_bound"]).mean()))
                if i < n_power:
                    conf, mem, pid = draw(member, sigma / 2)
                    power += bool(_audit_of(conf, mem, pid, spec)[1]["dp_violation"].any())
            print(
                f"{name:>34} {m:6d} {bound:6.4f} {_cp(false, reps):>24} {np.mean(rec_p):13.4f} "
                f"{_cp(old, reps):>24} {power / n_power:9.3f} {np.mean(ratio):9.3f}",
                flush=True,
            )


def preset(path: str) -> None:
    import yaml

    from mia_audit.data.adapters.table import prepare_table, read_table
    from mia_audit.train.dp_sgd import plan_for_shard
    from mia_audit.train.ensemble import TrainConfig

    root = Path(__file__).resolve().parents[1]
    cfg = yaml.safe_load(Path(path).read_text())
    print(f"== preset {path}: the audit's accountant time per DP experiment (cold cache) ==")
    total = 0.0
    for name, exp in cfg["experiments"].items():
        if not exp.get("dp"):
            continue
        ds = cfg["datasets"][exp["dataset"]]
        prep = prepare_table(read_table(root / ds["path"]), ds, path=ds["path"])
        rec = prep.records
        pool = (rec["split"].astype(str) == "pool").to_numpy()
        pool_patients = rec.loc[pool, "patient_id"].unique()
        pm = membership.balanced_membership(ds["n_models"], len(pool_patients), ds.get("membership_seed", 0))
        index = dict(zip(pool_patients, range(len(pool_patients)), strict=True))
        idx = rec["patient_id"].map(index).fillna(-1).astype(int).to_numpy()
        member = membership.record_membership(pm, idx)
        t0 = time.perf_counter()
        plan, _ = plan_for_shard(exp["dp"], rec["patient_id"], member, pool, TrainConfig.from_config(exp["train"]))
        t_plan = time.perf_counter() - t0
        k = rec.loc[pool].groupby("patient_id").size().to_numpy()
        spec = {"epsilon": plan.epsilon, "delta": plan.delta, "level": plan.level, "accountant": plan.accountant}
        spec["runs"] = [(plan.noise_multiplier, plan.sample_rate, plan.steps)]
        bounds._profile_auc_bound.cache_clear()
        bounds._profile.cache_clear()
        group = k if plan.level == "record" else np.ones_like(k)
        t0 = time.perf_counter()
        tight, single = audit.bounds_for_groups(spec, group)
        dt = time.perf_counter() - t0
        total += dt
        print(
            f"{name:>16}: σ = {plan.noise_multiplier:.4f}, q = {plan.sample_rate:.4f}, T = {plan.steps}; "
            f"{len(np.unique(group))} group sizes; bounds {tight.min():.4f}–{tight.max():.4f} "
            f"(single point {single.min():.4f}–{single.max():.4f}) in {dt:.1f} s (planning σ {t_plan:.1f} s)",
            flush=True,
        )
    print(f"total accountant time of the audits: {total:.1f} s")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("parts", nargs="*", default=["reference", "groups", "sizes", "flags", "preset"])
    ap.add_argument("--reps", type=int, default=200, help="simulated experiments per row of 'flags'")
    ap.add_argument("--models", type=int, nargs="+", default=[40, 200])
    ap.add_argument("--mc", type=int, default=20_000, help="Monte-Carlo runs per side in 'groups'")
    ap.add_argument("--preset", default="config/presets/dp_pbc.yaml")
    ap.add_argument("--scenarios", nargs="+", help="'flags': only the scenarios whose name contains one of these")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore", message="Optimal order is the")
    for part in args.parts:
        t0 = time.perf_counter()
        if part == "reference":
            reference()
        elif part == "groups":
            groups(args.mc)
        elif part == "sizes":
            sizes(400 * args.reps)
        elif part == "flags":
            flags(args.reps, args.models, only=args.scenarios)
        elif part == "preset":
            preset(args.preset)
        else:
            raise SystemExit(f"unknown part {part!r}")
        print(f"({part}: {time.perf_counter() - t0:.0f} s)\n")


if __name__ == "__main__":
    main()
