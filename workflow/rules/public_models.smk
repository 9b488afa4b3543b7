# Audits of public pretrained models (config key public_models; docs/public_models.md):
# candidates → one query of every public model → cube.zarr → offline RMIA and baselines → ROC.


rule prepare_public_candidates:
    """Sample the candidate records of one data set and preprocess them as TorchXrayVision expects."""
    input:
        root=R.public_candidate_root,
    output:
        table=f"{RESULTS}/public/{{public}}/candidates/{{cands}}.parquet",
        images=directory(f"{RESULTS}/public/{{public}}/candidates/{{cands}}.zarr"),
    params:
        audit=R.public_config,
    threads: 4
    log:
        f"{LOGS}/public/{{public}}/prepare_{{cands}}.log",
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/prepare_public_candidates.py"


rule query_public_models:
    """Query every target and reference model once on every candidate; logits into the cube."""
    input:
        unpack(R.public_candidate_files),
        weights=R.public_weight_files,
    output:
        cube=directory(f"{RESULTS}/public/{{public}}/cube.zarr"),
    params:
        audit=R.public_config,
        device=config["device"],
    threads: 4
    log:
        f"{LOGS}/public/{{public}}/query_public_models.log",
    conda:
        "../../envs/train.yaml"
    script:
        "../scripts/query_public_models.py"


rule attack_public_models:
    """Offline RMIA (and LiRA offline, loss) against each target; record and patient scores."""
    input:
        cube=f"{RESULTS}/public/{{public}}/cube.zarr",
    output:
        scores=f"{RESULTS}/public/{{public}}/scores.parquet",
        patients=f"{RESULTS}/public/{{public}}/patient_scores.parquet",
        summary=f"{RESULTS}/public/{{public}}/summary.tsv",
    params:
        audit=R.public_config,
    log:
        f"{LOGS}/public/{{public}}/attack_public_models.log",
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/attack_public_models.py"


rule plot_public_roc:
    """ROC of each attack against each public target, with AUC and TPR at 1 % FPR."""
    input:
        scores=f"{RESULTS}/public/{{public}}/scores.parquet",
        summary=f"{RESULTS}/public/{{public}}/summary.tsv",
    output:
        png=report(
            f"{RESULTS}/figures/public/{{public}}/roc.png",
            caption="../report/public_roc.rst",
            category="Public models",
        ),
        pdf=f"{RESULTS}/figures/public/{{public}}/roc.pdf",
    log:
        f"{LOGS}/public/{{public}}/plot_public_roc.log",
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/plot_public_roc.py"


rule public_models_all:
    """Every output of every public-model audit (and nothing else)."""
    input:
        plan.public_model_targets(config),
