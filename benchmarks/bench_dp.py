"""Benchmark: record-level DP-SGD for an ensemble of small MLPs.

Compares the vectorised ensemble core (:func:`mia_audit.train.dp_gradients.dp_gradients`, all models in
one ``torch.func.vmap`` call per step) with Opacus's own loop (``PrivacyEngine.make_private``
with Poisson sampling, one model after another), same data size, sample rate, epochs,
clip norm and noise multiplier. Prints seconds per model for each and the ratio, plus the
mean test accuracy of each ensemble as a sanity check that both really train.

Run:  PYTHONPATH=workflow python benchmarks/bench_dp.py [--models 50] [--epochs 20]

``--preset config/presets/dp_pbc.yaml --experiment dp_rec_eps10`` times instead the real
trainer (:func:`mia_audit.train.dp_sgd.train_ensemble_dp`) on one shard of that experiment
(the bundled cohort, its membership, its train and dp settings), extrapolates the time per
ε (all shards, ``--jobs`` shards in parallel) and compares with Opacus's per-model loop on
the same records, sample rate, steps, σ and C, and times the audit's DP bounds of that
experiment (``benchmarks/bench_dp_bounds.py preset`` times them for every experiment).
"""

from __future__ import annotations

import argparse
import math
import time
import warnings
from pathlib import Path

import torch
from torch import nn
from torch.func import functional_call, stack_module_state

from mia_audit.dp import bounds
from mia_audit.train import accounting
from mia_audit.train import dp_gradients as train_dp_gradients


def make_mlp(d_in: int, width: int, d_out: int) -> nn.Module:
    return nn.Sequential(nn.Linear(d_in, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, d_out))


def make_data(models: int, n: int, d: int, gen: torch.Generator):
    """Each model gets its own n records from one logistic ground truth (+ a test set)."""
    w = torch.randn(d, generator=gen)
    x = torch.randn(models, n, d, generator=gen)
    y = (x @ w + 0.5 * torch.randn(models, n, generator=gen) > 0).long()
    xt = torch.randn(2000, d, generator=gen)
    yt = (xt @ w > 0).long()
    return x, y, xt, yt


def train_vmap(x, y, d, width, q, steps, sigma, clip, lr, device, seed):
    M, n, _ = x.shape
    torch.manual_seed(seed)
    models = [make_mlp(d, width, 2).to(device) for _ in range(M)]
    params, buffers = stack_module_state(models)
    base = make_mlp(d, width, 2).to("meta")
    f = train_dp_gradients.sample_loss_fn(base)
    opt = torch.optim.SGD(list(params.values()), lr=lr)
    gen = torch.Generator(device=device).manual_seed(seed)
    record_units = torch.arange(n, device=device).repeat(M, 1)
    x, y = x.to(device), y.to(device)
    for _ in range(steps):
        rows, units = train_dp_gradients.poisson_batches(record_units, q, gen)
        idx = rows.clamp(min=0)
        xb = torch.gather(x, 1, idx[..., None].expand(-1, -1, x.shape[-1]))
        yb = torch.gather(y, 1, idx)
        grads = train_dp_gradients.dp_gradients(f, params, xb, yb, units, clip, sigma, q * n, generator=gen)
        for k, p in params.items():
            p.grad = grads[k]
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return params, buffers, base


def vmap_accuracy(params, buffers, base, xt, yt):
    from torch.func import vmap

    with torch.no_grad():
        logits = vmap(lambda p, b: functional_call(base, (p, b), (xt,)))(params, buffers)
    return (logits.argmax(-1) == yt).float().mean().item()


def train_opacus(x, y, d, width, batch, epochs, sigma, clip, lr, device, seed):
    from opacus import PrivacyEngine

    torch.manual_seed(seed)
    model = make_mlp(d, width, 2).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=batch)
    engine = PrivacyEngine(accountant="rdp")
    model, opt, loader = engine.make_private(
        module=model,
        optimizer=opt,
        data_loader=loader,
        noise_multiplier=sigma,
        max_grad_norm=clip,
        poisson_sampling=True,
    )
    for _ in range(epochs):
        for xb, yb in loader:
            opt.zero_grad()
            xb, yb = xb.to(device), yb.to(device)
            if len(xb):
                nn.functional.cross_entropy(model(xb), yb).backward()
            opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return model


