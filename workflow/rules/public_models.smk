# Audits of public pretrained models (config key public_models; docs/public_models.md):
# candidates → one query of every public model → cube.zarr → offline RMIA and baselines → ROC.

from pathlib import Path


wildcard_constraints:
    public="[A-Za-z0-9_-]+",
    cands="[A-Za-z0-9_-]+",


def public_config(wildcards):
    return config["public_models"][wildcards.public]


def public_candidate_spec(wildcards):
    return public_config(wildcards)["candidates"][wildcards.cands]


def public_candidate_root(wildcards):
    return public_candidate_spec(wildcards)["root"]


def public_candidate_files(wildcards):
    base = f"{RESULTS}/public/{wildcards.public}/candidates"
    names = list(public_config(wildcards)["candidates"])
    return {
        "tables": [f"{base}/{n}.parquet" for n in names],
        "images": [f"{base}/{n}.zarr" for n in names],
    }


def public_weight_files(wildcards):
    """The released checkpoints the query needs; an error naming each missing file and the
    config keys to set, before any job runs (unless allow_download lets the job fetch them)."""
    import sys

    sys.path.insert(0, str(Path(workflow.basedir) / "workflow"))
    from mia_audit.public_models import audit_weight_files

    return audit_weight_files(public_config(wildcards), wildcards.public)


rule prepare_public_candidates:
    """Sample the candidate records of one data set and preprocess them as TorchXrayVision expects."""
    input:
        root=public_candidate_root,
    output:
        table=f"{RESULTS}/public/{{public}}/candidates/{{cands}}.parquet",
        images=directory(f"{RESULTS}/public/{{public}}/candidates/{{cands}}.zarr"),
    params:
        audit=public_config,
    threads: 4
    log:
        "logs/public/{public}/prepare_{cands}.log",
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/prepare_public_candidates.py"


rule query_public_models:
    """Query every target and reference model once on every candidate; logits into the cube."""
    input:
        unpack(public_candidate_files),
        weights=public_weight_files,
    output:
        cube=directory(f"{RESULTS}/public/{{public}}/cube.zarr"),
    params:
        audit=public_config,
        device=config["device"],
    threads: 4
    log:
        "logs/public/{public}/query_public_models.log",
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
        audit=public_config,
    log:
        "logs/public/{public}/attack_public_models.log",
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
        "logs/public/{public}/plot_public_roc.log",
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/plot_public_roc.py"


rule public_models_all:
    """Every output of every public-model audit (and nothing else)."""
    input:
        public_model_targets(),
