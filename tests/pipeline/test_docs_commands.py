"""Every command the documentation shows works, so the docs cannot drift from the workflow.

The shell blocks (```sh / ```bash) of README.md and docs/*.md are read, continuation lines
joined, `&&` chains and pipes split. Each `snakemake` command is dry-run (`--dry-run` added)
from a scratch working directory that sees the repository's config/ and data/, with the
placeholders filled in:

- `--partition NAME --account NAME` of the site-profile command → `debug` / `mia`; that
  command itself runs first, for real, into a temporary config home (XDG_CONFIG_HOME), so
  `--profile slurm` resolves as it does for a user;
- data roots `/data/<name>` → empty scratch directories;
- `my_config.yaml` (docs/public_models.md) → config/config.yaml plus the doc's own
  `public_models:` YAML block, its data roots and `weights_dir` pointed at scratch folders
  holding (empty) files named as the doc's weights table says;
- `my_cohort.yaml` (docs/own_data.md) → the doc's own complete config, its YAML block that
  starts with ``# my_cohort.yaml``, written as it stands;
- `--sdm conda` runs with a stand-in `conda` that answers Snakemake's checks (tests/pipeline/test_envs.py);
- `sinfo` is a stand-in for the site the docs describe (partitions `debug` and `gpu`, nodes of
  16 CPUs, 128 GB and four A100s), so the partition and GPU checks of a SLURM run see the
  partitions and GPUs the commands name, whatever the machine's own cluster has;
- the storage prefix `/shared/remote` → a scratch folder holding `data/`, as docs/hpc.md tells
  the user to put the data set's file under the prefix.

Identical commands are dry-run once. `--report` needs a finished run and is exercised by
tests/workflow/test_workflow.py; `--conda-create-envs-only` creates environments even in a dry run, so
it needs a real conda (the same environment files pass the `--sdm conda` dry run). Other
commands (pip, pytest, benchmarks, .ci scripts) are not run; the repository files they name
must exist. The dry runs run two at a time.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml
from slurm_cluster import run_bounded
from test_envs import fake_conda

REPO = Path(__file__).resolve().parents[2]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
FENCE = re.compile(r"^[ \t]*```(\w*)[ \t]*\n(.*?)^[ \t]*```", re.M | re.S)
SHELL_LANGS = {"sh", "bash", "shell"}
SITE_PROFILE = ("-m", "mia_audit.pipeline.site_profile")

pytestmark = pytest.mark.slow


def doc_blocks(path: Path, langs) -> list[str]:
    return [textwrap.dedent(body) for lang, body in FENCE.findall(path.read_text()) if lang in langs]


def shell_commands(block: str) -> list[list[str]]:
    """The commands of a shell block: one per line (continuations joined), split at && and |."""
    out = []
    for line in block.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        cmd: list[str] = []
        for w in [*words, "&&"]:
            if w in ("&&", "|", ";"):
                if cmd:
                    out.append(cmd)
                cmd = []
            else:
                cmd.append(w)
    return out


def documented_commands() -> list[tuple[str, list[str]]]:
    return [
        (path.name, cmd) for path in DOCS for block in doc_blocks(path, SHELL_LANGS) for cmd in shell_commands(block)
    ]


def program(cmd: list[str]) -> str:
    return Path(cmd[0]).name


def test_the_docs_show_the_commands_a_user_needs() -> None:
    cmds = [" ".join(c) for _, c in documented_commands()]
    assert any(c.startswith(".venv/bin/python -m mia_audit.pipeline.site_profile") for c in cmds), cmds
    assert any(c == ".venv/bin/snakemake --profile slurm" for c in cmds), cmds
    assert any("public_models_all" in c for c in cmds), cmds
    assert any("--configfile my_cohort.yaml" in c and "selection.tsv" in c for c in cmds), cmds
    # the parser sees continuation lines, chains and comments as a shell does
    assert shell_commands("a b \\\n  c && d 'e f' | g  # note\n") == [["a", "b", "c"], ["d", "e f"], ["g"]]


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    """Working directory, config home, stand-in conda and the filled-in placeholders."""
    root = tmp_path_factory.mktemp("docs")
    work = root / "work"
    work.mkdir()
    for name in ("config", "data"):
        (work / name).symlink_to(REPO / name)
    bindir = root / "bin"
    bindir.mkdir()
    fake_conda(bindir, root / "conda")
    sinfo = bindir / "sinfo"
    sinfo.write_text(
        "#!/bin/sh\necho 'debug*|16|128000|gpu:a100:4|1-00:00:00'\necho 'gpu|16|128000|gpu:a100:4|1-00:00:00'\n"
    )
    sinfo.chmod(0o755)
    (root / "remote").mkdir()
    (root / "remote" / "data").symlink_to(REPO / "data")
    env = dict(os.environ)
    env["PATH"] = f"{bindir}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["XDG_CONFIG_HOME"] = str(root / "xdg")
    return {"root": root, "work": work, "env": env}


def public_models_config(root: Path) -> Path:
    """my_config.yaml of docs/public_models.md: the default config plus the doc's YAML block."""
    doc = REPO / "docs" / "public_models.md"
    block = next(b for b in doc_blocks(doc, {"yaml"}) if b.lstrip().startswith("public_models:"))
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    cfg["datasets"]["pbc"]["path"] = str(REPO / "data" / "pbcseq.csv")
    public = yaml.safe_load(block)["public_models"]
    weights = root / "xrv_weights"
    weights.mkdir(exist_ok=True)
    for name in re.findall(r"`([\w.-]+\.pt)`", doc.read_text()):  # the weights table's file names
        (weights / name).write_bytes(b"")
    for audit in public.values():
        audit["weights_dir"] = str(weights)
        for cand in audit["candidates"].values():
            cand["root"] = str(data_root(root, cand["root"]))
    cfg["public_models"] = public
    path = root / "my_config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def own_data_config(root: Path) -> Path:
    """my_cohort.yaml of docs/own_data.md: the doc's complete config block, as it stands."""
    doc = REPO / "docs" / "own_data.md"
    block = next(b for b in doc_blocks(doc, {"yaml"}) if b.lstrip().startswith("# my_cohort.yaml"))
    path = root / "my_cohort.yaml"
    path.write_text(block)
    return path


