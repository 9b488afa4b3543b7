"""Lock the software environments: envs/requirements.txt → envs/requirements.lock → envs/*.yaml.

    python envs/lock.py            # regenerate the lock file and the conda environments
    python envs/lock.py --check    # exit 1 if the conda environments are not what the lock gives

``envs/requirements.txt`` names the top-level packages (pinned). The lock file pins every
package they need, transitively, with the sha256 hashes of the distributions (``uv pip
compile --generate-hashes`` for Python 3.11 on Linux x86-64); ``pip install -r
envs/requirements.lock`` then installs exactly these files or fails. uv is taken from PATH or
``$UV`` (``pip install uv==0.13.8``); the package indexes are pip's own configuration (its
``extra-index-url`` and ``find-links``, e.g. a local mirror), so the lock is made from what
pip would install here.

The conda environments of the rules (``envs/train.yaml``, ``envs/analysis.yaml``) are written
from the lock: conda supplies Python and pip (and, for the CPU-only analysis environment, the
CPU builds of PyTorch and torchvision from conda-forge); every other package is a pip entry
pinned to the lock's version and hashes, the complete dependency closure of the
environment's top-level packages (the lock's "via" annotations are the dependency graph).
``tests/pipeline/test_envs.py`` checks that the three files agree.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ENVS = Path(__file__).resolve().parent
REQUIREMENTS = ENVS / "requirements.txt"
LOCK = ENVS / "requirements.lock"
PYTHON = "3.11"
PLATFORM = "x86_64-manylinux_2_28"
UV_VERSION = "0.13.8"
COMMAND = "python envs/lock.py"

#: conda environments: what conda supplies (by conda name, versions from the lock where it
#: names a Python package) and the top-level packages whose closure pip installs
CONDA_ENVS = {
    "train": {
        "comment": [
            "Training and querying target models (GPU nodes). PyTorch comes from PyPI, whose",
            "Linux wheels are CUDA-enabled and also run on CPU.",
        ],
        "conda": {"python": PYTHON, "pip": None},
        "roots": [
            "torch", "torchvision", "opacus", "numpy", "pandas", "pyarrow", "xarray", "zarr", "numcodecs",
            "scipy", "scikit-learn", "safetensors", "torchxrayvision", "scikit-image", "pydicom",
            "xgboost-cpu", "lightgbm", "skops", "joblib", "threadpoolctl",
            # dp-accounting: the PLD accountant that calibrates DP-SGD's noise (train/accounting.py)
            "dp-accounting",
            # the library's defaults (settings.complete), and what a job's script can reach through it
            "jsonschema", "pyyaml", "openpyxl",
            # audit_candidate audits a tied selection candidate in its training job (intervals)
            "statsmodels",
        ],
    },
    "analysis": {
        "comment": [
            "Data preparation, the audit statistics, figures and report: CPU only. PyTorch (which",
            "the library's shared modules import) and torchvision are conda-forge's CPU builds;",
            "no CUDA libraries are installed.",
        ],
        "conda": {"python": PYTHON, "pip": None, "pytorch": "torch=cpu_*", "torchvision": "torchvision=cpu_*"},
        "roots": [
            "numpy", "pandas", "pyarrow", "xarray", "zarr", "numcodecs", "scipy", "statsmodels", "scikit-learn",
            "matplotlib", "safetensors", "pydicom", "wfdb", "openpyxl", "pyyaml", "torchxrayvision", "dp-accounting",
            # the library's defaults (settings.complete); Opacus's accountants, reachable from
            # the cube's jobs through the library's training modules (tests/pipeline/test_env_imports.py)
            "jsonschema", "opacus",
        ],
    },
}  # fmt: skip


def normalise(name: str) -> str:
    """PEP 503 name: lower case, runs of -_. as one -."""
    return re.sub(r"[-_.]+", "-", name.strip().lower())


def parse_lock(text: str) -> dict[str, dict]:
    """``{name: {"line": "name==version", "version", "hashes": [...], "via": {names or "-r ..."}}}``."""
    out: dict[str, dict] = {}
    current = None
    via_block = False
    for raw in text.splitlines():
        line = raw.strip()
        m = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s\\;]+)", raw)
        if m:
            current = normalise(m.group(1))
            out[current] = {"name": m.group(1), "version": m.group(2), "hashes": [], "via": set()}
            via_block = False
            continue
        if current is None:
            continue
        h = re.match(r"^--hash=(sha256:[0-9a-f]{64})", line)
        if h:
            out[current]["hashes"].append(h.group(1))
        elif line.startswith("# via"):
            rest = line[len("# via") :].strip()
            via_block = not rest
            if rest:
                out[current]["via"].add(rest if rest.startswith("-r") else normalise(rest))
        elif via_block and line.startswith("#   "):
            item = line[4:].strip()
            out[current]["via"].add(item if item.startswith("-r") else normalise(item))
        elif not line.startswith("#"):
            via_block = False
    return out


def dependencies(lock: dict[str, dict]) -> dict[str, set[str]]:
    """Forward graph from the lock's reverse annotations: ``{package: its requirements}``."""
    deps: dict[str, set[str]] = {name: set() for name in lock}
    for name, entry in lock.items():
        for parent in entry["via"]:
            if parent in deps:
                deps[parent].add(name)
    return deps


