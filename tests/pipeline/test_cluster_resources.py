"""The cluster user's way, checked by dry runs (no cluster needed): the site profile named
`slurm` installed by the documented command, `snakemake --profile slurm` as typed, the
workflow profile's groups and local rules (few submissions), and the shard rules' resources.

The resource formulas themselves are unit-tested by import in tests/pipeline/test_plan.py.
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
from pathlib import Path

import pytest
import yaml
from slurm_cluster import run_bounded
from workflow_config import small_config

REPO = Path(__file__).resolve().parents[2]
#: the documented command that installs the site profile (README, docs/hpc.md)
INSTALL = [sys.executable, "-m", "mia_audit.pipeline.site_profile"]


def bench_plan():
    """benchmarks/bench_plan.py (its dry-run parser counts SLURM submissions)."""
    spec = importlib.util.spec_from_file_location("bench_plan", REPO / "benchmarks" / "bench_plan.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


#: a stand-in `sinfo` (the answer of `sinfo -h -o '%P|%c|%m|%G|%l'`): one partition of 8-CPU
#: nodes with 4 H200 GPUs, so that these dry runs do not depend on whether a cluster is up here
SINFO = "debug*|8|64000|gpu:h200:4(S:0)|infinite"


def fake_sinfo(tmp_path: Path) -> str:
    """PATH with a stand-in sinfo first."""
    bindir = tmp_path / "fakebin"
    bindir.mkdir(exist_ok=True)
    script = bindir / "sinfo"
    script.write_text(f"#!/bin/sh\necho '{SINFO}'\n")
    script.chmod(0o755)
    return f"{bindir}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"


@pytest.fixture
def config_home(tmp_path: Path) -> Path:
    """An XDG config home with the site profile installed by the documented command."""
    home = tmp_path / "xdg"
    env = {**os.environ, "XDG_CONFIG_HOME": str(home), "PATH": fake_sinfo(tmp_path)}
    res = run_bounded([*INSTALL, "--partition", "debug", "--account", "mia"], 60, env=env)
    assert res.returncode == 0, res.stderr
    assert (home / "snakemake" / "slurm" / "config.yaml").is_file(), res.stdout
    return home


def run_dry(tmp_path: Path, config: dict | None, *args: str, config_home: Path | None = None):
    """`snakemake --profile ... --dry-run` in a fresh working directory (config and data linked)."""
    workdir = tmp_path / "wd"
    workdir.mkdir()
    for name in ("config", "data"):
        (workdir / name).symlink_to(REPO / name)
    env = dict(os.environ)
    env["PATH"] = fake_sinfo(tmp_path)
    if config_home is not None:
        env["XDG_CONFIG_HOME"] = str(config_home)
    extra = []
    if config is not None:
        (workdir / "test.yaml").write_text(yaml.safe_dump(config))
        extra = ["--configfile", str(workdir / "test.yaml")]
    cmd = [sys.executable, "-m", "snakemake", "--dry-run", "--snakefile", str(REPO / "Snakefile"), *args, *extra]
    return run_bounded(cmd, 180, env=env, cwd=workdir)


def test_installed_profile_and_command_line_cluster_settings(tmp_path: Path, config_home: Path) -> None:
    text = (config_home / "snakemake" / "slurm" / "config.yaml").read_text()
    assert 'slurm_partition: "debug"' in text and 'slurm_account: "mia"' in text and "<" not in text.split("#")[0]
    # the profile by name, cluster settings from the command line (strings there) as typed
    res = run_dry(
        tmp_path,
        small_config(n_models=8, per_job=2),
        "--profile",
        "slurm",
        "--config",
        "cluster={gpu: true, gpu_model: h200, table_cpus_per_job: 3}",
        "--group-components",
        "shards=3",
        config_home=config_home,
    )
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-4000:]
    assert re.search(r"Using profiles? slurm and workflow specific profile \S*profiles/default", out), out[-2000:]
    train = out.split("rule train_models:")[1:]
    assert len(train) == 4
    for block in train:
        lines = block.splitlines()
        res_line = next(line for line in lines if "resources:" in line)
        assert "gpu=1" in res_line and "gpu_model=h200" in res_line, res_line
        # threads = cluster.table_cpus_per_job (an MLP on a table)
        assert "threads: 3" in [line.strip() for line in lines], block[:600]
    # 4 shards, 3 per SLURM job → 2 shard groups; plus the setup group.
    assert out.count("Group job shards") == 2 and out.count("Group job setup") == 1, out[-3000:]
    # a profile that is already there is kept
    again = run_bounded(
        [*INSTALL], 60, env={**os.environ, "XDG_CONFIG_HOME": str(config_home), "PATH": fake_sinfo(tmp_path)}
    )
    assert again.returncode == 1 and "exists" in again.stderr and "--force" in again.stderr


def test_default_run_makes_one_submission_per_shard_group_plus_two(tmp_path: Path, config_home: Path) -> None:
    bench = bench_plan()
    res = run_dry(tmp_path, None, "--profile", "slurm", config_home=config_home)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-4000:]
    plan = bench.parse_dry_run(out, bench.local_rules())
    shard_groups = plan["groups"].pop("shards")
    assert shard_groups == 1, plan  # one shard of 200 models per experiment, 4 shards per SLURM job
    assert plan["submissions"] - shard_groups <= 2, plan  # one setup and one audit job
    assert plan["groups"] == {"setup": 1, "audit": 1} and not plan["ungrouped"], plan
    # the table and figure jobs run locally
    assert {"plot_experiment", "adjust_subgroups", "collect_model_metrics"} <= set(plan["local"])


def test_template_copied_by_hand_stops_at_its_placeholders(tmp_path: Path) -> None:
    res = run_dry(tmp_path, small_config(n_models=8, per_job=2), "--profile", str(REPO / "profiles" / "slurm"))
    out = res.stdout + res.stderr
    assert res.returncode != 0
    assert "slurm_partition=<partition>" in out and "template placeholder" in out, out[-3000:]


def test_every_rule_is_local_grouped_or_a_named_cluster_job() -> None:
    """A new rule must choose: a light local job (the Snakefile's localrules), a member of a
    job group of profiles/default, or one of the heavy jobs submitted on their own."""
    # heavy jobs submitted on their own: the public-model stages, and the decision after each
    # wave of an adaptive audit (a checkpoint: the jobs after it are not known before it ran)
    alone = {"prepare_public_candidates", "query_public_models", "attack_public_models", "assess_wave"}
    rules = set()
    for path in (REPO / "workflow" / "rules").glob("*.smk"):
        text = path.read_text()
        for m in re.finditer(r"^rule (\w+):\n((?:[ \t]+.*\n|\n)*)", text, flags=re.M):
            if re.search(r"^\s+(script|shell|run):", m.group(2), flags=re.M):
                rules.add(m.group(1))
    groups = set(yaml.safe_load((REPO / "profiles" / "default" / "config.yaml").read_text())["groups"])
    local = set(bench_plan().local_rules())
    assert rules, "no rules found"
    unplaced = sorted(rules - local - groups - alone)
    assert not unplaced, f"rules neither local, grouped nor named heavy jobs: {unplaced}"
    assert not (local & groups), f"rules both local and grouped: {sorted(local & groups)}"


def test_group_requests_follow_use_for_the_default_and_larger_plans(tmp_path: Path, capsys) -> None:
    """benchmarks/bench_requests.py's check, for the default and the 10- and 100-experiment plans:
    each group job's request (the workflow's per-job requests, sized by Snakemake with one job at
    a time) is at least the jobs' measured use, at most twice it plus the margins, and within a
    24-hour partition limit; side by side (no group_slot) the audit group would ask 4 CPUs."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_requests", REPO / "benchmarks" / "bench_requests.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    default = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    default["datasets"]["pbc"]["path"] = str(REPO / default["datasets"]["pbc"]["path"])
    assert bench.report("default", default, tmp_path / "default")
    for n in (10, 100):
        cfg = bench.benchmark_config("results", n_experiments=n)
        cfg["datasets"]["pbc"]["path"] = str(REPO / cfg["datasets"]["pbc"]["path"])
        assert bench.report(f"{n} experiments", cfg, tmp_path / str(n)), capsys.readouterr().out
    out = capsys.readouterr().out
    audit_100 = [line for line in out.splitlines() if line.startswith("audit")][-1]
    assert " 500 | " in audit_100 and "16.7 h" in audit_100 and "4 CPU" in audit_100, audit_100
