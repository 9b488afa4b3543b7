"""Tests for mia_audit.train.accounting: accounting, ensemble DP-SGD and the MIA AUC bound."""

import math

import numpy as np
import pytest
import torch
from scipy import integrate
from sklearn.metrics import roc_auc_score
from torch import nn
from torch.func import stack_module_state

from mia_audit.dp import bounds, violations
from mia_audit.train import accounting
from mia_audit.train import dp_gradients as train_dp_gradients

# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


def mlp(d_in=5, width=8, d_out=2, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d_in, width), nn.Tanh(), nn.Linear(width, d_out))


def stacked(models):
    params, _ = stack_module_state(models)
    return {k: v.detach() for k, v in params.items()}


def flat_norm(grads):
    return torch.sqrt(sum(g.pow(2).sum() for g in grads))


# ---------------------------------------------------------------------------
# validation and accounting
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("eps", [0, -1.0, float("nan"), "abc", "-inf"])
def test_validate_rejects_bad_epsilon(eps):
    with pytest.raises(ValueError, match=r"dp\.epsilon.*" + (r"nan" if eps != eps else "")):
        accounting.validate_dp(eps, 1e-5, 100)


@pytest.mark.parametrize("delta", [0, -1e-5, 1.0, 2.0, float("nan")])
def test_validate_rejects_bad_delta(delta):
    with pytest.raises(ValueError, match=r"dp\.delta.*" + re_escape(repr(delta))):
        accounting.validate_dp(1.0, delta, 100)


def re_escape(s):
    import re

    return re.escape(s)


def test_validate_defaults_and_inf():
    assert accounting.validate_dp(2, None, 400) == (2.0, 1 / 400)
    assert accounting.validate_dp("inf", 1e-5, 10) == (math.inf, 1e-5)
    assert accounting.validate_dp(float("inf"), None, 10)[0] == math.inf
    assert accounting.validate_dp(1000, 1e-5)[0] == 1000.0
    with pytest.raises(ValueError, match=r"dp\.delta"):
        accounting.validate_dp(1.0, None, None)


@pytest.mark.parametrize("eps", [1000.0001, 1e4, 1e12])
def test_huge_epsilon_is_refused_before_any_work_with_the_advice_to_write_inf(eps):
    with pytest.raises(ValueError, match=r"dp\.epsilon = .* is above 1000.*dp\.epsilon: inf"):
        accounting.validate_dp(eps, 1e-5, 100)


@pytest.mark.parametrize("accountant", ["pld", "rdp"])
@pytest.mark.parametrize("eps", [0.5, 4.0])
def test_noise_multiplier_round_trip(eps, accountant):
    q, steps, delta = 0.1, 50, 1e-4
    sigma = accounting.noise_multiplier_for(eps, delta, q, steps, accountant)
    got = accounting.achieved_epsilon(sigma, q, steps, delta, accountant, epsilon_scale=eps)
    assert got <= eps
    assert got >= 0.95 * eps
    # a little less noise must overspend the budget (the search is not arbitrarily loose)
    assert accounting.achieved_epsilon(0.97 * sigma, q, steps, delta, accountant, epsilon_scale=eps) > eps


def test_pld_calibration_against_the_gaussian_mechanism_in_closed_form():
    # one step without subsampling is the Gaussian mechanism; its exact (ε, δ) curve is
    # δ(ε) = Φ(−εσ + 1/(2σ)) − e^ε Φ(−εσ − 1/(2σ)) (Balle & Wang 2018), independent of dp-accounting
    from scipy.optimize import brentq
    from scipy.stats import norm

    eps, delta = 1.0, 1e-5

    def delta_of(sigma):
        return norm.cdf(-eps * sigma + 0.5 / sigma) - math.exp(eps) * norm.cdf(-eps * sigma - 0.5 / sigma)

    exact = brentq(lambda s: delta_of(s) - delta, 0.5, 50.0, xtol=1e-10)  # 3.73
    sigma = accounting.noise_multiplier_for(eps, delta, 1.0, 1, "pld")
    assert exact <= sigma <= exact * 1.01  # pessimistic, within the 1 % tolerance
    assert accounting.noise_multiplier_for(eps, delta, 1.0, 1, "rdp") > sigma  # RDP asks for more noise


