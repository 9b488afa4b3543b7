"""The headline with its uncertainty: every equally good model, and intervals for each source of error.

The audit's headline is the share of patients whose AUC clears each threshold
(``audit/patient_thresholds.tsv``). Three sources of error stand behind it, and
``audit/headline.tsv`` shows each:

* **the patients** (the cohort is a sample): the binomial interval over patients
  (``ci_low, ci_high``) and, beside it,
* **the models** (each patient's AUC is estimated from finitely many models, and the models
  are shared by all patients): the joint bootstrap over models and patients
  (``ci_low_boot, ci_high_boot``; :meth:`mia_audit.audit.patients.PatientAccumulator.headline_bootstrap`),
  and the share of patients whose *true* AUC clears the threshold, corrected for the
  measurement error by deconvolution (``share_eb`` with ``ci_low_eb, ci_high_eb``;
  :mod:`mia_audit.audit.deconvolution`);
* **the choice among equally good models**: the model selection rarely separates its best
  candidates (:func:`mia_audit.train.selection.tied`), and each tied candidate is audited with
  the full target-model design (:func:`audit_candidate`); ``headline.tsv`` has one row per
  threshold and candidate and the range across the tied candidates (``range_*``).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from mia_audit.audit import deconvolution, patients

#: columns of ``audit/headline.tsv`` that describe the candidate (then every threshold column)
CANDIDATE_COLUMNS = ["candidate", "chosen", "tied", "val_loss_vs_chosen", "val_loss_vs_chosen_se", "test_auc"]
#: columns of the range across the tied candidates (per threshold)
RANGE_COLUMNS = ["range_count_low", "range_count_high", "range_share_low", "range_share_high", "range_candidates"]


def threshold_rows(
    patient_table: pd.DataFrame,
    thresholds,
    boot: np.ndarray | None,
    n_boot: int,
    seed: int,
) -> pd.DataFrame:
    """``patient_thresholds.tsv`` of one audited model set: :func:`mia_audit.audit.patients.threshold_table`
    with the joint bootstrap replicates ``boot`` and the deconvolved shares
    (:func:`mia_audit.audit.deconvolution.deconvolved_shares`, ``n_boot`` patient-bootstrap
    replicates) where the patient table has ``auc_bc`` and ``max_se``."""
    eb = None
    if "max_se" in patient_table and patient_table["max_se"].notna().any():
        eb = deconvolution.deconvolved_shares(
            patient_table["auc_bc"], patient_table["max_se"], thresholds, n_boot=n_boot, seed=seed
        )
    return patients.threshold_table(patient_table, thresholds, boot=boot, deconvolved=eb)


def audit_candidate(
    *,
    records_path,
    inputs_path,
    membership_path,
    experiment: Mapping,
    candidate: str,
    views: list[str],
    audit: Mapping,
    device: str,
    threads: int,
    metrics_path,
    patients_path,
    thresholds_path,
    log: Callable[[str], None] = print,
) -> pd.DataFrame:
    """Audit one tied candidate with the full target-model design, in one job.

    ``experiment`` is the experiment's block with the candidate's settings applied
    (:func:`mia_audit.train.selection.apply_choice`): its models train on the data set's
    membership draws with the experiment's seeds (common random numbers with the chosen
    candidate's target models), every model in one shard, of whatever family the candidate is
    (:func:`mia_audit.train.shard.train_shard`). The models are queried into a cube in a
    scratch folder (skeleton, the shard's rows, assembled) and audited as the target models
    are (record risk, the patient statistics, the thresholds with their intervals); the weights
    and the cube are not kept.
    Writes the per-model metrics, the patient table and the thresholds; returns the thresholds.
    """
    import zarr

    from mia_audit.audit import cube_audit
    from mia_audit.data import store
    from mia_audit.query import assemble
    from mia_audit.query import cube as query_cube
    from mia_audit.query.shard import query_shard
    from mia_audit.sampling import membership as sampling_membership
    from mia_audit.train.shard import train_shard

    records = store.read_records(records_path)
    member = sampling_membership.read_record_membership(records, membership_path)
    n_models = member.shape[0]
    with tempfile.TemporaryDirectory(prefix=f"candidate_{candidate}_") as scratch:
        tmp = Path(scratch)
        train_shard(
            records_path=records_path,
            inputs_path=inputs_path,
            membership_path=membership_path,
            experiment={**experiment, "models_per_job": n_models},
            model_range=(0, n_models),
            device=device,
            threads=threads,
            weights_path=tmp / "models.safetensors",
            metrics_path=metrics_path,
            log=log,
        )
        label_names = json.loads(zarr.open_group(str(inputs_path), mode="r").attrs.get("label_names", "null"))
        query_cube.create_cube(
            tmp / "cube_skeleton.zarr",
            records,
            member,
            models_per_shard=n_models,
            views=views if len(views) > 1 else None,
            label_names=label_names,
            attrs={"candidate": candidate, "experiment_config": dict(experiment)},
        )
        query_shard(
            weights_path=tmp / "models.safetensors",
            records_path=records_path,
            inputs_path=inputs_path,
            cube_path=tmp / "cube_skeleton.zarr",
            device=device,
            threads=threads,
            done_path=tmp / "query.json",
            rows_path=tmp / "rows.zarr",
            log=log,
        )
        assemble.assemble(
            tmp / "cube_skeleton.zarr", [tmp / "rows.zarr"], tmp / "cube.zarr", log=log, summaries=[tmp / "query.json"]
        )
        _, extra, boot = cube_audit.write_audit(
            tmp / "cube.zarr",
            tmp / "record_risk.parquet",
            block_records=audit["block_records"],
            estimator=audit["compat"],
            check_alpha=audit["binormal_check_alpha"],
            n_boot=audit["patient_bootstrap"],
            seed=audit["seed"],
            log=log,
            thresholds=audit["thresholds"],
            attack_folds=audit["attack_folds"],
            attack_permutations=audit["attack_permutations"],
        )
        table = cube_audit.patient_risk_from_parquet(tmp / "record_risk.parquet", extra)
    table.to_parquet(patients_path, index=False)
    out = threshold_rows(table, audit["thresholds"], boot, audit["headline_bootstrap"], audit["seed"])
    out.to_csv(thresholds_path, sep="\t", index=False)
    return out


def headline_table(parts: list[tuple[dict, pd.DataFrame]]) -> pd.DataFrame:
    """``audit/headline.tsv``: one row per threshold and candidate, and the range across the tied ones.

    ``parts``: (candidate description, its ``patient_thresholds.tsv``) for each audited
    candidate, the chosen one first; a description has the :data:`CANDIDATE_COLUMNS` (NaN where
    unknown). Every threshold column follows; ``range_count_low/high``, ``range_share_low/high``
    are the smallest and largest count and share over the tied candidates at that threshold and
    ``range_candidates`` how many were audited.
    """
    rows = []
    for desc, table in parts:
        t = table.copy()
        for i, col in enumerate(CANDIDATE_COLUMNS):
            t.insert(i, col, desc.get(col, np.nan))
        rows.append(t)
    out = pd.concat(rows, ignore_index=True)
    tied = out[out["tied"].astype(bool)]
    rng = tied.groupby("threshold").agg(
        range_count_low=("count", "min"),
        range_count_high=("count", "max"),
        range_share_low=("share", "min"),
        range_share_high=("share", "max"),
        range_candidates=("candidate", "nunique"),
    )
    out = out.join(rng, on="threshold")
    order = {c: i for i, c in enumerate(dict.fromkeys(out["candidate"]))}
    return out.sort_values(["threshold", "candidate"], key=lambda s: s.map(order) if s.name == "candidate" else s)


def candidate_description(name: str, chosen: bool, selection_table: pd.DataFrame | None, test_auc: float) -> dict:
    """The :data:`CANDIDATE_COLUMNS` of one candidate from the selection table (a row per
    candidate; None for an experiment without selection: ``tied`` True)."""
    row = {"candidate": name, "chosen": chosen, "tied": True, "test_auc": test_auc}
    if selection_table is not None:
        sel = selection_table.set_index(selection_table["candidate"].astype(str))
        if name in sel.index:
            r = sel.loc[name]
            row.update(
                tied=bool(r.get("tied", chosen)),
                val_loss_vs_chosen=float(r["val_loss_vs_chosen"]),
                val_loss_vs_chosen_se=float(r["val_loss_vs_chosen_se"]),
            )
    return row
