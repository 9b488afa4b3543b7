"""An empirical lower bound on a DP run's privacy loss, from canaries (docs/methods.md,
"Differential privacy: an empirical lower bound").

The accountant gives an upper bound: no attack does better than ε (or than the AUC bound). The
canaries of :mod:`mia_audit.train.canaries` give a lower bound: an attack that does this well
exists, so the run is *not* (ε′, δ)-DP for any ε′ below it. The gap between the two is how
loose the guarantee is for this model and training in practice (it also holds the attack's
limits: it sees the final model only, and input-space canaries are weaker than gradient
canaries; Nasr et al. 2021, 2023).

**The attack.** The models are split at random into two halves (:func:`split_models`). On the
*reference* half each canary's signal φ (the logit-scaled confidence in its label, the mean
over its rows) is fitted by a normal distribution among the models that trained on it and one
among those that did not; each *audit* model is then scored by the likelihood ratio
log N(φ; μ_in, s_in) − log N(φ; μ_out, s_out) (LiRA, Carlini et al. 2022). The reference
half's coins are fixed before the audit half is looked at, so conditional on them the audit
half is an (ε, δ)-DP mechanism of its own coins, and its scores use nothing else.

**ε** (:func:`epsilon_lower_bound`): the one-run audit of Steinke, Nasr & Jagielski (2023,
Thm. 3.1), pooled over every (audit model, canary) coin of one kind: guess *in* for the r/2
highest scores and *out* for the r/2 lowest; if the run is (ε, δ)-DP in each coin, the number
of correct guesses W satisfies, for every v,

    P(W ≥ v) ≤ F(v) + 2mδ · max_{i = 1..m} (F(v − i) − F(v))/i,   F(v) = P(Binomial(r, e^ε/(1 + e^ε)) ≥ v),

with m the number of coins. The lower bound is the largest ε whose p-value is ≤ α, over a
grid of r (Bonferroni over the grid). The coins of one model belong to one training run; the
theorem allows that (it needs only DP in each coin). For canary patients at record level a
coin moves k units, so the bound is on the group's ε (beside the accountant's for the group).

**AUC** (:func:`auc_lower_bound`): per canary, the audit models with LR > 0 guessed in; an
attack with true-positive rate TPR and false-positive rate FPR implies that the most powerful
test's ROC (concave, through (0, 0) and (1, 1)) has AUC ≥ (1 + TPR − FPR)/2. With one-sided
Clopper–Pearson limits on both rates (α/2 each; the audit models are independent runs with
independent coins, so each count is binomial) and Bonferroni over the canaries, the largest
such bound is a lower confidence bound on that canary's AUC: the quantity the run's AUC bound
caps from above.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from mia_audit.dp import bounds
from mia_audit.dp.audit import _vacuous, spec_from_metrics
from mia_audit.train import accounting

#: Guess fractions r/m of the one-run audit (Bonferroni over them).
GUESS_FRACTIONS = (1 / 64, 1 / 32, 1 / 16, 1 / 8, 1 / 4, 1 / 2, 1.0)

#: Columns of ``{dataset}/dp_empirical.tsv``.
COLUMNS = (
    "experiment",
    "level",
    "epsilon_target",
    "canary",
    "canaries",
    "records_per_canary",
    "group_size",
    "audit_models",
    "coins",
    "delta",
    "epsilon_upper",
    "epsilon_lower",
    "guesses",
    "correct",
    "auc_upper",
    "auc_lower",
    "auc_empirical",
    "confidence",
)


def read_shard_canaries(paths) -> dict | None:
    """The canaries of an experiment from its shards' weights metadata (safetensors header,
    JSON only; no tensor is loaded): ``{"kind", "size", "label", "canary", "member" (models,
    canaries) bool, "logits" (models, rows, classes)}``, models in shard order; None when the
    shards have no canaries."""
    import json

    from safetensors import safe_open

    parts = []
    for path in paths:
        with safe_open(str(path), framework="numpy") as f:
            meta = json.loads(f.metadata()["meta"])
        can = (meta.get("dp") or {}).get("canaries")
        if can is None:
            return None
        parts.append(can)
    first = parts[0]
    return {
        "kind": np.asarray(first["kind"]),
        "size": np.asarray(first["size"], dtype=np.int64),
        "label": np.asarray(first["label"], dtype=np.int64),
        "canary": np.asarray(first["canary"], dtype=np.int64),
        "member": np.concatenate([np.asarray(p["member"], dtype=bool) for p in parts]),
        "logits": np.concatenate([np.asarray(p["logits"], dtype=np.float64) for p in parts]),
    }


def canary_signals(can: dict) -> np.ndarray:
    """(models, canaries) φ: the logit-scaled confidence in each canary row's label
    (:func:`mia_audit.query.membership_signal.logit_confidence`), the mean over a canary's rows."""
    import torch

    from mia_audit.query.membership_signal import logit_confidence

    logits = torch.as_tensor(can["logits"])
    labels = torch.as_tensor(can["label"]).expand(logits.shape[:2])
    phi = logit_confidence(logits, labels).numpy()  # (models, rows)
    n = can["kind"].size
    sums = np.zeros((phi.shape[0], n))
    np.add.at(sums.T, can["canary"], phi.T)
    return sums / can["size"][None, :]