def closure(lock: dict[str, dict], roots, provided=()) -> list[str]:
    """The roots and everything they need (sorted), not entering packages in ``provided``
    (supplied otherwise, e.g. by conda) or their requirements."""
    deps = dependencies(lock)
    provided = {normalise(p) for p in provided}
    todo = [normalise(r) for r in roots if normalise(r) not in provided]
    missing = [r for r in todo if r not in lock]
    if missing:
        raise KeyError(f"{LOCK.name} does not pin {missing}")
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen or name in provided:
            continue
        seen.add(name)
        todo.extend(deps[name])
    return sorted(seen)


def pip_line(entry: dict) -> str:
    return " ".join([f"{entry['name']}=={entry['version']}", *(f"--hash={h}" for h in entry["hashes"])])


def conda_env(name: str, lock: dict[str, dict]) -> str:
    """The text of envs/<name>.yaml, from the lock."""
    spec = CONDA_ENVS[name]
    lines = [f"# {c}" for c in spec["comment"]]
    lines += [
        f"# Generated by `{COMMAND}` from requirements.lock: every pip package of the environment",
        "# pinned with its hashes (the complete closure of its top-level packages); do not edit.",
        "channels:",
        "  - conda-forge",
        "  - nodefaults",
        "dependencies:",
    ]
    provided = []
    for conda_name, pin in spec["conda"].items():
        if conda_name == "python":
            lines.append(f"  - python={pin}")
        elif conda_name == "pip":
            lines.append("  - pip")
        else:
            pip_name, build = pin.split("=", 1)
            provided.append(pip_name)
            lines.append(f"  - {conda_name}={lock[normalise(pip_name)]['version']}={build}")
    lines.append("  - pip:")
    for pkg in closure(lock, spec["roots"], provided):
        lines.append(f'      - "{pip_line(lock[pkg])}"')
    return "\n".join(lines) + "\n"


def pip_indexes() -> list[str]:
    """uv options for the indexes pip is configured with (extra-index-url, find-links)."""
    res = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, check=False)
    opts = []
    for line in res.stdout.splitlines():
        key, _, value = line.partition("=")
        value = value.strip().strip("'\"")
        for url in value.split():
            if key.endswith(".extra-index-url"):
                opts += ["--extra-index-url", url]
            elif key.endswith(".find-links"):
                opts += ["--find-links", url]
    for url in os.environ.get("PIP_FIND_LINKS", "").split():
        opts += ["--find-links", url]
    return opts


def compile_lock() -> str:
    uv = os.environ.get("UV") or shutil.which("uv")
    if not uv:
        sys.exit(f"uv not found: pip install uv=={UV_VERSION} (or set UV=/path/to/uv)")
    cmd = [
        uv, "pip", "compile", str(REQUIREMENTS.relative_to(ENVS.parent)),
        "--generate-hashes", "--no-header", "--python-version", PYTHON, "--python-platform", PLATFORM,
        "--index-strategy", "unsafe-best-match", *pip_indexes(),
    ]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=ENVS.parent, check=False)
    if res.returncode != 0:
        sys.exit(f"uv pip compile failed:\n{res.stderr[-4000:]}")
    header = (
        f"# Every package of envs/requirements.txt and its dependencies, pinned with hashes, for\n"
        f"# Python {PYTHON} on Linux x86-64. Generated by `{COMMAND}` (uv {UV_VERSION}); do not edit.\n"
        "# Install: pip install -r envs/requirements.lock\n"
    )
    return header + res.stdout


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="only check that the conda environments match the lock")
    args = ap.parse_args(argv)
    if not args.check:
        LOCK.write_text(compile_lock())
    lock = parse_lock(LOCK.read_text())
    stale = []
    for name in CONDA_ENVS:
        path = ENVS / f"{name}.yaml"
        text = conda_env(name, lock)
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(path.name)
        else:
            path.write_text(text)
    if stale:
        print(f"not what {LOCK.name} gives: {stale}; run `{COMMAND}`", file=sys.stderr)
        return 1
    print(f"{LOCK.name}: {len(lock)} packages" + ("" if args.check else "; wrote " + ", ".join(CONDA_ENVS)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
