"""The software environments: conda files (envs/*.yaml) agree with envs/requirements.txt,
every rule that runs code names a conda environment, and Snakemake accepts them.

Conda itself is not needed: the `--sdm conda` dry run uses a stand-in `conda` command that
only answers Snakemake's installation checks (version, info, channel priority).
"""

from __future__ import annotations

import os
import re
import stat
import sys
from pathlib import Path

import pytest
import yaml
from slurm_cluster import run_bounded

REPO = Path(__file__).resolve().parents[1]
ENV_FILES = sorted((REPO / "envs").glob("*.yaml"))
REQUIREMENTS = REPO / "envs" / "requirements.txt"

# conda-forge package → the PyPI distribution it provides.
CONDA_TO_PIP = {"matplotlib-base": "matplotlib", "pytorch": "torch", "py-opencv": "opencv-python"}
# Not Python packages of the project: the interpreter and the installer.
NOT_PACKAGES = {"python", "pip"}


def normalise(name: str) -> str:
    """PEP 503 name (lower case, runs of -_. as -), with conda-only names mapped to PyPI's."""
    name = re.sub(r"[-_.]+", "-", name.strip().lower())
    return CONDA_TO_PIP.get(name, name)


def parse_requirements(text: str) -> dict[str, str]:
    """{name: version} of `name==version` lines; any other requirement form is an error."""
    out = {}
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        m = re.fullmatch(r"([A-Za-z0-9_.\-\[\]]+?)==([^\s;]+)", line)
        if not m:
            raise ValueError(f"{REQUIREMENTS.name}: {raw!r} is not pinned as name==version")
        out[normalise(re.sub(r"\[.*\]", "", m.group(1)))] = m.group(2)
    return out


def parse_env(path: Path) -> dict[str, tuple[str, str]]:
    """{name: (version, 'conda'|'pip')} of a conda environment file; unpinned is an error."""
    spec = yaml.safe_load(path.read_text())
    out: dict[str, tuple[str, str]] = {}
    for dep in spec.get("dependencies", []):
        if isinstance(dep, dict):
            for line in dep.get("pip", []):
                m = re.fullmatch(r"\s*([A-Za-z0-9_.\-]+)==(\S+)\s*", line)
                if not m:
                    raise ValueError(f"{path.name}: pip entry {line!r} is not pinned as name==version")
                out[normalise(m.group(1))] = (m.group(2), "pip")
            continue
        name, _, version = str(dep).partition("=")
        if normalise(name) in NOT_PACKAGES and not version.startswith("="):
            out[normalise(name)] = (version, "conda")
            continue
        m = re.fullmatch(r"([A-Za-z0-9_.\-]+)=([^=\s]+)(=\S+)?", str(dep))
        if not m:
            raise ValueError(f"{path.name}: conda dependency {dep!r} is not pinned as name=version")
        out[normalise(m.group(1))] = (m.group(2), "conda")
    return out


def test_name_normalisation_and_parsers(tmp_path: Path) -> None:
    assert normalise("matplotlib-base") == "matplotlib"
    assert normalise("PyYAML") == normalise("pyyaml") == "pyyaml"
    assert normalise("scikit_learn") == "scikit-learn"
    assert parse_requirements("torch==2.1.0  # cpu\n\nPyYAML==6.0\n") == {"torch": "2.1.0", "pyyaml": "6.0"}
    with pytest.raises(ValueError, match="numpy>=1"):
        parse_requirements("numpy>=1\n")
    env = tmp_path / "e.yaml"
    env.write_text(
        "dependencies:\n  - python=3.11\n  - matplotlib-base=3.9.0\n  - pip\n  - pip:\n      - torch==2.1.0\n"
    )
    assert parse_env(env) == {
        "python": ("3.11", "conda"),
        "matplotlib": ("3.9.0", "conda"),
        "pip": ("", "conda"),
        "torch": ("2.1.0", "pip"),
    }
    env.write_text("dependencies:\n  - numpy\n")
    with pytest.raises(ValueError, match="numpy"):
        parse_env(env)


def test_env_files_exist() -> None:
    names = {p.name for p in ENV_FILES}
    assert {"train.yaml", "analysis.yaml"} <= names, names
    assert REQUIREMENTS.exists()


@pytest.mark.parametrize("env_file", ENV_FILES, ids=lambda p: p.name)
def test_env_pins_match_requirements(env_file: Path) -> None:
    reqs = parse_requirements(REQUIREMENTS.read_text())
    env = parse_env(env_file)
    missing = sorted(n for n in env if n not in NOT_PACKAGES and n not in reqs)
    assert not missing, f"{env_file.name} uses {missing}, which {REQUIREMENTS.name} does not pin"
    differ = {n: (v, reqs[n]) for n, (v, _) in env.items() if n in reqs and v != reqs[n]}
    assert not differ, f"{env_file.name} and {REQUIREMENTS.name} pin different versions (env, pip): {differ}"


