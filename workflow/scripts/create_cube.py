"""Snakemake script: the cube skeleton (coordinates, membership, empty confidences), self-describing."""

import json

import zarr

from mia_audit import provenance
from mia_audit.data import store
from mia_audit.pipeline.runtime import run_script
from mia_audit.query import cube
from mia_audit.sampling import membership as sampling_membership
from mia_audit.train import choice as selection_choice


def main(log):
    sm = snakemake
    records = store.read_records(sm.input.records)
    member = sampling_membership.read_record_membership(records, sm.input.membership)
    exp, ds = sm.params.experiment, sm.params.dataset
    choice = getattr(sm.input, "choice", None)  # model selection: the settings the models train with
    exp = selection_choice.apply_choice(exp, selection_choice.read_choice(choice) if choice else None)
    views = list(sm.params.get("views", None) or ["original"])
    level = sm.params.get("access_level", None) or "full"
    label_names = json.loads(zarr.open_group(sm.input.inputs, mode="r").attrs.get("label_names", "null"))
    cube.create_cube(
        sm.output.cube,
        records,
        member,
        models_per_shard=exp["models_per_job"],
        views=views if len(views) > 1 else None,
        label_names=label_names,
        attrs={
            "title": f"membership-inference confidence cube of {sm.wildcards.dataset} / {sm.wildcards.experiment}",
            "dataset": sm.wildcards.dataset,
            "experiment": sm.wildcards.experiment,
            "access_level": level,
            "experiment_config": exp,
            "dataset_config": ds,
            "seeds": {
                "split_seed": ds.get("split_seed"),
                "membership_seed": ds.get("membership_seed"),
                "experiment_seed": exp.get("seed"),
            },
            "code_version": provenance.code_version_string(),
            "created": provenance.created_at(),
        },
    )
    log.info(
        "cube %s (access %s): %d models × %d records, views %s, chunks of %d models",
        sm.output.cube,
        level,
        *member.shape,
        views,
        exp["models_per_job"],
    )


run_script(main, snakemake.log[0])
