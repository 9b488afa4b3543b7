"""Snakemake script: query every public target and reference model once; logits into cube.zarr."""

from pathlib import Path

import numpy as np
import pandas as pd
import torch
import zarr

from mia_audit.device import resolve_device
from mia_audit.external import public_models as external_public_models
from mia_audit.pipeline.runtime import run_script


def main(log):
    sm = snakemake
    audit, name = sm.params.audit, sm.wildcards.public
    device = resolve_device(sm.params.device)
    torch.set_num_threads(max(1, sm.threads))
    candidates = pd.concat([pd.read_parquet(p) for p in sm.input.tables], ignore_index=True)
    images = [zarr.open_group(p, mode="r")["image"] for p in sm.input.images]
    log.info("%d candidates; device %s", len(candidates), device)
    models, logits = {}, {}
    for role, key in (("target", "targets"), ("reference", "references")):
        for model_name, spec in audit[key].items():
            model = external_public_models.load_xrv_model(
                spec["weights"],
                audit.get("weights_dir"),
                audit["allow_download"],
                config_key=f"public_models.{name}",
            )
            models[model_name] = {
                "role": role,
                "weights": spec["weights"],
                "labels": model.pathologies,
                "op_threshs": model.xrv_op_threshs,
                "members": spec.get("members"),
            }
            logits[model_name] = np.concatenate(
                [
                    external_public_models.query_logits(
                        model,
                        img,
                        audit["batch_size"],
                        device,
                        audit["log_every"],
                        log,
                        label=f"{model_name} on {Path(p).stem}",
                    )
                    for img, p in zip(images, sm.input.images, strict=True)
                ]
            )
            del model
    external_public_models.write_cube(sm.output.cube, candidates, models, logits, attrs={"audit": name})
    log.info("wrote %s", sm.output.cube)


run_script(main, snakemake.log[0])
