"""Every file path and every ``mia_audit.…`` name the documentation mentions exists.

Read: README.md, docs/*.md, the report captions (workflow/report/*.rst), the rule files
(Snakefile, workflow/rules/*.smk) and the docstrings and comments of the library and the
scripts (workflow/**/*.py). Checked:

- a repository path (``workflow/…``, ``tests/…``, ``benchmarks/…``, ``config/…``, ``docs/…``,
  ``envs/…``, ``profiles/…``, ``data/…``, ``.ci/…``, and the top-level files such as
  ``README.md`` or ``Snakefile``) exists, unless it is a pattern (``{dataset}``, ``*``, ``<…>``)
  or a results path (a path inside the library, ``data/adapters/base.py``, counts too);
- a relative Markdown link (``[text](methods.md)``) points at a file that exists;
- a dotted name ``mia_audit.a.b.c`` imports: the longest importable module prefix, then each
  remaining part as an attribute.
"""

from __future__ import annotations

import builtins
import importlib
import re
from functools import cache
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TOP = r"(?:workflow|tests|benchmarks|config|docs|envs|profiles|data|\.ci)"
PATH = re.compile(rf"(?<![\w./{{-]){TOP}/[\w./{{}}<>*+-]*[\w*}}>]")
TOP_FILES = re.compile(r"(?<![\w./-])(README\.md|Snakefile|pyproject\.toml|LICENSE)(?![\w.-])")
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
DOTTED = re.compile(r"(?<![\w.])mia_audit(?:\.\w+)+")


def documents() -> list[Path]:
    docs = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    docs += sorted((REPO / "workflow" / "report").glob("*.rst"))
    docs += [REPO / "Snakefile", *sorted((REPO / "workflow" / "rules").glob("*.smk"))]
    docs += sorted((REPO / "workflow").rglob("*.py"))
    return docs


def is_pattern(path: str) -> bool:
    return any(c in path for c in "{}<>*") or path.endswith("/…")


def missing_paths(doc: Path, text: str) -> list[str]:
    out = []
    for raw in PATH.findall(text):
        path = raw.rstrip(".,;:")
        if is_pattern(path) or path.startswith(("data/raw", "tests/fixtures/")):
            continue
        # library-relative paths (``data/adapters/``, ``audit/stats.py``) in the developer docs
        if not (REPO / path).exists() and not (REPO / "workflow" / "mia_audit" / path).exists():
            out.append(path)
    for name in TOP_FILES.findall(text):
        if not (REPO / name).exists():
            out.append(name)
    if doc.suffix == ".md":
        for target in LINK.findall(text):
            if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
                continue
            if not (doc.parent / target).exists():
                out.append(target)
    return sorted(set(out))


@cache
def resolves(dotted: str, missing: type[Exception] = ModuleNotFoundError) -> bool:
    """The longest importable module prefix of ``dotted`` (an import raising ``missing`` counts
    as absent), then each remaining part as an attribute."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except missing:
            continue
        for attr in parts[cut:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


def test_the_reference_patterns_find_what_they_should():
    text = "see `workflow/mia_audit/audit/stats.py`, results/{dataset}/x and docs/methods.md."
    assert PATH.findall(text) == ["workflow/mia_audit/audit/stats.py", "docs/methods.md"]
    assert DOTTED.findall("(:func:`mia_audit.audit.stats.patient_risk`) and .mia_audit.x") == [
        "mia_audit.audit.stats.patient_risk"
    ]
    assert resolves("mia_audit.audit.stats.patient_risk") and not resolves("mia_audit.dp.accounting")
    assert missing_paths(REPO / "README.md", "[a](docs/nope.md) and `workflow/nope.py`") == [
        "docs/nope.md",
        "workflow/nope.py",
    ]


def test_every_documented_path_exists():
    problems = []
    for doc in documents():
        for path in missing_paths(doc, doc.read_text()):
            problems.append(f"{doc.relative_to(REPO)}: {path}")
    assert not problems, "paths that do not exist:\n" + "\n".join(problems)


def test_every_documented_module_and_function_imports():
    problems = []
    for doc in documents():
        for dotted in sorted(set(DOTTED.findall(doc.read_text()))):
            if not resolves(dotted):
                problems.append(f"{doc.relative_to(REPO)}: {dotted}")
    assert not problems, "mia_audit names that do not resolve:\n" + "\n".join(problems)


ROLE = re.compile(r":(?:func|class|meth|mod|data|attr|exc):`~?([\w.]+?)(?:\(\))?`")


def resolves_from(module, ref: str) -> bool:
    """A Sphinx cross-reference of ``module``'s docstrings: absolute, relative (``.records``),
    a name in the module (``membership_signal.logit_confidence``), or a third-party name."""
    if ref.startswith("mia_audit"):
        return resolves(ref)
    if ref.startswith("."):
        level = len(ref) - len(ref.lstrip("."))
        base = module.__name__.split(".")
        if module.__file__.endswith("__init__.py"):
            base.append("")
        return resolves(".".join(base[: len(base) - level] + [ref.lstrip(".")]))
    obj, ok = module, True
    for part in ref.split("."):
        if not hasattr(obj, part):
            ok = False
            break
        obj = getattr(obj, part)
    if not ok and "." not in ref:  # a method named inside its class's docstring
        ok = any(isinstance(c, type) and hasattr(c, ref) for c in vars(module).values())
    return ok or resolves_external(ref)


def resolves_external(ref: str) -> bool:
    # OSError, ValueError …; a third-party module that fails to import counts as absent
    return hasattr(builtins, ref) or resolves(ref, ImportError)


def test_every_cross_reference_in_the_library_resolves():
    """``:func:`…``` and its kin in the library's docstrings name something that exists."""
    problems = []
    for path in sorted((REPO / "workflow" / "mia_audit").rglob("*.py")):
        rel = path.relative_to(REPO / "workflow").with_suffix("")
        name = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        module = importlib.import_module(name)
        for ref in sorted(set(ROLE.findall(path.read_text()))):
            if not resolves_from(module, ref):
                problems.append(f"{rel}.py: {ref}")
    assert not problems, "cross-references that do not resolve:\n" + "\n".join(problems)
