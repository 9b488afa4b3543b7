"""The software environments: envs/requirements.lock pins every package of envs/requirements.txt
and their dependencies with hashes; the conda files (envs/*.yaml) are what the lock gives
(envs/lock.py); every rule that runs code names a conda environment, and Snakemake accepts them.

Conda itself is not needed: the `--sdm conda` dry run uses a stand-in `conda` command that
only answers Snakemake's installation checks (version, info, channel priority).
"""

from __future__ import annotations

import importlib.util
import os
import re
import stat
import sys
from pathlib import Path

import pytest
import yaml
from slurm_cluster import run_bounded

REPO = Path(__file__).resolve().parents[2]
ENV_FILES = sorted((REPO / "envs").glob("*.yaml"))
REQUIREMENTS = REPO / "envs" / "requirements.txt"
LOCK_FILE = REPO / "envs" / "requirements.lock"

# conda-forge package → the PyPI distribution it provides.
CONDA_TO_PIP = {"matplotlib-base": "matplotlib", "pytorch": "torch", "py-opencv": "opencv-python"}
# Not Python packages of the project: the interpreter and the installer.
NOT_PACKAGES = {"python", "pip"}


def lock_module():
    """envs/lock.py (parses the lock file and computes each environment's closure)."""
    spec = importlib.util.spec_from_file_location("envs_lock", REPO / "envs" / "lock.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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


def parse_env(path: Path) -> dict[str, tuple[str, str, tuple[str, ...]]]:
    """{name: (version, 'conda'|'pip', hashes)} of a conda environment file; unpinned is an error."""
    spec = yaml.safe_load(path.read_text())
    out: dict[str, tuple[str, str, tuple[str, ...]]] = {}
    for dep in spec.get("dependencies", []):
        if isinstance(dep, dict):
            for line in dep.get("pip", []):
                m = re.fullmatch(r"\s*([A-Za-z0-9_.\-]+)==(\S+)((?:\s+--hash=sha256:[0-9a-f]{64})*)\s*", line)
                if not m:
                    raise ValueError(f"{path.name}: pip entry {line!r} is not pinned as name==version [--hash=…]")
                hashes = tuple(h.split("=", 1)[1] for h in m.group(3).split())
                out[normalise(m.group(1))] = (m.group(2), "pip", hashes)
            continue
        name, _, version = str(dep).partition("=")
        if normalise(name) in NOT_PACKAGES and not version.startswith("="):
            out[normalise(name)] = (version, "conda", ())
            continue
        m = re.fullmatch(r"([A-Za-z0-9_.\-]+)=([^=\s]+)(=\S+)?", str(dep))
        if not m:
            raise ValueError(f"{path.name}: conda dependency {dep!r} is not pinned as name=version")
        out[normalise(m.group(1))] = (m.group(2), "conda", ())
    return out


def test_name_normalisation_and_parsers(tmp_path: Path) -> None:
    assert normalise("matplotlib-base") == "matplotlib"
    assert normalise("PyYAML") == normalise("pyyaml") == "pyyaml"
    assert normalise("scikit_learn") == "scikit-learn"
    assert parse_requirements("torch==2.1.0  # cpu\n\nPyYAML==6.0\n") == {"torch": "2.1.0", "pyyaml": "6.0"}
    with pytest.raises(ValueError, match="numpy>=1"):
        parse_requirements("numpy>=1\n")
    env = tmp_path / "e.yaml"
    h = "0" * 64
    env.write_text(
        "dependencies:\n  - python=3.11\n  - pytorch=2.1.0=cpu_*\n  - pip\n  - pip:\n"
        f"      - torchvision==0.16.0 --hash=sha256:{h}\n"
    )
    assert parse_env(env) == {
        "python": ("3.11", "conda", ()),
        "torch": ("2.1.0", "conda", ()),
        "pip": ("", "conda", ()),
        "torchvision": ("0.16.0", "pip", (f"sha256:{h}",)),
    }
    env.write_text("dependencies:\n  - numpy\n")
    with pytest.raises(ValueError, match="numpy"):
        parse_env(env)
    lock = lock_module()
    text = (
        f"a==1 \\\n    --hash=sha256:{h}\n    # via -r envs/requirements.txt\n"
        f"b==2 \\\n    --hash=sha256:{h}\n    # via\n    #   a\n    #   c\n"
        "c==3\n    # via a\n"
    )
    parsed = lock.parse_lock(text)
    assert {k: v["version"] for k, v in parsed.items()} == {"a": "1", "b": "2", "c": "3"}
    assert parsed["a"]["hashes"] == [f"sha256:{h}"] and parsed["b"]["via"] == {"a", "c"}
    assert lock.closure(parsed, ["a"]) == ["a", "b", "c"] and lock.closure(parsed, ["c"]) == ["b", "c"]
    assert lock.closure(parsed, ["a"], provided=["c"]) == ["a", "b"]


def test_env_files_exist() -> None:
    names = {p.name for p in ENV_FILES}
    assert {"train.yaml", "analysis.yaml"} <= names, names
    assert REQUIREMENTS.exists() and LOCK_FILE.exists()


def test_lock_pins_every_package_with_hashes_and_agrees_with_the_requirements() -> None:
    lock = lock_module().parse_lock(LOCK_FILE.read_text())
    reqs = parse_requirements(REQUIREMENTS.read_text())
    differ = {n: (v, lock.get(n, {}).get("version")) for n, v in reqs.items() if lock.get(n, {}).get("version") != v}
    assert not differ, f"{REQUIREMENTS.name} and {LOCK_FILE.name} pin different versions (requirement, lock): {differ}"
    assert not [n for n, e in lock.items() if not e["hashes"]], "lock entries without a hash"
    top = [n for n, e in lock.items() if any(v.startswith("-r") for v in e["via"])]
    assert sorted(top) == sorted(reqs), "the lock's top-level packages are not requirements.txt's"
    # closed: whatever requires a pinned package is itself pinned
    for name, entry in lock.items():
        unknown = [v for v in entry["via"] if not v.startswith("-r") and v not in lock]
        assert not unknown, f"{name} is required by {unknown}, which the lock does not pin"
    assert {"torch", "numpy", "snakemake", "nvidia-cublas", "setuptools"} <= set(lock)  # transitive ones too


def test_conda_envs_are_what_the_lock_gives() -> None:
    """envs/*.yaml are regenerated from the lock by `python envs/lock.py`: same versions and
    hashes, each pip section the complete closure of its packages under the lock's dependencies."""
    module = lock_module()
    assert module.main(["--check"]) == 0, "envs/*.yaml are not what the lock gives: run `python envs/lock.py`"
    lock = module.parse_lock(LOCK_FILE.read_text())
    for path in ENV_FILES:
        env = parse_env(path)
        pip = {n for n, (_, kind, _) in env.items() if kind == "pip"}
        conda = {n for n, (_, kind, _) in env.items() if kind == "conda"} - NOT_PACKAGES
        for name, (version, kind, hashes) in env.items():
            if name in NOT_PACKAGES:
                continue
            assert version == lock[name]["version"], f"{path.name}: {name} {version} is not the lock's"
            if kind == "pip":
                assert list(hashes) == lock[name]["hashes"], f"{path.name}: {name} hashes differ from the lock"
        needed = set(module.closure(lock, pip, provided=conda))
        assert needed == pip, f"{path.name}: pip section not closed under dependencies: {sorted(needed ^ pip)}"


def test_analysis_environment_is_cpu_only() -> None:
    env = parse_env(REPO / "envs" / "analysis.yaml")
    text = (REPO / "envs" / "analysis.yaml").read_text()
    assert env["torch"][1] == "conda" and re.search(r"^  - pytorch=[\d.]+=cpu_\*$", text, re.M), text[:800]
    assert not [n for n in env if n.startswith(("nvidia-", "cuda-")) or n == "triton"], "CUDA packages in analysis"
    assert parse_env(REPO / "envs" / "train.yaml")["torch"][1] == "pip"  # PyPI's CUDA wheel for the GPU jobs


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
