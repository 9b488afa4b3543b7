"""Snakemake script: offline RMIA against an external target model."""

from mia_audit.audit import attacks
from mia_audit.external import scores as external_scores
from mia_audit.pipeline.runtime import run_script


def main(log):
    sm = snakemake
    spec = sm.params.spec
    df = external_scores.read_candidates(sm.input.candidates)
    scores, patients, summary = external_scores.attack_external(
        df, population_size=spec["population_size"], a=spec["a"], seed=spec["seed"]
    )
    scores.to_parquet(sm.output.scores, index=False)
    patients.to_parquet(sm.output.patients, index=False)
    summary.to_csv(sm.output.summary, sep="\t", index=False)
    log.info(
        "%d candidates (%d members) of %d patients:\n%s",
        len(df),
        int(df["member"].sum()),
        df["patient_id"].nunique(),
        summary.round(4).to_string(index=False),
    )
    warning = attacks.resolution_warning(summary)
    if warning:
        log.warning(warning)


run_script(main, snakemake.log[0])
