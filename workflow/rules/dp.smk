# Differential privacy: patient risk per ε (survival functions) and utility vs privacy.
# DP training itself is the train_models rule (an experiment with a dp block); the audit
# adds each record's and patient's AUC bound (audit_records).


wildcard_constraints:
    level="record|patient",


def _check_dp_config():
    """DP-compatible models, checked at parse time (ε and δ ranges are in the schema)."""
    for name, exp in config["experiments"].items():
        if not exp.get("dp"):
            continue
        model = exp["model"]
        if model["arch"] != "mlp" and model.get("norm") != "group":
            raise ValueError(
                f"config key experiments.{name}.model.norm must be 'group' for DP training of "
                f"model.arch {model['arch']!r} (BatchNorm mixes the records of a batch and is not "
                f"DP-compatible), got {model.get('norm')!r}"
            )


_check_dp_config()


def dp_comparison(dataset, level=None):
    """Experiments of one DP comparison, in plotting order: non-DP baselines, then ε = ∞, then
    decreasing ε. DP experiments at ``level`` (all levels if None); baselines = the data set's
    non-DP experiments with the same model block as one of its DP experiments."""
    exps = {n: e for n, e in config["experiments"].items() if e["dataset"] == dataset}
    dp_exps = {n: e for n, e in exps.items() if e.get("dp")}
    models = [e["model"] for e in dp_exps.values()]
    out = [{"experiment": n, "level": "none", "epsilon": None}
           for n, e in exps.items() if not e.get("dp") and e["model"] in models]
    for n, e in dp_exps.items():
        lv = e["dp"].get("level", "record")
        if level is None or lv == level:
            out.append({"experiment": n, "level": lv, "epsilon": e["dp"]["epsilon"]})
    inf_first = lambda d: (d["epsilon"] is not None, -float(d["epsilon"]) if d["epsilon"] is not None else 0.0)
    return sorted(out, key=inf_first)


def _dp_paths(wildcards, name, level=None):
    return [f"{RESULTS}/{wildcards.dataset}/{d['experiment']}/{name}"
            for d in dp_comparison(wildcards.dataset, level)]


def dp_esf_patients(wildcards):
    return _dp_paths(wildcards, "audit/patient_risk.parquet", wildcards.level)


def dp_esf_experiments(wildcards):
    return dp_comparison(wildcards.dataset, wildcards.level)


def dp_utility_inputs(wildcards):
    return {
        "metrics": _dp_paths(wildcards, "models/metrics.tsv"),
        "records": _dp_paths(wildcards, "audit/record_risk.parquet"),
        "patients": _dp_paths(wildcards, "audit/patient_risk.parquet"),
    }


def dp_utility_experiments(wildcards):
    return dp_comparison(wildcards.dataset)


rule plot_dp_esf:
    """Survival function of patient AUC per ε at one DP level, violations in the legend."""
    input:
        patients=dp_esf_patients,
    output:
        png=report(
            f"{RESULTS}/figures/{{dataset}}/dp_esf_{{level}}.png",
            caption="../report/dp_esf.rst",
            category="{dataset}",
            subcategory="differential privacy",
        ),
        pdf=f"{RESULTS}/figures/{{dataset}}/dp_esf_{{level}}.pdf",
    params:
        experiments=dp_esf_experiments,
    log:
        "logs/{dataset}/plot_dp_esf_{level}.log",
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/plot_dp_esf.py"


rule tabulate_dp_utility:
    """Test AUC (median, IQR), achieved ε and violations per DP experiment and level."""
    input:
        unpack(dp_utility_inputs),
    output:
        f"{RESULTS}/{{dataset}}/dp_utility.tsv",
    params:
        experiments=dp_utility_experiments,
    log:
        "logs/{dataset}/tabulate_dp_utility.log",
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/tabulate_dp_utility.py"