def test_pld_needs_less_noise_than_rdp_on_a_dp_sgd_run():
    q, steps, delta = 64 / 780, 366, 1e-5
    for eps, saving in ((1.0, 0.06), (10.0, 0.03)):
        pld = accounting.noise_multiplier_for(eps, delta, q, steps, "pld")
        rdp = accounting.noise_multiplier_for(eps, delta, q, steps, "rdp")
        assert pld < (1 - saving) * rdp
        # each σ meets its own accountant's budget; PLD's σ overspends by RDP's reckoning
        assert accounting.achieved_epsilon(rdp, q, steps, delta, "pld", epsilon_scale=eps) < eps
        assert accounting.achieved_epsilon(pld, q, steps, delta, "rdp") > eps


def test_pld_refuses_where_its_numerics_overflow():
    with pytest.raises(ValueError, match=r"dp\.epsilon = 1000\.0 is above 500.*dp\.accountant: rdp"):
        accounting.noise_multiplier_for(1000.0, 1e-5, 0.08, 100, "pld")


def test_large_epsilon_works_and_is_tighter_than_default_grid():
    from opacus.accountants.utils import get_noise_multiplier

    q, steps, delta = 0.08, 100, 1 / 800
    sigma = accounting.noise_multiplier_for(1000.0, delta, q, steps, "rdp")
    got = accounting.achieved_epsilon(sigma, q, steps, delta, "rdp")
    assert 950 <= got <= 1000
    with pytest.warns(UserWarning):  # Opacus's default grid hits its smallest order
        default = get_noise_multiplier(
            target_epsilon=1000.0, target_delta=delta, sample_rate=q, steps=steps, epsilon_tolerance=10
        )
    assert sigma < default
    assert accounting.noise_multiplier_for(math.inf, delta, q, steps) == 0.0
    assert accounting.achieved_epsilon(0.0, q, steps, delta) == math.inf


def test_unreachable_epsilon_errors():
    with pytest.raises(ValueError, match=r"dp\.epsilon = 0\.001.*raise dp\.epsilon"):
        accounting.noise_multiplier_for(1e-3, 1e-6, 0.5, 100, "rdp")
    with pytest.raises(ValueError, match=r"dp\.accountant"):
        accounting.noise_multiplier_for(1.0, 1e-5, 0.1, 10, accountant="moments")
    with pytest.raises(ValueError, match=r"dp\.epsilon = 1000\.0.*'rdp'"):
        accounting.noise_multiplier_for(1000.0, 1e-5, 0.1, 10, accountant="prv")


def test_matches_opacus_privacy_engine():
    from opacus import PrivacyEngine

    torch.manual_seed(0)
    n, batch, epochs, eps, delta = 40, 8, 2, 3.0, 1e-3
    xs, ys = torch.randn(n, 5), torch.randint(0, 2, (n,))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(xs, ys), batch_size=batch)
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    engine = PrivacyEngine(accountant="rdp")
    model, opt, loader = engine.make_private_with_epsilon(
        module=model,
        optimizer=opt,
        data_loader=loader,
        target_epsilon=eps,
        target_delta=delta,
        epochs=epochs,
        max_grad_norm=1.0,
    )
    for _ in range(epochs):
        for xb, yb in loader:
            opt.zero_grad()
            if len(xb):
                nn.functional.cross_entropy(model(xb), yb).backward()
            opt.step()
    q = 1 / len(loader)
    steps = epochs * len(loader)
    reported = engine.get_epsilon(delta)
    got = accounting.achieved_epsilon(opt.noise_multiplier, q, steps, delta, "rdp")
    assert got == pytest.approx(reported, rel=1e-9)
    sigma = accounting.noise_multiplier_for(eps, delta, q, steps, "rdp")
    assert sigma == pytest.approx(opt.noise_multiplier, rel=0.05)
    assert accounting.achieved_epsilon(sigma, q, steps, delta, "rdp") == pytest.approx(reported, rel=0.05)


