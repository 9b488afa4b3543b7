"""Snakemake script: raw table → records.parquet + inputs.zarr."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821 (the workflow's library)

from mia_audit import store  # noqa: E402
from mia_audit.adapters.table import prepare_table, read_table  # noqa: E402
from mia_audit.runtime import run_script  # noqa: E402


def main(log):
    spec = snakemake.params.spec  # noqa: F821
    if spec.get("adapter", "table") != "table":  # a published layout, read by its adapter
        from mia_audit.adapters.pipeline import prepare

        prepare(dict(spec), snakemake.output.records, snakemake.output.inputs, log=log)  # noqa: F821
        return
    path = snakemake.input.table  # noqa: F821
    prep = prepare_table(read_table(path), spec, path=path)
    store.write_prepared(prep, snakemake.output.records, snakemake.output.inputs)  # noqa: F821
    rec = prep.records
    log.info(
        "%s: %d records of %d patients (%d pool / %d test patients), %d input features, label classes %s",
        path, len(rec), rec["patient_id"].nunique(),
        rec.loc[rec["split"] == "pool", "patient_id"].nunique(),
        rec.loc[rec["split"] == "test", "patient_id"].nunique(),
        prep.features.shape[1], prep.label_names,
    )


run_script(main, snakemake.log[0])  # noqa: F821