def data_root(root: Path, documented: str) -> Path:
    """A scratch directory standing in for a documented data root such as /data/chexpert."""
    path = root / "data_roots" / Path(documented).name
    path.mkdir(parents=True, exist_ok=True)
    return path


def fill(cmd: list[str], scratch: dict) -> list[str]:
    root = scratch["root"]
    out = []
    for i, word in enumerate(cmd):
        prev = cmd[i - 1] if i else ""
        if word == "NAME" and prev in ("--partition", "--account"):
            word = {"--partition": "debug", "--account": "mia"}[prev]
        elif word == "my_config.yaml":
            word = str(public_models_config(root))
        elif word == "my_cohort.yaml":
            word = str(own_data_config(root))
        elif word == "/shared/remote":
            word = str(root / "remote")
        else:
            word = re.sub(r"(?<![\w/])/data/[\w.-]+", lambda m: str(data_root(root, m.group(0))), word)
        out.append(word)
    return out


def test_every_documented_command_works(scratch) -> None:
    commands = documented_commands()
    # the site profile first: the `--profile slurm` commands need it, as a user's do
    commands.sort(key=lambda item: tuple(item[1][1:3]) != SITE_PROFILE)
    seen: set[tuple[str, ...]] = set()
    first, dry_runs, failures = [], [], []
    for doc, cmd in commands:
        name = program(cmd)
        if name == "snakemake":
            if "--report" in cmd or "--conda-create-envs-only" in cmd:
                # need a finished run (tests/workflow/test_workflow.py) or a real conda (creates even in a dry run)
                continue
            args = [w for w in fill(cmd[1:], scratch) if w not in ("--dry-run", "-n")]
            if tuple(args) in seen:
                continue
            seen.add(tuple(args))
            full = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--dry-run", *args]
            dry_runs.append((doc, cmd, full))
        elif name.startswith("python") and tuple(cmd[1:3]) == SITE_PROFILE:
            full = [sys.executable, *fill(cmd[1:], scratch)]
            if tuple(full) not in seen:
                seen.add(tuple(full))
                first.append((doc, cmd, full))
        else:
            # not run here: the repository files it names must exist
            named = [w for w in cmd if re.fullmatch(r"[\w.-]+/[\w./-]+\.(py|sh|txt|lock|yaml|md)", w)]
            missing = [w for w in named if not (REPO / w).exists() and not w.startswith(".venv/")]
            if missing:
                failures.append(f"{doc}: {' '.join(cmd)}\n  names missing files {missing}")

    def run(item):
        doc, cmd, full = item
        res = run_bounded(full, 240, env=scratch["env"], cwd=scratch["work"])
        if res.returncode != 0:
            return f"{doc}: {' '.join(cmd)}\n  exit {res.returncode}: {(res.stderr + res.stdout)[-1500:]}"
        return None

    failures += [f for f in map(run, first) if f]
    with ThreadPoolExecutor(2) as pool:  # dry runs mostly wait on imports and the file system
        failures += [f for f in pool.map(run, dry_runs) if f]
    assert not failures, "documented commands that fail:\n" + "\n".join(failures)
    assert first and len(dry_runs) >= 8, (first, dry_runs)  # the docs' snakemake commands, deduplicated