def test_env_files_agree_with_each_other() -> None:
    pins: dict[str, dict[str, str]] = {}
    for path in ENV_FILES:
        for name, (version, _) in parse_env(path).items():
            if name != "pip":
                pins.setdefault(name, {})[path.name] = version
    differ = {n: v for n, v in pins.items() if len(set(v.values())) > 1}
    assert not differ, f"environment files pin different versions: {differ}"


def rule_blocks(text: str) -> dict[str, str]:
    """{rule name: its body} of a Snakefile or rule file (top-level `rule NAME:` blocks)."""
    blocks, name, body = {}, None, []
    for line in text.splitlines():
        m = re.match(r"^(?:local)?rule (\w+):", line)
        if m or (line and not line[0].isspace() and name):
            if name:
                blocks[name] = "\n".join(body)
            name, body = (m.group(1), []) if m else (None, [])
            continue
        if name:
            body.append(line)
    if name:
        blocks[name] = "\n".join(body)
    return blocks


def test_every_rule_that_runs_code_has_a_conda_env() -> None:
    files = [REPO / "Snakefile", *sorted((REPO / "workflow" / "rules").glob("*.smk"))]
    runs_code = re.compile(r"^\s+(script|shell|run|notebook|wrapper):", re.M)
    seen, lacking = [], []
    for path in files:
        for name, body in rule_blocks(path.read_text()).items():
            seen.append(name)
            if runs_code.search(body) and not re.search(r"^\s+conda:", body, re.M):
                lacking.append(f"{path.relative_to(REPO)}:{name}")
            env = re.search(r"^\s+conda:\s*\n\s+\"([^\"]+)\"", body, re.M)
            if env:
                assert (path.parent / env.group(1)).resolve() in [p.resolve() for p in ENV_FILES], (
                    f"rule {name} uses {env.group(1)}, not one of envs/*.yaml"
                )
    assert {"train_models", "query_models", "prepare_dataset", "audit_records"} <= set(seen), seen
    assert not lacking, f"rules without a conda: directive: {lacking}"


LINT_NO_ENV = "Specify a conda environment or container for each rule"


def test_snakemake_lint_finds_no_missing_environment(tmp_path: Path) -> None:
    # The lint does flag a rule without an environment ...
    (tmp_path / "Snakefile").write_text(
        'rule bare:\n    output: "x"\n    log: "x.log"\n    shell: "touch {output} 2> {log}"\n'
    )
    bad = run_bounded([sys.executable, "-m", "snakemake", "--lint"], 120, cwd=tmp_path)
    assert LINT_NO_ENV in bad.stdout + bad.stderr, bad.stdout + bad.stderr
    # ... and finds none in the workflow.
    res = run_bounded([sys.executable, "-m", "snakemake", "--lint"], 120, cwd=REPO)
    out = res.stdout + res.stderr
    assert ("Lints for" in out or "good condition" in out) and LINT_NO_ENV not in out, out[-4000:]


def fake_conda(bindir: Path, prefix: Path) -> None:
    """A `conda` that answers Snakemake's checks only; creating an environment fails."""
    script = f"""#!/bin/sh
case "$*" in
  "--version") echo "conda 24.7.1" ;;
  "info --json") echo '{{"conda_prefix": "{prefix}", "platform": "linux-64", "envs_dirs": ["{prefix}/envs"]}}' ;;
  "config --get channel_priority --json") echo '{{"get": {{"channel_priority": "strict"}}}}' ;;
  *) echo "stand-in conda: $*" >&2; exit 1 ;;
esac
"""
    path = bindir / "conda"
    path.write_text(script)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


def test_sdm_conda_dry_run_accepts_environments(tmp_path: Path) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake_conda(bindir, tmp_path / "conda")
    env = dict(os.environ)
    env["PATH"] = f"{bindir}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "--sdm",
        "conda",
        "--dry-run",
        "--forceall",
        "--config",
        f"results={tmp_path / 'results'}",
    ]
    res = run_bounded(cmd, 120, env=env, cwd=REPO)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-4000:]
    assert "This was a dry-run" in out, out[-2000:]
    # Snakemake read both environment files and would create them.
    for path in ENV_FILES:
        if path.name in ("train.yaml", "analysis.yaml"):
            assert f"envs/{path.name}" in out, f"{path.name} not among the environments:\n{out[-3000:]}"
