"""The dp_pbc preset holds the default run unchanged, so that running it after the default
rewrites nothing of the default's experiments (the end-to-end check on a small copy:
tests/workflow/test_dp_workflow.py)."""

import yaml
from workflow_config import REPO, default_config, validated

from mia_audit.pipeline import plan
from mia_audit.pipeline.rules import AUDIT_KEYS, RuleFunctions


class W:
    """Wildcards of one experiment's jobs."""

    def __init__(self, experiment, shard="0"):
        self.dataset, self.experiment, self.shard = "pbc", experiment, shard


def preset():
    return yaml.safe_load((REPO / "config/presets/dp_pbc.yaml").read_text())


def test_the_preset_holds_the_default_runs_blocks_unchanged():
    d, p = validated(default_config()), validated(preset())
    for key in ("results", "device", "datasets", "audit", "subgroups"):
        assert p[key] == d[key], key
    for name in d["experiments"]:
        assert p["experiments"][name] == d["experiments"][name], name
    # the comparison's additions are left out of the subgroup tests: the run-wide family is the default's
    assert plan.unadjusted_subgroup_tests(p) == plan.unadjusted_subgroup_tests(d)
    assert plan.subgroup_tables(p) == plan.subgroup_tables(d)
    # every input and param the default's experiments' jobs get is the same under both configs
    rd, rp = RuleFunctions(d), RuleFunctions(p)
    for name in d["experiments"]:
        w = W(name)
        for fn in ("experiment_config", "selection_choice", "shard_models", "dataset_config", "subgroup_attributes"):
            assert getattr(rp, fn)(w) == getattr(rd, fn)(w), (name, fn)
        assert plan.experiment_targets(p, "pbc", name) == plan.experiment_targets(d, "pbc", name)
    for rule in AUDIT_KEYS:
        assert rp.audit_params(rule) == rd.audit_params(rule)
    assert [r for r in plan.experiment_figure_rules(p) if r[0] == "plot_experiment"] == plan.experiment_figure_rules(d)


def test_the_preset_grid_is_one_delta_at_both_levels_with_canaries_and_a_sweep():
    p = validated(preset())
    dp = {n: e for n, e in p["experiments"].items() if e.get("dp")}
    assert {e["dp"]["delta"] for e in dp.values()} == {1e-5}
    assert {(e["dp"]["level"], str(e["dp"]["epsilon"])) for e in dp.values()} == {
        (lv, eps) for lv in ("record", "patient") for eps in ("inf", "1000", "100", "10", "1")
    }
    for e in dp.values():
        assert e["dp"]["canaries"] is not None and len(e["selection"]["candidates"]) == 4
        assert e["subgroup_tests"] is False
        assert e["dp"]["accountant"] == ("rdp" if str(e["dp"]["epsilon"]) == "1000" else "pld")
    # the comparison: the default's selected model and the DP schedule without noise, then ε
    order = [c["experiment"] for c in plan.dp_comparison(p, "pbc", "record")]
    assert order[:2] == ["mlp", "mlp_dp_schedule"] and order[2:] == [
        f"dp_rec_eps{e}" for e in ("inf", "1000", "100", "10", "1")
    ]
    sched, rec = p["experiments"]["mlp_dp_schedule"], p["experiments"]["dp_rec_eps1"]
    assert sched["model"] == rec["model"] == p["experiments"]["mlp"]["model"] and sched["train"] == rec["train"]
    assert "results/pbc/dp_empirical.tsv" in plan.all_targets(p)
