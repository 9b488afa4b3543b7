"""What the rules ask of the plan (mia_audit.pipeline.rules): every function a rule file names
exists, each rule's script reads exactly the audit keys the rule passes it, and the functions
answer for the default configuration."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from types import SimpleNamespace

from workflow_config import default_config, validated

from mia_audit.pipeline import plan
from mia_audit.pipeline.rules import AUDIT_KEYS, RuleFunctions

REPO = Path(__file__).resolve().parents[2]
RULES = sorted((REPO / "workflow" / "rules").glob("*.smk"))


def rule_scripts() -> dict[str, str]:
    """rule name → its script file (from the rule files)."""
    out = {}
    for path in RULES:
        for m in re.finditer(
            r"^(?:rule|checkpoint) (\w+):(.*?)(?=^(?:rule|checkpoint|localrules|for) |\Z)",
            path.read_text(),
            re.M | re.S,
        ):
            script = re.search(r'script:\s*"\.\./scripts/(\w+\.py)"', m.group(2))
            if script:
                out[m.group(1)] = script.group(1)
    return out


def audit_keys_read(script: Path) -> set[str]:
    """Keys read as ``audit["…"]`` or ``sm.params.audit["…"]`` in a script."""
    keys = set()
    for node in ast.walk(ast.parse(script.read_text())):
        if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
            target = node.value
            name = target.id if isinstance(target, ast.Name) else getattr(target, "attr", None)
            if name == "audit":
                keys.add(node.slice.value)
    return keys


def test_every_function_the_rules_name_exists():
    named = {m for path in RULES for m in re.findall(r"\bR\.(\w+)", path.read_text())}
    assert named and not named - set(dir(RuleFunctions)), named - set(dir(RuleFunctions))


def test_each_script_reads_exactly_the_audit_keys_of_its_rule():
    scripts = rule_scripts()
    config = validated(default_config())
    for rule, keys in AUDIT_KEYS.items():
        assert set(keys) <= set(config["audit"]), rule
        read = audit_keys_read(REPO / "workflow" / "scripts" / scripts[rule])
        assert read == set(keys), f"rule {rule}: script reads {sorted(read)}, rule passes {sorted(keys)}"
    passing = {m for path in RULES for m in re.findall(r'R\.audit_params\("(\w+)"\)', path.read_text())}
    assert passing == set(AUDIT_KEYS)


def test_rule_functions_answer_for_the_default_configuration():
    config = validated(default_config())
    r = RuleFunctions(config)
    w = SimpleNamespace(dataset="pbc", experiment="mlp", shard="1", wave="0")
    assert r.dataset_config(w) == config["datasets"]["pbc"]
    assert r.dataset_validation(w) == plan.validation_report(config, "pbc")
    assert r.shard_models(w) == plan.shard_models(config, "mlp", 1)
    assert r.dataset_utilities(w) == [f"{config['results']}/pbc/{e}/models/utility.tsv" for e in config["experiments"]]
    assert r.selection_choice(w) == {"choice": f"{config['results']}/pbc/mlp/selection/chosen.json"}
    assert r.audit_params("attack_aggregate") == {k: config["audit"][k] for k in AUDIT_KEYS["attack_aggregate"]}
    assert r.previous_wave_decision(w) == []
