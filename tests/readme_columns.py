"""The column lists of README.md ("What the run produces" → "Columns"), read as a test reads them.

Not a test module. A column list is a paragraph that starts with a table's path in backticks,
or with "With `<setting>`, " and then the path(s), and gives the columns either after its
first colon (in backticks, text in parentheses left out) or in the table that follows it
(the backticked names of each row's first cell). ``readme_columns()`` returns
``{(setting or None, path): [column, …]}``; ``check_tables`` compares them with the files of
a finished run. Each README path must be one of :data:`TABLES`, so a new list cannot stay
untested.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
TICK = re.compile(r"`([^`]+)`")
FILE = re.compile(r"\.(tsv|parquet)$")

#: README path → the file of a results folder it names, relative to the results folder
#: ({dataset}, {experiment} and {k} filled in for the test runs' names).
TABLES = {
    "records.parquet": "{dataset}/records.parquet",
    "{digest}_range_flags.tsv": "{dataset}/validation/*_range_flags.tsv",
    "selection/selection.tsv": "{dataset}/{experiment}/selection/selection.tsv",
    "baselines.tsv": "{dataset}/baselines.tsv",
    "baselines_predictions.parquet": "{dataset}/baselines_predictions.parquet",
    "models/metrics.tsv": "{dataset}/{experiment}/models/metrics.tsv",
    "models/shard_{k}_metrics.tsv": "{dataset}/{experiment}/models/shard_0_metrics.tsv",
    "models/utility.tsv": "{dataset}/{experiment}/models/utility.tsv",
    "audit/record_risk.parquet": "{dataset}/{experiment}/audit/record_risk.parquet",
    "audit/patient_risk.parquet": "{dataset}/{experiment}/audit/patient_risk.parquet",
    "audit/patient_thresholds.tsv": "{dataset}/{experiment}/audit/patient_thresholds.tsv",
    "audit/headline.tsv": "{dataset}/{experiment}/audit/headline.tsv",
    "subgroups/exposure_model.tsv": "{dataset}/{experiment}/subgroups/exposure_model.tsv",
    "audit/aggregate_attacks.tsv": "{dataset}/{experiment}/audit/aggregate_attacks.tsv",
    "audit/aggregate_roc.parquet": "{dataset}/{experiment}/audit/aggregate_roc.parquet",
    "audit/convergence.tsv": "{dataset}/{experiment}/audit/convergence.tsv",
    "audit/convergence_summary.tsv": "{dataset}/{experiment}/audit/convergence_summary.tsv",
    "audit/adaptive.tsv": "{dataset}/{experiment}/audit/adaptive.tsv",
    "subgroups/{attribute}.tsv": "{dataset}/{experiment}/subgroups/sex.tsv",
    "subgroups/tests_unadjusted.tsv": "{dataset}/{experiment}/subgroups/tests_unadjusted.tsv",
    "subgroups/composition.tsv": "{dataset}/{experiment}/subgroups/composition.tsv",
    "meta/subgroup_tests.tsv": "meta/subgroup_tests.tsv",
    "meta/meta_analysis.tsv": "meta/meta_analysis.tsv",
    "meta/meta_summary.tsv": "meta/meta_summary.tsv",
    "dp_utility.tsv": "{dataset}/dp_utility.tsv",
    "dp_empirical.tsv": "{dataset}/dp_empirical.tsv",
    "run/software.tsv": "run/software.tsv",
}

#: columns a README list describes in words rather than by name
#: (records.parquet: one text column per subgroup attribute of the data set)
KEYS = ("record_id", "patient_id", "label", "split")
DESCRIBED = {
    "records.parquet": lambda cols: [c for c in cols if c not in KEYS],
    # headline.tsv: "every column of patient_thresholds.tsv" between the candidate's and the range's
    "audit/headline.tsv": lambda cols: [c for c in cols[6:] if not c.startswith("range_")],
}


def strip_parentheses(text: str) -> str:
    """``text`` without any (…) part, nested ones included, outside backticks."""
    parts = re.split(r"(`[^`]*`)", text)
    out, depth = [], 0
    for part in parts:
        if part.startswith("`") and part.endswith("`") and len(part) > 1:
            if depth == 0:
                out.append(part)
            continue
        for ch in part:
            if ch == "(":
                depth += 1
            elif ch == ")":
                depth = max(depth - 1, 0)
            elif depth == 0:
                out.append(ch)
    return "".join(out)


def columns_section(text: str) -> str:
    start = text.index("### Columns")
    end = text.index("\n## ", start)
    return text[start:end]


def blocks(section: str) -> list[str]:
    return [b.strip() for b in re.split(r"\n\s*\n", section) if b.strip()]


def readme_columns(readme: Path = REPO / "README.md") -> dict[tuple[str | None, str], list[str]]:
    out: dict[tuple[str | None, str], list[str]] = {}
    parts = blocks(columns_section(readme.read_text()))
    for i, block in enumerate(parts):
        if block.startswith("|"):
            continue
        setting = None
        head = block
        if head.startswith("With `"):
            setting = TICK.search(head).group(1)
            head = head[head.index("`", 6) + 1 :]
        elif not head.startswith("`"):
            continue
        lead = strip_parentheses(head)
        # the paths: backticked names ending in .tsv/.parquet before the colon that ends the lead
        colon = re.search(r":(?=\s|$)", re.sub(r"`[^`]*`", lambda m: "x" * len(m.group(0)), lead))
        before = lead[: colon.start()] if colon else lead
        paths = [t for t in TICK.findall(before) if FILE.search(t)]
        if not paths:
            continue
        table = parts[i + 1] if i + 1 < len(parts) and parts[i + 1].startswith("| column") else None
        if table:
            cols = []
            for row in table.splitlines()[2:]:
                first = row.split("|")[1]
                cols += TICK.findall(strip_parentheses(first))
        else:
            assert colon, f"README column list without a colon or a table: {block[:80]!r}"
            cols = TICK.findall(lead[colon.end() :])
        for path in paths:
            key = (setting, path)
            assert key not in out, f"README lists the columns of {key} twice"
            out[key] = cols
    return out


def read_columns(path: Path) -> list[str]:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return list(pq.read_schema(path).names)
    return list(pd.read_csv(path, sep="\t", nrows=0).columns)


def check_tables(results: Path, names: dict, wanted: dict[str | None, set[str]]) -> list[str]:
    """Problems of the README's lists against the run in ``results``.

    ``names``: the run's ``dataset`` and ``experiment``. ``wanted``: for each setting (None =
    the plain run) the README paths to check; a setting's list must be exactly the columns
    the setting adds to the plain table (``with - without``), so ``wanted`` for a setting
    gives the paths whose file in this run has the setting on, and the plain list of the
    same path is checked against the rest.
    """
    lists = readme_columns()
    problems = []
    for setting, paths in wanted.items():
        for readme_path in sorted(paths):
            key = (setting, readme_path)
            if key not in lists:
                problems.append(f"README has no column list for {key}")
                continue
            matches = sorted(results.glob(TABLES[readme_path].format(**names)))
            if not matches:
                problems.append(f"{key}: the run wrote no {TABLES[readme_path].format(**names)}")
                continue
            actual = read_columns(matches[0])
            plain = lists.get((None, readme_path), [])
            extra = DESCRIBED.get(readme_path, lambda cols: [])(actual)
            if setting is None:
                others = {c for (s, p), cols in lists.items() if p == readme_path and s is not None for c in cols}
                got = [c for c in actual if c not in others or c in plain]
                documented = plain + extra
            else:
                got = [c for c in actual if c not in plain and c not in extra]
                documented = lists[key]
            missing = [c for c in got if c not in documented]
            absent = [c for c in documented if c not in actual]
            if missing:
                problems.append(f"{key}: the run writes {missing}, which the README does not list")
            if absent:
                problems.append(f"{key}: the README lists {absent}, which the run does not write")
    return problems


def undocumented_tables(results: Path) -> list[str]:
    """TSV and Parquet files of a run (logs aside) whose path no README list covers."""
    lists = readme_columns()
    patterns = [TABLES[p] for _, p in lists]
    out = []
    for path in sorted(results.rglob("*")):
        rel = re.sub(r"/access_[^/]+/", "/", path.relative_to(results).as_posix())  # same columns as the full audit
        # a tied selection candidate's audit: the same columns as the experiment's own tables
        rel = re.sub(r"/candidates/[^/]+/metrics\.tsv$", "/models/metrics.tsv", rel)
        rel = re.sub(r"/candidates/[^/]+/(patient_\w+\.\w+)$", r"/audit/\1", rel)
        if path.suffix not in (".tsv", ".parquet") or rel.startswith("logs/") or ".zarr/" in rel:
            continue
        if not any(Path(rel).match(_generic(p)) for p in patterns):
            out.append(rel)
    return out


def _generic(pattern: str) -> str:
    """A TABLES pattern with its test-run names widened to any name."""
    return re.sub(r"\{\w+\}", "*", pattern.replace("sex.tsv", "*.tsv").replace("shard_0_", "shard_*_"))