def split_models(n_models: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(reference, audit) model indices: a random half each (``SeedSequence([seed, 0xA0D17])``)."""
    perm = np.random.default_rng(np.random.SeedSequence([int(seed), 0xA0D17])).permutation(int(n_models))
    half = n_models // 2
    return np.sort(perm[:half]), np.sort(perm[half:])


def likelihood_ratio_scores(phi: np.ndarray, member: np.ndarray, ref: np.ndarray, aud: np.ndarray) -> np.ndarray:
    """(audit models, canaries) LR scores log N(φ; μ_in, s_in) − log N(φ; μ_out, s_out), the
    normals fitted per canary on the reference models (SD at least 10⁻³ and the pooled SD/10,
    so a side whose models agree exactly still gives a finite score)."""
    from scipy.stats import norm

    x, m = phi[ref], member[ref]
    out = np.zeros((aud.size, phi.shape[1]))
    for c in range(phi.shape[1]):
        xi, xo = x[m[:, c], c], x[~m[:, c], c]
        if xi.size < 2 or xo.size < 2:
            continue
        floor = max(1e-3, np.std(x[:, c]) / 10)
        mi, si = xi.mean(), max(xi.std(ddof=1), floor)
        mo, so = xo.mean(), max(xo.std(ddof=1), floor)
        y = phi[aud, c]
        out[:, c] = norm.logpdf(y, mi, si) - norm.logpdf(y, mo, so)
    return out


def one_run_pvalue(m: int, r: int, v: int, epsilon: float, delta: float) -> float:
    """Steinke, Nasr & Jagielski (2023), Thm. 3.1: the chance of ≥ v correct guesses out of r
    (of m coins) under (ε, δ)-DP in each coin (module docstring)."""
    from scipy.stats import binom

    if v <= 0:
        return 1.0
    p = math.exp(-np.logaddexp(0.0, -epsilon))  # e^ε/(1 + e^ε)
    tail = float(binom.sf(v - 1, r, p))
    if delta <= 0:
        return min(1.0, tail)
    i = np.arange(1, v + 1)
    window = binom.cdf(v - 1, r, p) - binom.cdf(v - i - 1, r, p)  # P(v − i ≤ W' < v)
    return float(min(1.0, tail + 2.0 * m * delta * np.max(window / i)))


def epsilon_lower_bound(scores: np.ndarray, member: np.ndarray, delta: float, alpha: float) -> dict:
    """The one-run lower bound on ε from scores and coins of the audit models (module docstring).

    ``scores``, ``member``: (audit models, canaries). Returns ``{"epsilon_lower", "guesses",
    "correct"}`` for the guess count of the grid :data:`GUESS_FRACTIONS` that gives the
    largest bound at level α/len(grid) (0 when none rejects ε = 0).
    """
    from scipy.optimize import brentq

    s, b = scores.ravel(), member.ravel().astype(bool)
    m = s.size
    order = np.argsort(-s, kind="mergesort")
    level = alpha / len(GUESS_FRACTIONS)
    best = {"epsilon_lower": 0.0, "guesses": 0, "correct": 0}
    for frac in GUESS_FRACTIONS:
        half = max(1, int(frac * m) // 2)
        if 2 * half > m:
            continue
        top, bottom = order[:half], order[m - half :]
        v = int(b[top].sum() + (~b[bottom]).sum())
        r = 2 * half

        def gap(e, r=r, v=v):
            return one_run_pvalue(m, r, v, e, delta) - level

        if gap(0.0) > 0:
            continue
        hi = 1.0
        while gap(hi) <= 0 and hi < 200:
            hi *= 2
        eps = hi if gap(hi) <= 0 else brentq(gap, 0.0, hi, xtol=1e-4)
        if eps > best["epsilon_lower"]:
            best = {"epsilon_lower": float(eps), "guesses": r, "correct": v}
    return best


def auc_lower_bound(scores: np.ndarray, member: np.ndarray, alpha: float) -> float:
    """The largest over canaries of (1 + TPR_low − FPR_high)/2 with one-sided Clopper–Pearson
    limits at α/(2·canaries) each, guessing *in* where the LR score is > 0 (module docstring);
    0.5 when no canary gives more."""
    from scipy.stats import beta

    n_can = scores.shape[1]
    a = alpha / (2.0 * max(n_can, 1))
    best = 0.5
    for c in range(n_can):
        b, guess = member[:, c].astype(bool), scores[:, c] > 0
        n1, n0 = int(b.sum()), int((~b).sum())
        if n1 == 0 or n0 == 0:
            continue
        tp, fp = int((guess & b).sum()), int((guess & ~b).sum())
        tpr_low = beta.ppf(a, tp, n1 - tp + 1) if tp > 0 else 0.0
        fpr_high = beta.ppf(1 - a, fp + 1, n0 - fp) if fp < n0 else 1.0
        best = max(best, (1.0 + tpr_low - fpr_high) / 2.0)
    return float(best)


def _pooled_auc(scores: np.ndarray, member: np.ndarray) -> float:
    from mia_audit.roc import roc_auc

    b = member.ravel().astype(bool)
    return float(roc_auc(b, scores.ravel())) if b.any() and (~b).any() else math.nan


def group_epsilon(spec: dict, group_size: int, delta: float) -> float:
    """The accountant's ε at δ for a group of k units: the run's own accountant for k = 1, the
    mixture-of-Gaussians PLD of :func:`mia_audit.dp.bounds.group_pld` for k > 1 (the largest
    over the runs); inf without noise or above :data:`mia_audit.train.accounting.MAX_EPSILON`."""
    if _vacuous(spec):
        return math.inf
    from mia_audit.dp.audit import epsilon_at

    if int(group_size) == 1:
        return epsilon_at(spec, delta)
    return max(bounds.group_epsilon(sigma, q, t, int(group_size), delta) for sigma, q, t in spec["runs"])


def experiment_rows(
    experiment: str, epsilon_target, metrics: pd.DataFrame, can: dict, alpha: float, seed: int = 0
) -> list[dict]:
    """Rows of :data:`COLUMNS` for one experiment: one per canary kind it has."""
    spec = spec_from_metrics(metrics)
    if spec is None:
        raise ValueError(f"experiment {experiment}: canaries need a DP experiment (dp_* columns in models/metrics.tsv)")
    phi = canary_signals(can)
    member = can["member"]
    if member.shape[0] != len(metrics):
        raise ValueError(
            f"experiment {experiment}: canaries of {member.shape[0]} models but {len(metrics)} models in metrics"
        )
    ref, aud = split_models(member.shape[0], seed)
    scores = likelihood_ratio_scores(phi, member, ref, aud)
    delta = accounting.REFERENCE_DELTA
    rows = []
    for kind in ("record", "patient"):
        cols = np.flatnonzero(can["kind"] == kind)
        if cols.size == 0:
            continue
        size = int(can["size"][cols].max())
        group = size if (kind == "patient" and spec["level"] == "record") else 1
        s, b = scores[:, cols], member[aud][:, cols]
        eps = epsilon_lower_bound(s, b, delta, alpha)
        auc_up = float(bounds.profile_auc_bound(*spec["runs"][0], group)) if not _vacuous(spec) else 1.0
        for run in spec["runs"][1:]:
            auc_up = max(auc_up, bounds.profile_auc_bound(*run, group))
        rows.append(
            {
                "experiment": experiment,
                "level": spec["level"],
                "epsilon_target": str(epsilon_target),
                "canary": kind,
                "canaries": int(cols.size),
                "records_per_canary": size,
                "group_size": group,
                "audit_models": int(aud.size),
                "coins": int(s.size),
                "delta": delta,
                "epsilon_upper": group_epsilon(spec, group, delta),
                "epsilon_lower": eps["epsilon_lower"],
                "guesses": eps["guesses"],
                "correct": eps["correct"],
                "auc_upper": auc_up,
                "auc_lower": auc_lower_bound(s, b, alpha),
                "auc_empirical": _pooled_auc(s, b),
                "confidence": 1.0 - alpha,
            }
        )
    return rows
