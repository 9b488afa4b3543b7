# What the HTML report (snakemake --report report.html) says about the run itself: the
# configuration it ran with (defaults and --config values included) and the software.

from mia_audit import provenance


rule describe_run:
    """The run's effective configuration and the versions of the software that made it: this
    job's environment (the analysis jobs') and the train jobs' (their GPUs and driver)."""
    input:
        train=R.train_environments,
    output:
        config=report(
            f"{RESULTS}/run/config.yaml",
            caption="../report/run_config.rst",
            category="run",
            subcategory="configuration and software",
            labels={"table": "configuration"},
        ),
        software=report(
            f"{RESULTS}/run/software.tsv",
            caption="../report/software.rst",
            category="run",
            subcategory="configuration and software",
            labels={"table": "software versions"},
        ),
    params:
        # a digest, not the config itself: a changed config reruns the job, and the rerun reason
        # shows two digests instead of the whole configuration twice (the script writes config)
        config_digest=provenance.config_digest(config),
    log:
        f"{LOGS}/describe_run.log",
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/describe_run.py"
