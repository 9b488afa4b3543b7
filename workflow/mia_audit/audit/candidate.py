"""One tied candidate of the model selection audited with the full target-model design.

Trains, queries and audits in one job (rule ``audit_candidate``), so it reaches the model
families: the training environment's job. The headline table that gathers the candidates is
:mod:`mia_audit.audit.headline` (light: the analysis environment's jobs read it).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

import pandas as pd

from mia_audit.audit.headline import threshold_rows


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