# ---------------------------------------------------------------------------
# DP-SGD core
# ---------------------------------------------------------------------------


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("patients", [False, True])
def test_no_noise_huge_clip_equals_plain_mean_gradient(device, patients):
    M, B, d = 3, 7, 5
    models = [mlp(seed=s).to(device) for s in range(M)]
    params = stacked(models)
    torch.manual_seed(1)
    x, y = torch.randn(M, B, d, device=device), torch.randint(0, 2, (M, B), device=device)
    unit = torch.arange(B, device=device).repeat(M, 1)
    unit[0, 5:] = -1  # padding
    unit[2, 2:] = -1
    if patients:
        unit[1, 3] = unit[1, 4] = unit[1, 0] = 2  # rows of one patient share a unit
    expected = torch.tensor([4.0, 6.0, 2.5], device=device)
    out = train_dp_gradients.dp_gradients(
        train_dp_gradients.sample_loss_fn(models[0]), params, x, y, unit, 1e6, 0.0, expected
    )
    for m, model in enumerate(models):
        model.zero_grad()
        keep = unit[m] >= 0
        loss = nn.functional.cross_entropy(model(x[m][keep]), y[m][keep], reduction="sum") / expected[m]
        loss.backward()
        for name, p in model.named_parameters():
            torch.testing.assert_close(out[name][m], p.grad, rtol=1e-5, atol=1e-6)


def test_patient_level_clipping_matches_autograd_by_hand():
    M, B, d, C, E = 2, 8, 5, 0.05, 3.0
    models = [mlp(seed=10 + s) for s in range(M)]
    params = stacked(models)
    torch.manual_seed(5)
    x, y = torch.randn(M, B, d) * 2, torch.randint(0, 2, (M, B))
    unit = torch.tensor([[7, 3, 7, 7, 40, 3, -1, -1], [1, 2, 1, 5, 5, 5, 5, 0]])
    out = train_dp_gradients.dp_gradients(train_dp_gradients.sample_loss_fn(models[0]), params, x, y, unit, C, 0.0, E)
    for m, model in enumerate(models):
        total = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
        for u in unit[m][unit[m] >= 0].unique():
            model.zero_grad()
            rows = unit[m] == u
            nn.functional.cross_entropy(model(x[m][rows]), y[m][rows], reduction="sum").backward()
            g = {n: p.grad.clone() for n, p in model.named_parameters()}
            scale = min(1.0, C / (flat_norm(g.values()).item() + 1e-6))
            assert scale < 1  # clipping is active for every patient
            for n in total:
                total[n] += scale * g[n]
        for n in total:
            torch.testing.assert_close(out[n][m], total[n] / E, rtol=1e-4, atol=1e-7)


def test_unit_sums_index_add_equals_matmul_and_a_loop():
    gen = torch.Generator().manual_seed(5)
    M, B, P = 3, 12, 7
    flat = torch.randn(M, B, P, generator=gen, dtype=torch.float64)
    slot = torch.randint(0, 4, (M, B), generator=gen)
    valid = torch.rand(M, B, generator=gen) > 0.25
    flat[~valid] = float("nan")  # a padding row's value never reaches a unit
    index_add = train_dp_gradients.unit_sums(flat, slot, valid, "index_add")
    matmul = train_dp_gradients.unit_sums(flat, slot, valid, "matmul")
    expected = torch.zeros(M, B, P, dtype=torch.float64)
    for m in range(M):
        for i in range(B):
            if valid[m, i]:
                expected[m, slot[m, i]] += flat[m, i]
    n_slots = int(slot[valid].max()) + 1
    assert index_add.shape == matmul.shape == (M, n_slots, P)
    torch.testing.assert_close(index_add, expected[:, :n_slots])
    torch.testing.assert_close(matmul, expected[:, :n_slots])
    assert train_dp_gradients.unit_sums(flat[:, :0], slot[:, :0], valid[:, :0]).shape == (M, 0, P)
    with pytest.raises(ValueError, match="method"):
        train_dp_gradients.unit_sums(flat, slot, valid, "loop")


def test_patient_level_clipping_bounds_duplicated_patient():
    model = mlp()
    params = stacked([model])
    torch.manual_seed(2)
    x1, y1 = torch.randn(1, 5) * 3, torch.tensor([1])
    x, y = x1.repeat(50, 1)[None], y1.repeat(50)[None]
    C = 0.01
    f = train_dp_gradients.sample_loss_fn(model)
    g_single = train_dp_gradients.dp_gradients(
        f, params, x[:, :1], y[:, :1], torch.zeros(1, 1, dtype=torch.long), 1e6, 0.0, 1.0
    )
    assert flat_norm(g_single.values()) > 10 * C  # clipping is active
    patient = train_dp_gradients.dp_gradients(f, params, x, y, torch.zeros(1, 50, dtype=torch.long), C, 0.0, 1.0)
    record = train_dp_gradients.dp_gradients(f, params, x, y, torch.arange(50)[None], C, 0.0, 1.0)
    n_patient, n_record = flat_norm(patient.values()), flat_norm(record.values())
    assert n_patient <= C * (1 + 1e-6)
    assert n_record == pytest.approx(50 * C, rel=1e-4)


