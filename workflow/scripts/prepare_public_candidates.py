"""Snakemake script: sample one data set's candidate records and preprocess their images."""

from mia_audit.errors import DataError
from mia_audit.external import public_models as external_public_models
from mia_audit.pipeline.runtime import run_script


def main(log):
    sm = snakemake
    audit, name = sm.params.audit, sm.wildcards.cands
    sizes = {
        external_public_models.weights_info(m["weights"])["input_resolution"]
        for role in ("targets", "references")
        for m in audit[role].values()
    }
    if len(sizes) != 1:
        raise DataError(
            f"public_models.{sm.wildcards.public}: the models expect different input resolutions "
            f"{sorted(sizes)}; audit models of one resolution together"
        )
    size = sizes.pop()
    table = external_public_models.read_candidates(name, audit["candidates"][name], seed=audit["seed"])
    log.info(
        "%s: %d candidate records of %d patients; preprocessing to %d px",
        name,
        len(table),
        table["patient_id"].nunique(),
        size,
    )
    external_public_models.write_inputs(sm.output.images, table, size, workers=sm.threads, log=log)
    table.to_parquet(sm.output.table, index=False)
    log.info("wrote %s", sm.output.table)


run_script(main, snakemake.log[0])