def preset_mode(args) -> None:
    """Time one shard of a preset's DP experiment with the workflow's own trainer."""
    from functools import partial

    import numpy as np
    import yaml

    from mia_audit.data.adapters.table import prepare_table, read_table
    from mia_audit.sampling import membership
    from mia_audit.train.dp_sgd import plan_for_shard, train_ensemble_dp
    from mia_audit.train.ensemble import TrainConfig, model_seed
    from mia_audit.train.families import build_model

    root = Path(__file__).resolve().parents[1]
    cfg = yaml.safe_load(Path(args.preset).read_text())
    exp = cfg["experiments"][args.experiment]
    ds = cfg["datasets"][exp["dataset"]]
    prep = prepare_table(read_table(root / ds["path"]), ds, path=ds["path"])
    rec = prep.records
    pool = (rec["split"].astype(str) == "pool").to_numpy()
    pool_patients = rec.loc[pool, "patient_id"].unique()
    pm = membership.balanced_membership(ds["n_models"], len(pool_patients), ds.get("membership_seed", 0))
    idx = (
        rec["patient_id"]
        .map(dict(zip(pool_patients, range(len(pool_patients)), strict=True)))
        .fillna(-1)
        .astype(int)
        .to_numpy()
    )
    member = membership.record_membership(pm, idx)
    tcfg = TrainConfig.from_config(exp["train"])
    per_job = exp.get("models_per_job", 50)
    X = torch.as_tensor(prep.features, dtype=torch.float32)
    y = torch.as_tensor(rec["label"].to_numpy(dtype=np.int64, copy=True))
    build = partial(build_model, exp["model"], tuple(X.shape[1:]), len(prep.label_names))
    device = torch.device(args.device)
    times = []
    for r in range(args.repeats):
        t0 = time.perf_counter()
        plan, units = plan_for_shard(
            exp["dp"], rec["patient_id"], member, pool, tcfg, key=f"experiments.{args.experiment}.dp"
        )
        t_plan = time.perf_counter() - t0
        rows = [np.flatnonzero(member[m]) for m in range(per_job)]
        seeds = [model_seed(exp.get("seed", 0), m) for m in range(per_job)]
        _, params, buffers, hist, g = train_ensemble_dp(
            build, X.to(device), y.to(device), rows, units, tcfg, plan, seeds, device
        )
        times.append(time.perf_counter() - t0)
        print(
            f"repeat {r}: shard of {per_job} models in {times[-1]:.1f} s (planning σ {t_plan:.1f} s); "
            f"q={plan.sample_rate:.4f} steps={plan.steps} sigma={plan.noise_multiplier:.4f} "
            f"achieved eps {g['dp_epsilon'].min():.4g}-{g['dp_epsilon'].max():.4g}"
        )
    med = float(np.median(times))
    n_shards = ds["n_models"] // per_job
    per_eps = med * math.ceil(n_shards / args.jobs)
    print(
        f"median shard time {med:.1f} s -> {ds['n_models']} models per ε: {per_eps / 60:.1f} min "
        f"({n_shards} shards, {args.jobs} in parallel at {args.threads} thread(s) each); "
        f"5-ε grid: {5 * per_eps / 60:.1f} min"
    )
    # the audit's DP bounds of this experiment (privacy profile per group size, cold cache)
    from mia_audit.dp import audit

    k = rec.loc[pool].groupby("patient_id").size().to_numpy()
    group = k if plan.level == "record" else np.ones_like(k)
    spec = {"epsilon": plan.epsilon, "delta": plan.delta, "level": plan.level, "accountant": plan.accountant}
    spec["runs"] = [(plan.noise_multiplier, plan.sample_rate, plan.steps)]
    bounds._profile_auc_bound.cache_clear()
    bounds._profile.cache_clear()
    t0 = time.perf_counter()
    tight, _ = audit.bounds_for_groups(spec, group)
    t_bounds = time.perf_counter() - t0
    print(
        f"audit bounds ({len(np.unique(group))} group sizes, {tight.min():.4f}-{tight.max():.4f}): "
        f"{t_bounds:.1f} s; per ε with training: {(per_eps + t_bounds) / 60:.1f} min"
    )
    # Opacus's per-model loop on model 0's records, same q, steps, σ, C (SGD; time only)
    x0, y0 = X[rows[0]], y[rows[0]]
    batch = max(1, round(plan.sample_rate * len(rows[0])))
    epochs_equiv = max(1, round(plan.steps * batch / len(rows[0])))
    t0, done = time.perf_counter(), 0
    while time.perf_counter() - t0 < args.opacus_budget_s and done < per_job:
        train_opacus(
            x0,
            y0,
            x0.shape[1],
            exp["model"].get("width", 128),
            batch,
            epochs_equiv,
            plan.noise_multiplier,
            plan.max_grad_norm,
            0.1,
            device,
            seed=done,
        )
        done += 1
    t_op = (time.perf_counter() - t0) / done
    print(
        f"Opacus loop: {t_op:.2f} s/model ({done} model(s)); vmap trainer: {med / per_job:.3f} s/model; "
        f"ratio {t_op / (med / per_job):.1f}x"
    )


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", help="time a preset's DP experiment with the workflow's trainer (see above)")
    ap.add_argument("--experiment", default="dp_rec_eps10")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--jobs", type=int, default=2, help="shards trained in parallel (for the extrapolation)")
    ap.add_argument("--models", type=int, default=50)
    ap.add_argument("--records", type=int, default=800)
    ap.add_argument("--features", type=int, default=20)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--batch", type=int, default=64, help="nominal batch; q = 1/ceil(records/batch) as Opacus")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--epsilon", type=float, default=8.0)
    ap.add_argument("--clip", type=float, default=1.0)
    ap.add_argument("--lr", type=float, default=0.5)
    ap.add_argument(
        "--opacus-budget-s",
        type=float,
        default=90.0,
        help="stop the Opacus loop after this many seconds (per-model time is still exact)",
    )
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="CPU threads for both methods (1 avoids OpenMP oversubscription on shared machines)",
    )
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message="Secure RNG turned off")
    warnings.filterwarnings("ignore", message="Full backward hook")
    warnings.filterwarnings("ignore", message="Optimal order is the")
    if args.preset:
        return preset_mode(args)

    device = torch.device(args.device)
    gen = torch.Generator().manual_seed(0)
    x, y, xt, yt = make_data(args.models, args.records, args.features, gen)
    batches_per_epoch = -(-args.records // args.batch)
    q = 1.0 / batches_per_epoch  # what Opacus's DPDataLoader uses
    steps = args.epochs * batches_per_epoch
    delta = 1.0 / args.records
    sigma = accounting.noise_multiplier_for(args.epsilon, delta, q, steps)
    print(
        f"device={device} threads={torch.get_num_threads()} models={args.models} records/model={args.records} "
        f"features={args.features} MLP 2x{args.width} epochs={args.epochs} sample_rate={q:.4f} "
        f"(expected batch {q * args.records:.1f}) steps={steps} eps={args.epsilon} delta={delta:.2e} "
        f"sigma={sigma:.4f} clip={args.clip}"
    )

    # one-off warm-up of both code paths (lazy initialisation), not timed
    train_vmap(x[:2], y[:2], args.features, args.width, q, 2, sigma, args.clip, args.lr, device, seed=0)
    train_opacus(x[0], y[0], args.features, args.width, args.batch, 1, sigma, args.clip, args.lr, device, seed=0)

    t0 = time.perf_counter()
    params, buffers, base = train_vmap(
        x, y, args.features, args.width, q, steps, sigma, args.clip, args.lr, device, seed=1
    )
    t_vmap = time.perf_counter() - t0
    acc_vmap = vmap_accuracy(params, buffers, base, xt.to(device), yt.to(device))
    print(f"vmap ensemble : {t_vmap:8.2f} s total, {t_vmap / args.models:.4f} s/model, mean test acc {acc_vmap:.3f}")

    t0 = time.perf_counter()
    accs, done = [], 0
    for m in range(args.models):
        model = train_opacus(
            x[m],
            y[m],
            args.features,
            args.width,
            args.batch,
            args.epochs,
            sigma,
            args.clip,
            args.lr,
            device,
            seed=100 + m,
        )
        with torch.no_grad():
            accs.append((model(xt.to(device)).argmax(-1).cpu() == yt).float().mean().item())
        done += 1
        if time.perf_counter() - t0 > args.opacus_budget_s:
            break
    t_opacus = time.perf_counter() - t0
    print(
        f"Opacus loop   : {t_opacus:8.2f} s for {done} model(s), {t_opacus / done:.4f} s/model, "
        f"mean test acc {sum(accs) / len(accs):.3f}"
    )
    print(f"speed-up (Opacus s/model ÷ vmap s/model): {(t_opacus / done) / (t_vmap / args.models):.1f}x")


if __name__ == "__main__":
    main()
