"""The workflow used as a Snakemake module, deployed with snakedeploy into a temporary folder
(tests/deployment.py): its library installed from the deployed source (a wheel, not the
checkout), a dry run from the deployed folder plans the whole audit with the workflow profile's
groups. The real run through SLURM is in tests/workflow/test_slurm_workflow.py."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from deployment import deploy, install_library, source_copy, write_config
from slurm_cluster import run_bounded
from workflow_config import small_config


def test_deployed_module_plans_the_audit(tmp_path: Path) -> None:
    source = source_copy(tmp_path / "source")
    dest = tmp_path / "deployed"
    snakefile = deploy(source, dest)
    site = install_library(source, tmp_path / "site")
    results = tmp_path / "results"
    write_config(dest, small_config(results=results, n_models=8, per_job=2))
    env = {**os.environ, "PYTHONPATH": str(site), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    cmd = [sys.executable, "-m", "snakemake", "--dry-run", "--cores", "1"]  # as typed in the deployed folder
    res = run_bounded(cmd, 300, env=env, cwd=dest)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-4000:]
    assert "workflow specific profile profiles/default" in out  # the deployed workflow profile
    for rule in ("prepare_dataset", "train_models", "query_models", "audit_records", "plot_experiment"):
        assert f"rule {rule}:" in out or f"localrule {rule}:" in out, rule
    assert str(results) in out
    # the library came from the deployed source, not the checkout the tests run from
    probe = run_bounded([sys.executable, "-c", "import mia_audit; print(mia_audit.__file__)"], 60, env=env)
    assert probe.stdout.strip().startswith(str(site)), probe.stdout
    assert snakefile.read_text().count("use rule * from mia_audit") == 1


def test_module_without_the_library_names_the_install_command(tmp_path: Path) -> None:
    """Snakemake started from an environment without the library: one error naming what to install."""
    source = source_copy(tmp_path / "source")
    dest = tmp_path / "deployed"
    deploy(source, dest)
    write_config(dest, small_config(results=tmp_path / "results", n_models=8, per_job=2))
    empty = tmp_path / "empty"
    empty.mkdir()
    # the library's package hidden: an empty folder first on the path that shadows it
    (empty / "mia_audit").mkdir()
    (empty / "mia_audit" / "__init__.py").write_text("raise ImportError('not installed here')\n")
    env = {**os.environ, "PYTHONPATH": str(empty)}
    res = run_bounded([sys.executable, "-m", "snakemake", "--dry-run", "--cores", "1"], 300, env=env, cwd=dest)
    out = res.stdout + res.stderr
    assert res.returncode != 0
    assert f"pip install '{source}'" in out and "mia_audit is not importable" in out, out[-3000:]