def test_matches_opacus_dp_optimizer_record_level():
    from opacus import GradSampleModule
    from opacus.optimizers import DPOptimizer

    torch.manual_seed(3)
    B, C, E = 12, 0.5, 9.6
    x, y = torch.randn(B, 5) * 2, torch.randint(0, 2, (B,))
    model = mlp(seed=4)
    params = stacked([model])
    ours = train_dp_gradients.dp_gradients(
        train_dp_gradients.sample_loss_fn(model), params, x[None], y[None], torch.arange(B)[None], C, 0.0, E
    )

    gsm = GradSampleModule(model, loss_reduction="mean")
    opt = DPOptimizer(
        torch.optim.SGD(gsm.parameters(), lr=0.0),
        noise_multiplier=0.0,
        max_grad_norm=C,
        expected_batch_size=E,
        loss_reduction="mean",
    )
    opt.zero_grad()
    nn.functional.cross_entropy(gsm(x), y).backward()
    # by hand from Opacus's per-sample gradients
    gs = {n: p.grad_sample for n, p in model.named_parameters()}
    norms = torch.sqrt(sum(g.reshape(B, -1).pow(2).sum(1) for g in gs.values()))
    factor = (C / (norms + 1e-6)).clamp(max=1)
    opt.step()
    for name, p in model.named_parameters():
        hand = torch.einsum("i,i...->...", factor, gs[name]) / E
        torch.testing.assert_close(ours[name][0], hand, rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(ours[name][0], p.grad, rtol=1e-5, atol=1e-7)


def test_noise_scale_and_independence():
    M, P = 4, 2000
    model = nn.Linear(P, 1, bias=False)
    nn.init.zeros_(model.weight)
    params = stacked([model] * M)
    x, y = torch.zeros(M, 3, P), torch.zeros(M, 3, 1)
    f = train_dp_gradients.sample_loss_fn(model, loss=nn.functional.mse_loss)
    unit = torch.arange(3).repeat(M, 1)
    gen = torch.Generator().manual_seed(0)
    out = train_dp_gradients.dp_gradients(f, params, x, y, unit, 2.0, 1.5, 4.0, generator=gen)["weight"]
    sd = out.reshape(M, -1).std(dim=1)
    torch.testing.assert_close(sd, torch.full((M,), 1.5 * 2.0 / 4.0), rtol=0.06, atol=0)
    corr = torch.corrcoef(out.reshape(M, -1))
    assert corr.fill_diagonal_(0).abs().max() < 0.1
    again = train_dp_gradients.dp_gradients(
        f, params, x, y, unit, 2.0, 1.5, 4.0, generator=torch.Generator().manual_seed(0)
    )
    torch.testing.assert_close(again["weight"], out)


def test_poisson_batches_edge_cases():
    gen = torch.Generator().manual_seed(0)
    rows, uidx = train_dp_gradients.poisson_batches(torch.zeros(3, 0, dtype=torch.long), 0.5, gen)
    assert rows.shape == (3, 1) and (rows == -1).all() and (uidx == -1).all()
    units = torch.tensor([[4, 4, 9], [-1, -1, -1]])
    rows, uidx = train_dp_gradients.poisson_batches(units, 1.0, gen, min_size=5)
    assert rows.tolist() == [[0, 1, 2, -1, -1], [-1] * 5]
    assert uidx.tolist() == [[4, 4, 9, -1, -1], [-1] * 5]
    with pytest.raises(ValueError, match="sample_rate"):
        train_dp_gradients.poisson_batches(units, 0.0, gen)


def test_poisson_batches_structure_and_rate():
    # model 0: 6 records of patients 0,0,1,2,2,2; model 1: 3 records of patients 5,7,7
    units = torch.tensor([[0, 0, 1, 2, 2, 2], [5, 7, 7, -1, -1, -1]])
    gen = torch.Generator().manual_seed(0)
    q, n = 0.3, 3000
    hits = np.zeros((2, 6))
    for _ in range(n):
        rows, uidx = train_dp_gradients.poisson_batches(units, q, gen)
        assert rows.shape == uidx.shape and rows.shape[1] >= 1
        for m in range(2):
            r = rows[m][rows[m] >= 0]
            assert torch.equal(uidx[m][: len(r)], units[m][r])
            assert (uidx[m][len(r) :] == -1).all() and (rows[m][len(r) :] == -1).all()
            assert torch.all(r[1:] > r[:-1])  # original order
            chosen = set(units[m][r].tolist())
            whole = [i for i in range(6) if units[m, i].item() in chosen]
            assert sorted(r.tolist()) == whole  # a patient comes with all its records
            hits[m, r.numpy()] += 1
    rate = hits / n
    se = math.sqrt(q * (1 - q) / n)
    assert np.all(np.abs(rate[0] - q) < 4 * se)
    assert np.all(np.abs(rate[1, :3] - q) < 4 * se) and np.all(rate[1, 3:] == 0)
    assert rate[0, 0] == rate[0, 1] and rate[1, 1] == rate[1, 2]


# ---------------------------------------------------------------------------
# the bound
# ---------------------------------------------------------------------------


def tradeoff(alpha, eps, delta):
    return np.maximum.reduce(
        [np.zeros_like(alpha), 1 - delta - np.exp(eps) * alpha, np.exp(-eps) * (1 - delta - alpha)]
    )


@pytest.mark.parametrize("eps", [0.0, 0.1, 1.0, 3.0, 10.0])
@pytest.mark.parametrize("delta", [0.0, 1e-5, 0.01, 0.3])
def test_bound_closed_form_vs_quadrature(eps, delta):
    brk = sorted({(1 - delta) / (1 + math.exp(eps)), 1 - delta})
    area, _ = integrate.quad(lambda a: 1 - tradeoff(np.array(a), eps, delta), 0, 1, points=brk, epsabs=1e-12)
    assert bounds.max_auc_bound(eps, delta) == pytest.approx(area, abs=1e-9)


def test_bound_known_points_and_monotone():
    assert bounds.max_auc_bound(0.0, 0.0) == 0.5
    assert bounds.max_auc_bound(math.inf, 0.0) == 1.0
    assert bounds.max_auc_bound(50.0, 0.0) == pytest.approx(1.0, abs=1e-15)
    assert bounds.max_auc_bound(0.0, 1.0) == 1.0
    eps = np.concatenate([[0], np.geomspace(1e-3, 40, 60)])
    delta = np.concatenate([[0], np.geomspace(1e-9, 0.9, 30)])
    grid = bounds.max_auc_bound(eps[:, None], delta[None, :])
    assert grid.shape == (61, 31)
    assert np.all(np.diff(grid, axis=0) >= 0) and np.all(np.diff(grid, axis=1) >= 0)
    assert np.all((grid >= 0.5) & (grid <= 1))


def test_bound_is_attained_by_randomized_response():
    # ε-DP randomised response on the membership bit: the best attack's AUC equals the bound
    rng = np.random.default_rng(0)
    eps, n = 1.2, 200_000
    member = rng.integers(0, 2, n)
    keep = rng.random(n) < math.exp(eps) / (1 + math.exp(eps))
    out = np.where(keep, member, 1 - member)
    auc = roc_auc_score(member, out)
    assert auc == pytest.approx(bounds.max_auc_bound(eps, 0.0), abs=4e-3)
    # the Laplace mechanism with the same ε stays below the bound
    lap = member + rng.laplace(scale=1 / eps, size=n)
    assert roc_auc_score(member, lap) < bounds.max_auc_bound(eps, 0.0)


def test_group_privacy():
    e, d = bounds.group_privacy(0.5, 1e-6, 1)
    assert (e, d) == pytest.approx((0.5, 1e-6))
    e, d = bounds.group_privacy(0.5, 1e-6, np.array([1, 2, 4]))
    np.testing.assert_allclose(e, [0.5, 1.0, 2.0])
    np.testing.assert_allclose(d, [1e-6, 2 * math.exp(0.5) * 1e-6, 4 * math.exp(1.5) * 1e-6])
    e, d = bounds.group_privacy(100.0, 1e-5, 20)
    assert d == 1.0
    e, d = bounds.group_privacy(800.0, 0.0, 5)
    assert d == 0.0
    with pytest.raises(ValueError, match="k"):
        bounds.group_privacy(1.0, 1e-5, 0)


def test_patient_bounds():
    k = np.array([1, 2, 5, 50])
    pat = bounds.patient_bounds(1.0, 1e-5, k, "patient")
    np.testing.assert_allclose(pat, bounds.max_auc_bound(1.0, 1e-5))
    rec = bounds.patient_bounds(1.0, 1e-5, k, "record")
    assert rec[0] == pytest.approx(pat[0])
    assert np.all(np.diff(rec) > 0) and rec[-1] == 1.0
    ek, dk = bounds.group_privacy(1.0, 1e-5, 5)
    assert rec[2] == pytest.approx(bounds.max_auc_bound(ek, dk))
    np.testing.assert_array_equal(bounds.patient_bounds(math.inf, 1e-5, k, "record"), 1.0)
    np.testing.assert_array_equal(bounds.patient_bounds(math.inf, 1e-5, k, "patient"), 1.0)
    with pytest.raises(ValueError, match=r"dp\.level"):
        bounds.patient_bounds(1.0, 1e-5, k, "visit")


# ---------------------------------------------------------------------------
# the bound from the whole privacy profile
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(("eps", "delta"), [(0.0, 0.0), (0.5, 1e-5), (2.0, 0.01), (8.0, 0.2)])
def test_tradeoff_bound_of_one_pair_is_the_closed_form(eps, delta):
    assert bounds.tradeoff_auc_bound([eps], [delta]) == pytest.approx(bounds.max_auc_bound(eps, delta), abs=1e-12)


def test_tradeoff_bound_is_the_area_of_the_envelope():
    # the exact hull against brute-force integration of the envelope on a fine grid
    rng = np.random.default_rng(3)
    eps = np.sort(rng.uniform(0, 6, 25))
    d1 = np.sort(rng.uniform(0, 0.3, 25))[::-1] * np.exp(-eps)
    d2 = d1 * rng.uniform(0.2, 1.0, 25)
    alpha = np.linspace(0, 1, 400_001)
    for rev in (None, d2):
        f = np.zeros_like(alpha)
        for e, a, b in zip(eps, d1, d1 if rev is None else rev, strict=True):
            f = np.maximum(f, np.maximum(1 - a - np.exp(e) * alpha, np.exp(-e) * (1 - b - alpha)))
        assert bounds.tradeoff_auc_bound(eps, d1, rev) == pytest.approx(1 - integrate.trapezoid(f, alpha), abs=1e-7)
    # more pairs can only tighten the bound; none usable gives 1
    assert bounds.tradeoff_auc_bound(eps, d1) <= bounds.tradeoff_auc_bound(eps[::3], d1[::3])
    assert bounds.tradeoff_auc_bound([np.nan, 80.0], [0.1, 0.0]) == 1.0


def test_profile_bound_reference_values():
    # the table: q = 64/780, 1,300 steps, δ = 1/780, σ from an RDP calibration
    from opacus.accountants import RDPAccountant

    def rdp_epsilon(sigma):  # Opacus's RDP accountant with its default orders
        acc = RDPAccountant()
        acc.history = [(sigma, q, steps)]
        return acc.get_epsilon(delta)

    q, steps, delta = 64 / 780, 1300, 1 / 780
    for target, sigma, tight, single in [(1, 8.4766, 0.598, 0.732), (10, 1.4648, 0.93997, 0.99995)]:
        # σ is the calibration: it meets the target and 1 % less noise does not
        assert rdp_epsilon(sigma) <= target < rdp_epsilon(0.99 * sigma)
        bound = bounds.profile_auc_bound(sigma, q, steps)
        assert bound == pytest.approx(tight, abs=0.01)
        assert bounds.max_auc_bound(target, delta) == pytest.approx(single, abs=5e-4)
        assert bound < bounds.max_auc_bound(rdp_epsilon(sigma), delta)
    assert bounds.profile_auc_bound(0.0, q, steps) == 1.0
    with pytest.raises(ValueError, match="group_size"):
        bounds.profile_auc_bound(1.0, q, steps, 0)


def test_group_bound_is_exact_for_the_gaussian_mechanism():
    # no subsampling, one step: a patient with k records moves the sum by k, AUC Φ(k/(σ√2))
    from scipy.stats import norm

    sigma, k = 4.84, 10
    exact = norm.cdf(k / (sigma * math.sqrt(2)))  # 0.928
    bound = bounds.profile_auc_bound(sigma, 1.0, 1, k)
    assert exact - 1e-9 <= bound <= exact + 2e-3
    # the classic group statement from ε = 1, δ = 1e-5 allows anything
    ek, dk = bounds.group_privacy(1.0, 1e-5, k)
    assert bounds.max_auc_bound(ek, dk) > 0.9999


def test_group_bound_matches_a_simulated_dp_sgd_run():
    # Poisson sampling of each of k aligned records, T noisy steps, scored by the exact
    # likelihood ratio: the most powerful attack reaches the bound, and no further
    from mia_audit.dp import simulation

    sigma, q, steps = 2.0, 0.3, 20
    rng = np.random.default_rng(11)
    for k in (1, 3):
        auc, se = simulation.optimal_attack_auc(k, sigma, q, steps, 10_000, rng)
        bound = bounds.profile_auc_bound(sigma, q, steps, k)
        assert auc - 3.5 * se <= bound <= auc + 3.5 * se + 2e-3
    assert bounds.profile_auc_bound(sigma, q, steps, 3) > bounds.profile_auc_bound(sigma, q, steps, 1)


def test_profile_bounds_per_group_size_and_saturation():
    sigma, q, steps = 2.0, 0.3, 20  # cached by the test above when run together
    got = bounds.profile_auc_bounds(sigma, q, steps, np.array([[3, 1], [1, 3]]))
    one, three = bounds.profile_auc_bound(sigma, q, steps, 1), bounds.profile_auc_bound(sigma, q, steps, 3)
    np.testing.assert_array_equal(got, [[three, one], [one, three]])
    # almost no noise: one unit is already saturated, larger groups are 1 without computing
    weak = bounds.profile_auc_bounds(0.25, 0.5, 50, [1, 2, 50])
    assert weak[0] >= bounds.AUC_SATURATED and weak[1] == weak[2] == 1.0
    with pytest.raises(ValueError, match="group sizes"):
        bounds.profile_auc_bounds(sigma, q, steps, [0, 1])


# ---------------------------------------------------------------------------
# violations
# ---------------------------------------------------------------------------


def test_binormal_pvalues_definition_and_edges():
    from scipy.stats import nct, norm

    p = violations.binormal_pvalues(1.0, 0.0, 1.0, 2.0, 10, 6, 0.6)
    t = 1.0 / math.sqrt(1 / 10 + 4 / 6)
    assert p == pytest.approx(nct.sf(t, 5, norm.ppf(0.6) * math.sqrt(10)), rel=1e-12)
    got = violations.binormal_pvalues(
        [5.0, 0.0, 1.0, 1.0, 1.0, np.nan],
        0.0,
        [1.0, 1.0, 0.0, 1.0, 1.0, 1.0],
        [1.0, 1.0, 0.0, 1.0, 1.0, 1.0],
        [20, 20, 5, 1, 20, 20],
        20,
        [0.6, 0.6, 0.6, 0.6, 1.0, 0.6],
    )
    assert got[0] < 1e-6 < 0.5 < got[1]  # far above the bound; well below it
    assert got[2] == 0.0  # a deterministic separation (zero variance) exceeds any bound < 1
    assert np.isnan(got[3]) and got[4] == 1.0 and np.isnan(got[5])
    # more models, more evidence for the same excess
    assert violations.binormal_pvalues(0.9, 0.0, 1.0, 1.0, 50, 50, 0.6) < violations.binormal_pvalues(
        0.9, 0.0, 1.0, 1.0, 8, 8, 0.6
    )


@pytest.mark.parametrize(("n", "ratio"), [(4, 1.0), (4, 4.0), (20, 2.0)])
def test_binormal_test_keeps_its_level_at_the_bound_for_normal_signals(n, ratio):
    # normal signals whose AUC equals the bound exactly (the worst case of H0)
    from scipy.stats import norm

    rng = np.random.default_rng(n)
    bound, reps = 0.75, 40_000
    mu = norm.ppf(bound) * math.sqrt(1 + ratio**2)
    xi, xo = rng.normal(mu, ratio, (reps, n)), rng.normal(0.0, 1.0, (reps, n))
    p = violations.binormal_pvalues(xi.mean(1), xo.mean(1), xi.std(1, ddof=1), xo.std(1, ddof=1), n, n, bound)
    for level in (0.05, 0.01):
        assert np.mean(p <= level) <= level + 3 * math.sqrt(level / reps)
    # the old rule (AUC − 1.96·SE above the bound) does not keep its 2.5 %
    from mia_audit.audit import stats

    auc = stats.binormal_auc(xi.mean(1), xo.mean(1), xi.std(1, ddof=1), xo.std(1, ddof=1))
    se = stats.binormal_auc_se_delta(xi.mean(1), xo.mean(1), xi.std(1, ddof=1), xo.std(1, ddof=1), n, n)
    if n == 4:
        assert np.mean(auc - 1.96 * se > bound) > 0.05


def test_holm_adjust_by_hand_and_against_statsmodels():
    from statsmodels.stats.multitest import multipletests

    got = violations.holm_adjust([0.01, 0.04, 0.03, np.nan])
    np.testing.assert_allclose(got, [0.03, 0.06, 0.06, np.nan])
    assert violations.holm_adjust([]).size == 0
    p = np.random.default_rng(0).beta(0.3, 1.0, 500)
    p[::7] = p[3]  # ties
    np.testing.assert_allclose(violations.holm_adjust(p), multipletests(p, method="holm")[1], rtol=1e-12)


# ---------------------------------------------------------------------------
# the MLP path without per-sample gradients (ghost clipping)
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("patients", [False, True])
@pytest.mark.parametrize("clip", [0.05, 1e6])
def test_linear_chain_gradients_equal_per_sample_gradients(device, patients, clip):
    """Same clipped sums and the same noise draws as the vmap path, on an MLP of the
    workflow's own class (ReLU) and on a Tanh stack, with padding and shared units."""
    from mia_audit.train.families import MLP

    M, B, d = 4, 9, 5
    for build in (lambda s: MLP(d, 3, depth=2, width=6), lambda s: mlp(d_in=d, width=7, d_out=3)):
        models = []
        for s in range(M):
            torch.manual_seed(20 + s)
            models.append(build(s).to(device))
        params = stacked(models)
        torch.manual_seed(3)
        x, y = torch.randn(M, B, d, device=device) * 2, torch.randint(0, 3, (M, B), device=device)
        unit = torch.arange(B, device=device).repeat(M, 1)
        unit[0, 6:] = -1
        unit[3, 1:] = -1
        if patients:
            unit[1] = torch.tensor([4, 4, 1, 4, 9, 1, 2, 2, -1])
            unit[2] = torch.tensor([0, 0, 0, 0, 0, 0, 0, 5, 5])
        E = torch.tensor([3.0, 5.0, 2.0, 1.5], device=device)
        chain = train_dp_gradients.linear_chain(models[0])
        assert chain is not None
        ref = train_dp_gradients.dp_gradients(
            train_dp_gradients.sample_loss_fn(models[0]),
            params,
            x,
            y,
            unit,
            clip,
            0.7,
            E,
            generator=torch.Generator(device).manual_seed(1),
        )

        def rows(out, yy):
            return nn.functional.cross_entropy(out.flatten(0, 1), yy.flatten(), reduction="none").view(yy.shape)

        fast, losses = train_dp_gradients.dp_gradients_linear(
            chain, params, x, y, unit, rows, clip, 0.7, E, generator=torch.Generator(device).manual_seed(1)
        )
        assert list(fast) == list(ref)
        for name in ref:
            torch.testing.assert_close(fast[name], ref[name], rtol=1e-4, atol=1e-6)
        assert losses.shape == (M, B)


def test_linear_chain_refuses_what_it_cannot_train():
    assert train_dp_gradients.linear_chain(nn.Sequential(nn.Linear(3, 4), nn.Dropout(0.2), nn.Linear(4, 2))) is None
    assert train_dp_gradients.linear_chain(nn.Sequential(nn.Conv1d(1, 2, 3))) is None
    assert train_dp_gradients.linear_chain(nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4), nn.Linear(4, 2))) is None
    chain = train_dp_gradients.linear_chain(
        nn.Sequential(nn.Linear(3, 4), nn.Dropout(0.0), nn.ReLU(), nn.Linear(4, 2, bias=False))
    )
    assert [s[0] for s in chain] == ["linear", "fn", "linear"] and chain[-1][2] is None
