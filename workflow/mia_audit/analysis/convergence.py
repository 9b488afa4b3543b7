"""How many target models are enough: the audit's headlines recomputed on nested subsets.

From a finished cube, the patient shares at each threshold, the survival function, the
subgroup residuals and tests, and the aggregate attack AUCs are recomputed on nested,
membership-balanced subsets of the models (:func:`mia_audit.sampling.subsets.nested_subsets`),
for the bi-normal and the moderated record AUCs, each with its interval; a quantity needs the
smallest number of models from which on every size lies within the all-model interval. The
shares also get their Monte-Carlo SD and finite-model bias from disjoint balanced halves
(:func:`mia_audit.sampling.subsets.split_halves`). Method: docs/methods.md, "How many target
models are enough".
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import zarr
from scipy import stats as sps

from mia_audit.analysis import subgroups
from mia_audit.audit import attacks, moderation, stats
from mia_audit.errors import ConfigError, DataError
from mia_audit.sampling import subsets

ESTIMATORS = ("binormal", "moderated")
SURVIVAL_GRID = np.round(np.linspace(0.5, 1.0, 51), 2)
#: Var(Ŝ_k) = Var(Ŝ_{k/2}) / 2**MC_EXPONENT (docs/methods.md)
MC_EXPONENT = 0.5
Z95 = float(sps.norm.ppf(0.975))
TABLE_COLUMNS = [
    "estimator",
    "quantity",
    "key",
    "n_models",
    "estimate",
    "ci_low",
    "ci_high",
    "mc_sd",
    "mc_bias",
    "final_estimate",
    "final_low",
    "final_high",
    "within_final",
]
SUMMARY_COLUMNS = [
    "estimator",
    "quantity",
    "key",
    "models_needed",
    "n_models",
    "final_estimate",
    "final_low",
    "final_high",
]


# --------------------------------------------------------------------------- reading the cube


@dataclass
class PoolCube:
    """The pool records of a cube, restricted to its first ``n_models`` models.

    ``patient_index`` maps each pool record to its column of ``patient_member`` (models,
    patients), the patients' membership read from their first record. Opened from a Zarr
    cube (:meth:`open`, read in record blocks) or built from arrays in memory
    (:meth:`from_arrays`).
    """

    path: str | None
    n_models: int
    record_id: np.ndarray
    patient_id: np.ndarray
    patient_index: np.ndarray
    patients: np.ndarray
    patient_member: np.ndarray
    pool: np.ndarray
    chunk: int
    arrays: tuple[np.ndarray, np.ndarray] | None = None

    @classmethod
    def open(cls, path, n_models: int | None = None) -> PoolCube:
        root = zarr.open_group(str(path), mode="r")
        conf = root["confidence"]
        n = _check_models(path, n_models, conf.shape[0])
        split = np.asarray(root["split"][...]) if "split" in root else np.full(conf.shape[1], "pool")
        pool = np.flatnonzero(split == "pool")
        if pool.size == 0:
            raise DataError(f"{path}: the cube has no pool records")
        pid = np.asarray(root["patient_id"][...]).astype(str)[pool]
        patients, first, index = np.unique(pid, return_index=True, return_inverse=True)
        member = np.asarray(root["member"].get_orthogonal_selection((slice(0, n), pool[first])), dtype=bool)
        return cls(
            path=str(path),
            n_models=n,
            record_id=np.asarray(root["record_id"][...]).astype(str)[pool],
            patient_id=pid,
            patient_index=index,
            patients=patients,
            patient_member=member,
            pool=pool,
            chunk=conf.chunks[1],
        )

    @classmethod
    def from_arrays(cls, conf, member, record_id, patient_id, n_models: int | None = None) -> PoolCube:
        """Pool records held in memory: ``conf`` (models, records[, views]), ``member`` (models, records)."""
        conf = np.asarray(conf)
        n = _check_models("the confidence array", n_models, conf.shape[0])
        pid = np.asarray(patient_id).astype(str)
        patients, first, index = np.unique(pid, return_index=True, return_inverse=True)
        member = np.asarray(member, dtype=bool)[:n]
        return cls(
            path=None,
            n_models=n,
            record_id=np.asarray(record_id).astype(str),
            patient_id=pid,
            patient_index=index,
            patients=patients,
            patient_member=member[:, first],
            pool=np.arange(pid.size),
            chunk=max(1, pid.size),
            arrays=(conf[:n], member),
        )

    def blocks(self, block_records: int = 65536) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """(pool positions, confidence (models, b) float64 — mean over views —, member (models, b))."""
        if self.arrays is not None:
            conf_all, mem_all = self.arrays
            for b in range(0, self.pool.size, block_records):
                pos = np.arange(b, min(self.pool.size, b + block_records))
                yield pos, _one_per_model(conf_all[:, pos]), mem_all[:, pos]
            return
        root = zarr.open_group(self.path, mode="r")
        conf_arr, mem_arr = root["confidence"], root["member"]
        n_records = conf_arr.shape[1]
        slab = max(self.chunk, (block_records // self.chunk) * self.chunk)
        for start in range(0, n_records, slab):
            stop = min(n_records, start + slab)
            lo, hi = np.searchsorted(self.pool, [start, stop])
            if lo == hi:
                continue
            conf_slab = conf_arr[: self.n_models, start:stop]
            mem_slab = np.asarray(mem_arr[: self.n_models, start:stop], dtype=bool)
            for b in range(lo, hi, block_records):
                pos = np.arange(b, min(hi, b + block_records))
                local = self.pool[pos] - start
                yield pos, _one_per_model(conf_slab[:, local]), mem_slab[:, local]

    def pool_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """All pool records at once: confidence (models, records[, views]) float64 and member."""
        if self.arrays is not None:
            return np.asarray(self.arrays[0], dtype=np.float64), self.arrays[1]
        root = zarr.open_group(self.path, mode="r")
        sel = (slice(0, self.n_models), self.pool)
        conf = np.asarray(root["confidence"].get_orthogonal_selection(sel), dtype=np.float64)
        return conf, np.asarray(root["member"].get_orthogonal_selection(sel), dtype=bool)


def _check_models(where, n_models, total: int) -> int:
    n = total if n_models is None else int(n_models)
    if not 2 <= n <= total:
        raise ValueError(f"{where}: cannot audit {n} models of {total}")
    return n


def _one_per_model(conf) -> np.ndarray:
    """float64 (models, records): the mean φ over views where there is a view dimension (as the audit does)."""
    c = np.asarray(conf, dtype=np.float64)
    if c.ndim == 3:
        with np.errstate(invalid="ignore"):
            c = c.mean(axis=2)
    return c


def as_pool(cube, n_models: int | None = None) -> PoolCube:
    """A :class:`PoolCube` from a cube path (or the PoolCube itself, which must hold ``n_models``)."""
    if not isinstance(cube, PoolCube):
        return PoolCube.open(cube, n_models)
    if n_models is not None and int(n_models) != cube.n_models:
        raise ValueError(f"the pool holds {cube.n_models} models, not {n_models}")
    return cube


# --------------------------------------------------------------------------- record statistics on subsets


def _moments(conf: np.ndarray, member: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
    return stats.binormal_moments(np.where(mask, conf, np.nan), member)


def subset_record_risk(cube: PoolCube, masks: dict[int, np.ndarray], block_records: int = 65536) -> dict:
    """Record risk (:func:`mia_audit.audit.stats.record_risk` columns) of every pool record per subset.

    ``masks`` maps a size k to a (models, patients) mask; returns size → DataFrame with
    ``record_id, patient_id`` first. Models outside a patient's mask do not enter; they are
    not counted in ``n_nonfinite``.
    """
    parts: dict[int, list[pd.DataFrame]] = {k: [] for k in masks}
    for pos, conf, member in cube.blocks(block_records):
        pidx = cube.patient_index[pos]
        for k, mask in masks.items():
            m = mask[:, pidx]
            df = stats.record_risk(np.where(m, conf, np.nan), member)
            df["n_nonfinite"] = (m & ~np.isfinite(conf)).sum(axis=0)
            df.insert(0, "patient_id", cube.patient_id[pos])
            df.insert(0, "record_id", cube.record_id[pos])
            parts[k].append(df)
    return {k: pd.concat(v, ignore_index=True) for k, v in parts.items()}


def _auc_by_estimator(mom: dict, priors: dict | None) -> dict[str, np.ndarray]:
    out = {"binormal": stats.binormal_auc(mom["mu_in"], mom["mu_out"], mom["sd_in"], mom["sd_out"])}
    undefined = (mom["n_in"] < 2) | (mom["n_out"] < 2)
    out["binormal"] = np.where(undefined, np.nan, out["binormal"])
    if priors is not None:
        var = {}
        for side in ("in", "out"):
            var[side], _ = priors[side].moderate(mom[f"sd_{side}"] ** 2, mom[f"n_{side}"] - 1.0, mom[f"mu_{side}"])
        auc = stats.binormal_auc(mom["mu_in"], mom["mu_out"], np.sqrt(var["in"]), np.sqrt(var["out"]))
        out["moderated"] = np.where(undefined, np.nan, auc)
    return out


def half_patient_auc(
    cube: PoolCube,
    halves: list[tuple[np.ndarray, np.ndarray]],
    priors: dict | None,
    block_records: int = 65536,
) -> dict[str, np.ndarray]:
    """Patient AUC (max over records) of each half: estimator → (splits, 2, patients)."""
    names = ["binormal"] + (["moderated"] if priors is not None else [])
    n_p = cube.patients.size
    out = {e: np.full((len(halves), 2, n_p), -np.inf) for e in names}
    for pos, conf, member in cube.blocks(block_records):
        pidx = cube.patient_index[pos]
        for j, pair in enumerate(halves):
            for h, mask in enumerate(pair):
                aucs = _auc_by_estimator(_moments(conf, member, mask[:, pidx]), priors)
                for e in names:
                    np.fmax.at(out[e][j, h], pidx, np.where(np.isfinite(aucs[e]), aucs[e], -np.inf))
    for e in names:
        out[e][np.isneginf(out[e])] = np.nan
    return out


def half_shares(half_auc: np.ndarray, thresholds) -> np.ndarray:
    """Share ≥ each threshold of every half: (splits, 2, thresholds) from (splits, 2, patients) AUCs."""
    t = np.asarray(thresholds, dtype=np.float64)
    defined = np.isfinite(half_auc)
    with np.errstate(invalid="ignore"):
        return (half_auc[..., None] >= t).sum(axis=2) / np.maximum(defined.sum(axis=2), 1)[..., None]


def mc_sd_of_shares(half_auc: np.ndarray, thresholds) -> np.ndarray:
    """Monte-Carlo SD of the share ≥ each threshold at k models from (splits, 2, patients) half AUCs.

    :math:`\\sqrt{\\overline{(\\hat S_A-\\hat S_B)^2}/2 \\,/\\, 2^{1/2}}` (docs/methods.md).
    """
    share = half_shares(half_auc, thresholds)
    var_half = ((share[:, 0] - share[:, 1]) ** 2).mean(axis=0) / 2
    return np.sqrt(var_half / 2**MC_EXPONENT)


# --------------------------------------------------------------------------- headline quantities


def _patient_tables(records: pd.DataFrame, priors: dict) -> dict[str, tuple[pd.DataFrame, pd.DataFrame]]:
    """estimator → (record table with ``record_id, patient_id, auc``, patient risk table)."""
    out = {"binormal": (records, stats.patient_risk(records))}
    mod = moderation.moderated_columns(records, priors)
    rec = records[["record_id", "patient_id"]].assign(auc=mod["auc_mod"], se=mod["se_mod"])
    out["moderated"] = (rec, stats.patient_risk(rec))
    return out


def _share_rows(patients: pd.DataFrame, thresholds) -> pd.DataFrame:
    sf = stats.exposure_table(patients["auc"], thresholds=thresholds)
    return pd.DataFrame(
        {"quantity": "share_at_or_above", "key": sf["threshold"].map("{:g}".format), "estimate": sf["share"]}
        | {"ci_low": sf["ci_low"], "ci_high": sf["ci_high"]}
    )


def _survival_rows(patients: pd.DataFrame) -> pd.DataFrame:
    sf = stats.survival_function(patients["auc"], thresholds=SURVIVAL_GRID)
    return pd.DataFrame(
        {
            "quantity": "survival",
            "key": sf["threshold"].map("{:.2f}".format),
            "estimate": sf["share"],
            "ci_low": sf["ci_low"],
            "ci_high": sf["ci_high"],
        }
    )


def residual_interval(n_tail, n_group_tail, expected, alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Interval of the Pearson residual (O − E)/√E from the exact binomial interval of O/n."""
    from statsmodels.stats.proportion import proportion_confint

    n = np.asarray(n_tail, dtype=np.float64)
    o = np.asarray(n_group_tail, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    lo, hi = proportion_confint(o, np.maximum(n, 1), alpha=alpha, method="beta")
    lo, hi = np.nan_to_num(lo, nan=0.0), np.nan_to_num(hi, nan=1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (n * lo - e) / np.sqrt(e), (n * hi - e) / np.sqrt(e)


def _subgroup_rows(
    records_table: pd.DataFrame, rec: pd.DataFrame, pat: pd.DataFrame, settings: dict, alpha: float
) -> pd.DataFrame:
    from statsmodels.stats.multitest import multipletests

    attrs = list(settings["attributes"])
    if not attrs:
        return pd.DataFrame(columns=["quantity", "key", "estimate", "ci_low", "ci_high"])
    t = subgroups.experiment_tests(
        records_table,
        rec[["record_id", "patient_id", "auc"]],
        pat[["patient_id", "auc", "n_records"]],
        dataset=settings.get("dataset", ""),
        experiment=settings.get("experiment", ""),
        attributes=attrs,
        orders=settings.get("orders"),
        **{k: settings[k] for k in subgroups.settings_kwargs({}) if k in settings},
    )
    lo, hi = residual_interval(t["n_tail_total"], t["n_tail"], t["expected"], alpha)
    res = pd.DataFrame(
        {
            "quantity": "residual",
            "key": t["level"] + "/" + t["attribute"] + "/" + t["group"].astype(str),
            "estimate": t["residual"],
            "ci_low": lo,
            "ci_high": hi,
        }
    )
    # decisions on the primary p-value: patient-clustered at record level (p_cluster = p at patient level)
    tests = t.drop_duplicates(subgroups.TEST_KEY).reset_index(drop=True)
    p_adj = np.full(len(tests), np.nan)
    ok = tests["p_cluster"].notna().to_numpy()
    if ok.any():
        p_adj[ok] = multipletests(tests.loc[ok, "p_cluster"].to_numpy(), method="fdr_bh")[1]
    test_rows = pd.DataFrame(
        {
            "quantity": "test",
            "key": tests["level"] + "/" + tests["attribute"],
            "estimate": p_adj,
            "ci_low": np.nan,
            "ci_high": np.nan,
        }
    )
    return pd.concat([res, test_rows], ignore_index=True)


def attack_targets_order(n_models_subset: int, targets: np.ndarray, others: np.ndarray, n_targets: int, seed: int):
    """Model indices in the order that makes :func:`mia_audit.audit.attacks.split_targets` of the subset
    pick exactly ``targets``; the other positions are filled with ``others`` in order."""
    pos, _ = attacks.split_targets(n_models_subset, n_targets, seed)
    order = np.empty(n_models_subset, dtype=np.int64)
    order[pos] = np.sort(targets)
    rest = np.setdiff1d(np.arange(n_models_subset), pos)
    order[rest] = others[: rest.size]
    return order


def attack_rows(cube: PoolCube, sizes, n_targets: int, seed: int, population, names, log=None) -> pd.DataFrame:
    """Mean aggregate-attack AUC over the full audit's targets with k − n_targets references."""
    conf, member = cube.pool_arrays()
    targets, _ = attacks.split_targets(cube.n_models, n_targets, seed)
    others = np.setdiff1d(np.arange(cube.n_models), targets)
    rows = []
    for k in sizes:
        if k - n_targets < 2:
            continue
        order = attack_targets_order(k, targets, others, n_targets, seed)
        res = attacks.attack_scores(
            conf[order],
            member[order],
            n_targets=n_targets,
            seed=seed,
            attacks=tuple(names),
            population=min(population, cube.pool.size - 1) if population else None,
        )
        table = attacks.aggregate_table(res)
        for name, g in table.groupby("attack", sort=False):
            auc = g["auc"].dropna().to_numpy()
            mean = auc.mean() if auc.size else np.nan
            half = sps.t.ppf(0.975, auc.size - 1) * auc.std(ddof=1) / np.sqrt(auc.size) if auc.size > 1 else np.nan
            rows.append(
                {
                    "n_models": k,
                    "quantity": "attack_auc",
                    "key": name,
                    "estimate": mean,
                    "ci_low": mean - half,
                    "ci_high": mean + half,
                }
            )
        if log:
            log(f"aggregate attacks with {k} models: {len(res['references'])} references")
    # the attacks do not use the record AUC: one set of rows, estimator "any"
    return pd.DataFrame(rows).assign(estimator="any")


# --------------------------------------------------------------------------- the analysis


def within_final(table: pd.DataFrame) -> pd.DataFrame:
    """Add the final (all-model) estimate and interval to every row, and ``within_final``.

    Tests: within = same decision (adjusted p < 0.05) as with all models; other
    quantities: the estimate lies in the final interval (NaN estimates are not within).
    """
    n_all = table["n_models"].max()
    final = table[table["n_models"] == n_all].set_index(["estimator", "quantity", "key"])[
        ["estimate", "ci_low", "ci_high"]
    ]
    final.columns = ["final_estimate", "final_low", "final_high"]
    out = table.join(final, on=["estimator", "quantity", "key"])
    est = out["estimate"].to_numpy(dtype=float)
    is_test = (out["quantity"] == "test").to_numpy()
    fin = out["final_estimate"].to_numpy(dtype=float)
    with np.errstate(invalid="ignore"):
        inside = (est >= out["final_low"].to_numpy(dtype=float) - 1e-12) & (
            est <= out["final_high"].to_numpy(dtype=float) + 1e-12
        )
        same = (np.isfinite(est) & np.isfinite(fin) & ((est < 0.05) == (fin < 0.05))) | (
            ~np.isfinite(est) & ~np.isfinite(fin)
        )
    out["within_final"] = np.where(is_test, same, inside)
    return out


def models_needed(table: pd.DataFrame) -> pd.DataFrame:
    """Per estimator × quantity × key: the smallest size from which on every row is within the
    final interval. The survival function is also summarised as one row (key ``all``: every
    grid point within)."""
    rows = []
    n_all = int(table["n_models"].max())
    surv = table[table["quantity"] == "survival"]
    if len(surv):
        agg = surv.groupby(["estimator", "n_models"], as_index=False)["within_final"].all()
        agg = agg.assign(quantity="survival", key="all", final_estimate=np.nan, final_low=np.nan, final_high=np.nan)
        table = pd.concat([table, agg], ignore_index=True)
    for (est, q, key), g in table.groupby(["estimator", "quantity", "key"], sort=False):
        g = g.sort_values("n_models")
        ok = g["within_final"].to_numpy(dtype=bool)
        sizes = g["n_models"].to_numpy()
        bad = np.flatnonzero(~ok)
        needed = int(sizes[0]) if bad.size == 0 else (int(sizes[bad[-1] + 1]) if bad[-1] + 1 < sizes.size else n_all)
        last = g.iloc[-1]
        rows.append(
            {
                "estimator": est,
                "quantity": q,
                "key": key,
                "models_needed": needed,
                "n_models": n_all,
                "final_estimate": last.get("final_estimate", np.nan),
                "final_low": last.get("final_low", np.nan),
                "final_high": last.get("final_high", np.nan),
            }
        )
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def analyse(
    cube_path,
    records_table: pd.DataFrame | None = None,
    *,
    sizes=None,
    n_models: int | None = None,
    thresholds=(0.8, 0.9, 0.95, 0.99),
    splits: int = 20,
    seed: int = 0,
    subgroup_settings: dict | None = None,
    n_targets: int = 10,
    attack_seed: int = 0,
    population: int | None = 2000,
    attack_names=None,
    block_records: int = 65536,
    log: Callable[[str], None] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The convergence table (:data:`TABLE_COLUMNS`) and its summary (:data:`SUMMARY_COLUMNS`).

    ``sizes`` default to :func:`mia_audit.sampling.subsets.default_sizes`; sizes above the models
    available are dropped and the full count is always last. ``records_table``
    (records.parquet) supplies the subgroup attributes named in ``subgroup_settings``
    (``attributes``, ``quantile``, ``orders``, …); without it no subgroup rows are made.
    ``splits`` random half-splits give ``mc_sd`` of the shares (0 = none; needs a size
    divisible by 4).
    """
    t0 = time.perf_counter()
    cube = as_pool(cube_path, n_models)
    m = cube.n_models
    sizes = sorted({int(k) for k in (sizes or subsets.default_sizes(m)) if int(k) <= m} | {m})
    bad = [k for k in sizes if k < 4 or k % 2]
    if bad:
        raise ConfigError(f"convergence sizes must be even and at least 4 (2 IN and 2 OUT models); got {bad}")
    masks = {k: subsets.nested_subsets(cube.patient_member, k) for k in sizes}
    per_k = subset_record_risk(cube, masks, block_records)
    rows, priors_by_k, halves_by_k = [], {}, {}
    rng = np.random.default_rng([seed, 18])
    for k in sizes:
        priors = moderation.fit_priors(per_k[k])
        priors_by_k[k] = priors
        for est, (rec, pat) in _patient_tables(per_k[k], priors).items():
            parts = [_share_rows(pat, thresholds), _survival_rows(pat)]
            if subgroup_settings and records_table is not None:
                parts.append(_subgroup_rows(records_table, rec, pat, subgroup_settings, 0.05))
            rows.append(pd.concat(parts, ignore_index=True).assign(estimator=est, n_models=k))
        if splits and k % 4 == 0:
            halves_by_k[k] = [subsets.split_halves(cube.patient_member, masks[k], rng) for _ in range(splits)]
        if log:
            log(f"{k} models: {moderation.describe(priors)} ({time.perf_counter() - t0:.1f} s)")
    table = pd.concat(rows, ignore_index=True)
    table["mc_sd"] = np.nan
    table["mc_bias"] = np.nan
    for k, halves in halves_by_k.items():
        half_auc = half_patient_auc(cube, halves, priors_by_k[k], block_records)
        for est, arr in half_auc.items():
            sel = (table["estimator"] == est) & (table["n_models"] == k) & (table["quantity"] == "share_at_or_above")
            table.loc[sel, "mc_sd"] = mc_sd_of_shares(arr, thresholds)
            table.loc[sel, "mc_bias"] = half_shares(arr, thresholds).mean(axis=(0, 1)) - table.loc[sel, "estimate"]
    if log:
        log(f"Monte-Carlo errors from {splits} half-splits ({time.perf_counter() - t0:.1f} s)")
    if attack_names is None or len(attack_names):
        att = attack_rows(
            cube, sizes, n_targets, attack_seed, population, attack_names or tuple(attacks.ATTACKS), log=log
        )
        if len(att):
            table = pd.concat([table, att.assign(mc_sd=np.nan, mc_bias=np.nan)], ignore_index=True)
    table = within_final(table)[TABLE_COLUMNS]
    return table, models_needed(table)


def write(table: pd.DataFrame, summary: pd.DataFrame, table_path, summary_path) -> None:
    """Both tables as TSV."""
    table.to_csv(Path(table_path), sep="\t", index=False)
    summary.to_csv(Path(summary_path), sep="\t", index=False)
