"""``table``: one CSV or Parquet row per record, described entirely by the config block.

The file, the patient-id column, the label, the features, the subgroup attributes and the
test share come from the data set's config block (``config/schema.yaml``); ids, the split and
the subgroup columns follow :mod:`mia_audit.data.records`, and the id and label columns are read
as text, exactly as written (:func:`read_table`). :func:`prepare_table` applies the filters, the
dates, the checks (before any output is written), the label's explicit mapping of raw values to
classes (:func:`label_mapping`), the plausibility flags, the missing-value rule (pool median plus
an indicator), one-hot encoding and standardisation with pool statistics; other table data sets
(e.g. :mod:`.mimic_iv_ed`) read their own layout and then use it too. The rules, in order:
docs/own_data.md.
"""

from __future__ import annotations

import gzip
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from mia_audit.data.adapters.base import require_columns
from mia_audit.data.layout import table_path
from mia_audit.data.records import (
    add_subgroups,
    check_ids,
    check_split,
    id_label,
    split_patients,
    subgroup_columns,
)
from mia_audit.data.spec import check_dataset_spec
from mia_audit.errors import DataError
from mia_audit.settings import complete

#: largest magnitude accepted in a numeric feature: beyond it a value is a coding error (a
#: sentinel such as 1e308, a date in nanoseconds), and float64 sums of squares lose precision
MAX_ABS = 1e15
#: a univariate leak needs this many records of each class among those it is computed on
LEAK_MIN_CLASS = 10
#: values of a feature that hold at least this share of the records (and 5 records) are
#: tested as indicators by :func:`leakage_scan` (at most the 5 most frequent)
LEAK_POINT_MASS = 0.01
_DATE = re.compile(
    r"^\s*(\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4})"
    r"([ T]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?)?\s*(Z|[+-]\d{2}:?\d{2})?\s*$"
)


@dataclass
class Prepared:
    records: pd.DataFrame  # record_id, patient_id, label, split, subgroup columns
    features: np.ndarray  # (records, features) float32, standardised
    feature_names: list[str]
    preprocessing: dict = field(default_factory=dict)  # medians, means, SDs per feature
    label_names: list[str] = field(default_factory=list)
    #: values outside their plausibility range: record_id, patient_id, feature, value, low, high
    flags: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=FLAG_COLUMNS))
    #: what the preparation did (filters, dates, split, strongest univariate predictor, …)
    report: dict = field(default_factory=dict)


FLAG_COLUMNS = ["record_id", "patient_id", "feature", "value", "low", "high"]


def _undecodable(path: Path, encoding: str) -> str:
    """Where a file stops being ``encoding`` text: 'byte 0xe9 at line 3, column 5'."""
    raw = gzip.open(path).read() if path.suffix.lower() == ".gz" else path.read_bytes()
    try:
        raw.decode(encoding)
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        column = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
        return f"byte 0x{raw[e.start]:02x} at line {line}, column {column}"
    return "an undecodable byte"


#: the first bytes of spreadsheet workbooks (XLSX is a zip archive, XLS an OLE2 compound file)
_WORKBOOK_MAGIC = {b"PK\x03\x04": "an Excel workbook (.xlsx)", b"\xd0\xcf\x11\xe0": "an Excel workbook (.xls)"}


def _workbook(path: Path) -> str | None:
    """What kind of spreadsheet workbook ``path`` is, by its first bytes, or None."""
    with open(path, "rb") as fh:
        head = fh.read(4)
    return _WORKBOOK_MAGIC.get(head)


def read_table(path: str | Path, encoding: str = "utf-8", text_columns=()) -> pd.DataFrame:
    """A CSV/TSV (optionally .gz) or Parquet table; any reading problem is a one-line
    :class:`DataError` naming the file (and the line, for bad bytes or rows).

    ``text_columns`` (the id and label columns) are read as text, exactly as written: a CSV
    reader that guesses types would make ``01`` and ``1``, or ``1E2`` and ``100``, one value.
    In a Parquet file they keep the file's own type and become text by :func:`mia_audit.data.records.id_label`
    (the integer 7 → ``"7"``)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"dataset file {path} does not exist (config key datasets.<name>.path)")
    suffixes = "".join(path.suffixes[-2:]).lower()
    text = [c for c in dict.fromkeys(text_columns) if c]
    if path.suffix.lower() in (".parquet", ".pq"):
        try:
            df = pd.read_parquet(path)
        except Exception as e:  # pyarrow raises several types for a damaged file
            raise DataError(f"dataset file {path} is not a readable Parquet file: {e}") from e
        for c in text:
            if c in df:
                df[c] = df[c].map(lambda v: v if v is None or (isinstance(v, float) and np.isnan(v)) else id_label(v))
        return df
    if path.suffix.lower() in (".csv", ".tsv", ".txt") or suffixes in (".csv.gz", ".tsv.gz"):
        sep = "\t" if ".tsv" in suffixes else ","
        if path.stat().st_size == 0:
            raise DataError(f"dataset file {path} is empty (0 bytes); expected a header line and one row per record")
        kind = _workbook(path) if path.suffix.lower() != ".gz" else None
        if kind:
            raise DataError(
                f"dataset file {path} is {kind} named {path.suffix}, not a CSV text file; export it from the "
                "spreadsheet as CSV (Save As → CSV UTF-8), or save it as Parquet"
            )
        try:
            return pd.read_csv(path, sep=sep, low_memory=False, encoding=encoding, dtype=dict.fromkeys(text, str))
        except pd.errors.EmptyDataError:
            raise DataError(f"dataset file {path} holds no columns (blank lines only)") from None
        except UnicodeDecodeError:
            raise DataError(
                f"dataset file {path} is not {encoding} text: {_undecodable(path, encoding)}; save it as "
                f"{encoding} or set config key datasets.<name>.encoding (e.g. latin-1 or cp1252)"
            ) from None
        except (pd.errors.ParserError, ValueError) as e:
            raise DataError(f"dataset file {path} is not a readable table: {' '.join(str(e).split())}") from None
    kind = _workbook(path)
    raise DataError(
        f"dataset file {path}: unsupported file type {path.suffix!r}"
        + (f" ({kind}; export it as CSV or Parquet)" if kind else "")
        + "; expected a CSV (.csv, .csv.gz, .tsv) or Parquet (.parquet, .pq) table"
    )


def _key(name, sub: str) -> str:
    return f"datasets.{name or '<name>'}.{sub}"


def _rows(mask: pd.Series, n: int = 5) -> list:
    """Row labels (0-based data rows of the file) where ``mask`` holds, the first ``n``."""
    return mask.index[mask.to_numpy()][:n].tolist()


def looks_like_dates(values: pd.Series, share: float = 0.8) -> bool:
    """Whether at least ``share`` of the distinct non-missing values (up to 200) read as dates
    or date-times (2014-03-02, 02/03/2014, 2014-03-02T14:05:00Z …)."""
    v = values.dropna().astype(str).unique()[:200]
    return len(v) > 0 and np.mean([bool(_DATE.match(x)) for x in v]) >= share


def apply_filters(df: pd.DataFrame, filters: list, path, name=None) -> tuple[pd.DataFrame, list[dict]]:
    """The rows that pass every filter (config key ``filters``), in order, and per filter what it removed.

    Values are compared as text (:func:`mia_audit.data.records.id_label`), so 2, 2.0 and "2" are the same;
    ``min``/``max`` compare numbers and keep missing values (``drop_missing`` drops them).
    """
    effects = []
    for i, flt in enumerate(filters or []):
        col = flt["column"]
        require_columns(df, [col], path, key=f"{_key(name, 'filters')}[{i}].column")
        values = df[col]
        keep = pd.Series(True, index=df.index)
        if flt.get("keep") is not None or flt.get("drop") is not None:
            text = values.map(id_label)
            if flt.get("keep") is not None:
                keep &= text.isin({id_label(v) for v in flt["keep"]})
            if flt.get("drop") is not None:
                keep &= ~text.isin({id_label(v) for v in flt["drop"]})
        if flt.get("min") is not None or flt.get("max") is not None:
            num = pd.to_numeric(values, errors="coerce")
            bad = num.isna() & values.notna()
            if bad.any():
                raise DataError(
                    f"{path}: filter {_key(name, 'filters')}[{i}] compares column {col!r} with min/max, but it has "
                    f"non-numeric value {values[bad].iloc[0]!r} (rows {_rows(bad)})"
                )
            if flt.get("min") is not None:
                keep &= ~(num < flt["min"])
            if flt.get("max") is not None:
                keep &= ~(num > flt["max"])
        if flt.get("drop_missing"):
            keep &= values.notna()
        conditions = {k: v for k, v in flt.items() if k != "column" and v is not None and v is not False}
        effects.append(
            {"filter": i, "column": col, **conditions, "removed": int((~keep).sum()), "kept": int(keep.sum())}
        )
        df = df.loc[keep]
    return df, effects


def days_since(values: pd.Series, patient_id: pd.Series, spec: dict, column: str, path, name=None) -> pd.Series:
    """A date column as days (float) since its origin (config ``dates.<column>``): the patient's
    earliest value (``patient_first``) or the table's (``dataset_first``). Missing dates stay missing."""
    fmt = spec.get("format") or "ISO8601"
    t = pd.to_datetime(values, format=fmt, errors="coerce", utc=True)
    bad = t.isna() & values.notna()
    if bad.any():
        raise DataError(
            f"{path}: date column {column!r} ({_key(name, 'dates')}) has value {values[bad].iloc[0]!r} "
            f"(rows {_rows(bad)}, {int(bad.sum())} in all) that is not a date in format "
            f"{spec.get('format') or 'ISO 8601 (YYYY-MM-DD[ HH:MM[:SS]])'}; set {_key(name, f'dates.{column}.format')} "
            "(e.g. '%d/%m/%Y')"
        )
    if spec["origin"] == "dataset_first":
        origin = t.min()
    else:
        origin = t.groupby(patient_id.to_numpy()).transform("min")
    return (t - origin) / pd.Timedelta(days=1)


def separation_auc(score: np.ndarray, y: np.ndarray) -> float:
    """ROC AUC of a univariate score for a binary outcome, folded to max(A, 1 − A) ≥ 0.5.

    A = (R₁ − n₁(n₁ + 1)/2) / (n₁ n₀), with R₁ the sum of the mid-ranks of the n₁ positives
    among all n₁ + n₀ scores (the Mann–Whitney form of the AUC: ties count one half;
    Hanley & McNeil 1982). For a 0/1 score it equals (TPR + TNR)/2. NaN when a class is empty.
    """
    y = np.asarray(y, dtype=bool)
    n1, n0 = int(y.sum()), int((~y).sum())
    if n1 == 0 or n0 == 0:
        return float("nan")
    ranks = midranks(score)
    a = (ranks[y].sum() - n1 * (n1 + 1) / 2) / (n1 * n0)
    return float(max(a, 1 - a))


def midranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1 … n of ``x``, ties given the mean of the ranks they span (mid-ranks), as
    ``scipy.stats.rankdata(x)`` (method ``average``) returns them; all NaN when ``x`` has a
    NaN. Values are half-integers, so they are exact. Here in NumPy because importing
    scipy.stats costs the data set's light jobs (validation, preparation) about a second."""
    x = np.asarray(x, dtype=np.float64).ravel()
    if np.isnan(x).any():
        return np.full(x.shape, np.nan)
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    start = np.flatnonzero(np.r_[True, xs[1:] != xs[:-1]])  # first position of each run of ties
    stop = np.r_[start[1:], xs.size]
    ranks = np.empty(x.size, dtype=np.float64)
    ranks[order] = np.repeat((start + 1 + stop) / 2.0, stop - start)
    return ranks


def indicator_auc(indicator: np.ndarray, y: np.ndarray) -> float:
    """:func:`separation_auc` of a 0/1 score in closed form: A = (TPR + TNR)/2, folded to ≥ 0.5."""
    y = np.asarray(y, dtype=bool)
    if y.all() or not y.any():
        return float("nan")
    a = (indicator[y].mean() + 1 - indicator[~y].mean()) / 2
    return float(max(a, 1 - a))


def leakage_scan(
    df: pd.DataFrame, numeric: list[str], categorical: list[str], y: np.ndarray, class_names: list[str]
) -> list[dict]:
    """The strongest univariate separation of each label class by each feature.

    For every feature and class (one-vs-rest; the positive class only for a binary label):
    :func:`separation_auc` of (a) the feature's values over the records where it is observed,
    (b) the indicator of each frequent value (≥ :data:`LEAK_POINT_MASS` of the records and at
    least 5; at most 5 values; for categorical features every such level) and (c) the
    indicator of its missingness — so a lab recorded as 45 exactly when a test is negative
    separates perfectly through (b) even though its values do not order the classes. A score
    is computed only with at least :data:`LEAK_MIN_CLASS` records of each class. Returns one
    row per feature: ``feature, auc, how`` (the score that reached ``auc``), largest first.
    """
    classes = [1] if len(class_names) == 2 else list(range(len(class_names)))
    n = len(df)
    min_mass = max(5, LEAK_POINT_MASS * n)
    out = []
    for c in [*numeric, *categorical]:
        best = (0.5, "")
        miss = df[c].isna().to_numpy()
        x = None
        if c in numeric:
            x = pd.to_numeric(df[c], errors="coerce").to_numpy(dtype=np.float64)
            values, counts = np.unique(x[~miss], return_counts=True)
            order = np.argsort(-counts, kind="stable")[:5]
            frequent = [(v, counts[i]) for i, v in ((i, values[i]) for i in order)]
            codes = x
        else:
            codes_, levels = pd.factorize(df[c].map(id_label), use_na_sentinel=False)
            counts = np.bincount(codes_, minlength=len(levels))
            frequent = [(i, counts[i]) for i in range(len(levels))]
            codes = codes_
        candidates = [
            (f"{c} == {id_label(v) if x is not None else levels[v]}", codes == v) for v, k in frequent if k >= min_mass
        ]
        if miss.any() and not miss.all():
            candidates.append((f"{c} missing", miss))
        for k in classes:
            yk = y == k
            if x is not None:
                obs = ~miss
                if min(int(yk[obs].sum()), int((~yk[obs]).sum())) >= LEAK_MIN_CLASS:
                    auc = separation_auc(x[obs], yk[obs])
                    if auc > best[0]:
                        best = (auc, f"the values of {c}")
            if min(int(yk.sum()), int((~yk).sum())) < LEAK_MIN_CLASS:
                continue
            for how, ind in candidates:
                auc = indicator_auc(ind, yk)
                if auc > best[0]:
                    best = (auc, f"the indicator {how}")
        out.append({"feature": c, "auc": round(best[0], 4), "how": best[1]})
    return sorted(out, key=lambda r: -r["auc"])


#: what pandas reads as a missing value in a CSV (besides an empty field)
NA_TEXT = "NA, N/A, NULL, None, nan, #N/A"
#: what YAML reads as a boolean when it is not quoted
YAML_BOOLEANS = "yes/no, true/false, on/off"


def _is_number(v) -> bool:
    return isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool | np.bool_)


def _matches(raw: pd.Series, wanted: list) -> pd.Series:
    """Which raw label texts a config list names: the same text (``id_label``: 2, 2.0 and "2"
    are "2"), or, for a number in the list, a text that reads as that number ("2.0", "02")."""
    texts = {id_label(v) for v in wanted}
    hit = raw.isin(texts)
    numbers = [float(v) for v in wanted if _is_number(v)]
    if numbers:
        as_number = pd.to_numeric(raw.where(raw.str.strip().ne("")), errors="coerce")
        hit |= as_number.isin(numbers)
    return hit


def _fold(text: str) -> str:
    return " ".join(str(text).split()).casefold()


def _counts(raw: pd.Series, values) -> str:
    """'\'0\' (1,100 records), \'1\' (20 records)' for ``values`` of ``raw``."""
    vc = raw.value_counts()
    return ", ".join(f"{v!r} ({int(vc.get(v, 0)):,} records)" for v in values)


def label_mapping(values: pd.Series, spec: dict, path, name=None) -> tuple[np.ndarray, list[str], list[dict]]:
    """The label's class of every record, from the label column's raw values as text.

    Binary (``positive`` given): a record is positive when its value is listed in
    ``positive`` and negative when it is listed in ``negative`` (or ``negative: other``:
    every value not in ``positive``). Refused, naming the values and their counts: a value in
    neither list; a value in both; a positive value that matches nothing; a value that
    differs from a positive one only in case or spaces (``Yes `` beside ``yes``); a YAML
    boolean (an unquoted ``yes``) where the column holds no ``True``/``False``.
    Multi-class (no ``positive``): every distinct text is a class (sorted); values that are
    one value written two ways (``Yes``/``yes``, ``1``/``1.0``) are refused.

    Returns ``(y, class names, mapping)``: the mapping lists every raw value with its class
    and record count (the validation report's ``label_values``).
    """
    col = spec["column"]
    label = spec.get("name", col)
    key = _key(name, "label")
    if values.isna().any():
        raise DataError(
            f"{path}: label column {col!r} has {int(values.isna().sum())} missing value(s) "
            f"(rows {_rows(values.isna())}; an empty field or {NA_TEXT} counts as missing); drop them with a filter "
            "(drop_missing: true) or fill them"
        )
    raw = values.map(id_label).astype(object).astype(str)
    vc = raw.value_counts()
    present = sorted(vc.index.tolist())
    positive, negative = spec.get("positive"), spec.get("negative")
    if positive is None:
        if negative is not None:
            raise DataError(f"{path}: {key}.negative needs {key}.positive (the values of the positive class)")
        _refuse_near_duplicates(raw, present, col, path, key)
        lookup = {c: i for i, c in enumerate(present)}
        y = raw.map(lookup).to_numpy().astype(np.int64)
        names = present
    else:
        positive = list(positive)
        bools = [v for v in [*positive, *(negative if isinstance(negative, list) else [])] if isinstance(v, bool)]
        if bools and not {"True", "False"} & set(present):
            raise DataError(
                f"{path}: {key} lists the boolean(s) {bools}, but column {col!r} holds no True/False: YAML reads "
                f"an unquoted {YAML_BOOLEANS} as a boolean; quote the value as written in the file, e.g. "
                f"positive: ['yes'] (values present: {_counts(raw, present[:10])})"
            )
        pos = _matches(raw, positive)
        if not pos.any():
            raise DataError(
                f"{path}: {key}.positive = {positive} matches no value of column {col!r}; its values as written: "
                f"{_counts(raw, present[:10])}{' …' if len(present) > 10 else ''}" + _near_hint(raw, present, positive)
            )
        folded = {_fold(v) for v in raw[pos].unique()} | {_fold(id_label(v)) for v in positive}
        near = [v for v in present if not pos[raw == v].any() and _fold(v) in folded]
        if near:
            raise DataError(
                f"{path}: column {col!r} has value(s) {_counts(raw, near)} that differ from the positive value(s) "
                f"{sorted(set(raw[pos]))} only in case or spaces; list them in {key}.positive if they mean the "
                "same, or clean the column"
            )
        if negative is None:
            others = [v for v in present if v not in set(raw[pos])]
            raise DataError(
                f"{path}: {key}.positive is given but {key}.negative is not; list the values that make label "
                f"{label!r} negative, so that no stray value is counted as negative unseen (column {col!r} holds "
                f"{_counts(raw, present[:10])}{' …' if len(present) > 10 else ''}): e.g. negative: "
                f"{_yaml_list(others[:10])}, or negative: other for every value not in positive"
            )
        if negative == "other":
            neg = ~pos
        else:
            neg = _matches(raw, list(negative))
            both = sorted(set(raw[pos & neg]))
            if both:
                raise DataError(f"{path}: value(s) {both} of column {col!r} are in both {key}.positive and .negative")
            stray = sorted(set(raw[~pos & ~neg]))
            if stray:
                raise DataError(
                    f"{path}: column {col!r} has value(s) {_counts(raw, stray[:10])}{' …' if len(stray) > 10 else ''} "
                    f"in neither {key}.positive {positive} nor {key}.negative {list(negative)}; add each to the "
                    "list of its class, or drop those records with a filter"
                )
        y = pos.to_numpy().astype(np.int64)
        names = [f"not {label}", spec.get("name", f"{col} in {sorted(map(id_label, positive))}")]
    cls = pd.Series(y, index=raw.to_numpy()).groupby(level=0).first()
    mapping = [{"value": v, "class": names[int(cls[v])], "records": int(vc[v])} for v in present]
    counts = np.bincount(y, minlength=len(names))
    if (counts > 0).sum() < 2:
        raise DataError(
            f"{path}: label {label!r} (column {col!r}, positive={positive}) has a single class in the data "
            f"(counts {counts.tolist()} of classes {names}; values: {_counts(raw, present[:10])}); a classifier "
            "needs at least two"
        )
    return y, names, mapping


def _yaml_list(values) -> str:
    """A YAML flow list of raw label texts: numbers bare, other texts quoted."""

    def one(v):
        try:
            float(v)
            return v if v.strip() == v and v else repr(v)
        except ValueError:
            return repr(v)

    return "[" + ", ".join(one(v) for v in values) + "]"


def _near_hint(raw: pd.Series, present: list, wanted: list) -> str:
    """'; 'Yes ' differs from 'yes' only in case or spaces' for values near a listed one."""
    near = [(v, w) for w in map(id_label, wanted) for v in present if _fold(v) == _fold(w) and v != w]
    if not near:
        return ""
    return "; " + ", ".join(f"{v!r} differs from {w!r} only in case or spaces" for v, w in near[:5])


def _refuse_near_duplicates(raw: pd.Series, present: list, col, path, key) -> None:
    """Multi-class: refuse classes that are one value written two ways (case, spaces, number format)."""
    groups: dict = {}
    for v in present:
        try:
            k = ("number", float(v))
        except ValueError:
            k = ("text", _fold(v))
        groups.setdefault(k, []).append(v)
    same = [g for g in groups.values() if len(g) > 1]
    if same:
        more = f" and {len(same) - 1} more such group(s)" if len(same) > 1 else ""
        raise DataError(
            f"{path}: label column {col!r} (multi-class: every distinct value is a class) has values that are "
            f"one value written differently: {_counts(raw, same[0])}{more}; "
            f"clean the column, or give {key}.positive and {key}.negative for a binary label"
        )


def _numeric(df: pd.DataFrame, c: str, path, name, dates: dict) -> np.ndarray:
    """A numeric feature as float64 with NaN for missing; every problem of its values named."""
    raw = df[c]
    x = pd.to_numeric(raw, errors="coerce")
    bad = x.isna() & raw.notna()
    if bad.any():
        example = raw[bad].iloc[0]
        if looks_like_dates(raw[bad]):
            raise DataError(
                f"{path}: feature column {c!r} holds dates (e.g. {example!r}); list it under "
                f"{_key(name, 'dates')} to use days since the patient's first record"
            )
        raise DataError(
            f"{path}: feature column {c!r} has non-numeric value {example!r} "
            f"({int(bad.sum())} rows, e.g. rows {_rows(bad)}); list it under 'categorical' to one-hot encode it"
        )
    x = x.to_numpy(dtype=np.float64)
    absurd = ~np.isnan(x) & ~(np.abs(x) <= MAX_ABS)
    if absurd.any():
        rows = df.index[absurd][:5].tolist()
        what = "days since its origin" if c in dates else "values"
        raise DataError(
            f"{path}: feature column {c!r} has {int(absurd.sum())} non-finite or absurdly large {what} "
            f"(e.g. {float(x[absurd][0])} in rows {rows}); expected finite numbers of magnitude ≤ {MAX_ABS:g} "
            "(leave unknown values empty: they become missing)"
        )
    if np.isnan(x).all():
        raise DataError(
            f"{path}: feature column {c!r} has no value in any of the {len(x)} records (all missing); "
            f"remove it from {_key(name, 'features')}"
        )
    return x


def feature_columns(spec: dict) -> list[str]:
    """The input columns of a table: ``features``, then each ``dates`` column not already among
    them (a date column is a feature; listing it under ``dates`` is enough)."""
    features = list(spec.get("features") or [])
    return features + [c for c in (spec.get("dates") or {}) if c not in features]


def prepare_table(df: pd.DataFrame, spec: dict, path="<table>", name=None) -> Prepared:
    """Validate and transform a table by its dataset config block (the module's rules). Errors before any work;
    they name ``path``, the column or config key and what was expected. ``name`` is the data set's
    config name (for the keys in messages)."""
    spec = complete(spec, "dataset")
    check_dataset_spec(name or "<name>", spec)
    if len(df) == 0:
        raise DataError(f"{path}: the table has a header but no data rows (columns {list(df.columns)[:10]})")
    n_read = len(df)
    df, filter_effects = apply_filters(df, spec.get("filters") or [], path, name)
    if len(df) == 0:
        raise DataError(f"{path}: the filters ({_key(name, 'filters')}) removed all {n_read} records: {filter_effects}")
    pid_col = spec["patient_id"]
    dates = dict(spec.get("dates") or {})
    features = feature_columns(spec)
    categorical = list(spec.get("categorical") or [])
    sub_cols = [sg["column"] for sg in (spec.get("subgroups") or {}).values()]
    rid_col = spec.get("record_id")
    require_columns(df, [pid_col], path, key="patient_id")
    require_columns(df, [spec["label"]["column"]], path, key="label.column")
    require_columns(df, list(spec["features"]), path, key="features")
    require_columns(df, list(dates), path, key="dates")
    require_columns(df, sub_cols, path, key="subgroups.<attribute>.column")
    if rid_col:
        require_columns(df, [rid_col], path, key="record_id")

    pids = df[pid_col]
    if pids.isna().any():
        raise DataError(
            f"{path}: patient-id column {pid_col!r} has {int(pids.isna().sum())} missing value(s) (first rows "
            f"{_rows(pids.isna())}); every record must belong to a patient"
        )
    patient_id = pids.map(id_label).astype(object).astype(str)
    id_notes = check_ids(patient_id, pid_col, path, "patient")

    if rid_col:
        if df[rid_col].isna().any():
            raise DataError(
                f"{path}: record-id column {rid_col!r} has {int(df[rid_col].isna().sum())} missing value(s) "
                f"(first rows {_rows(df[rid_col].isna())}); every record needs its own id"
            )
        record_id = df[rid_col].map(id_label).astype(object).astype(str)
        id_notes += check_ids(record_id, rid_col, path, "record")
    else:  # patient id + visit number within the patient, in file order
        record_id = patient_id + "_" + df.groupby(patient_id.to_numpy()).cumcount().astype(str)
    dup = record_id[record_id.duplicated(keep=False)]
    if len(dup):
        raise DataError(
            f"{path}: record ids are not unique (column {rid_col or '<generated>'!r}): "
            f"{sorted(dup.unique().tolist())[:5]} …"
        )

    date_effects = {}
    if dates:
        df = df.copy()
        for c, dspec in dates.items():
            df[c] = days_since(df[c], patient_id, dspec, c, path, name)
            d = df[c].to_numpy(dtype=np.float64)
            ok = ~np.isnan(d)
            date_effects[c] = {
                "origin": dspec["origin"],
                "days_min": float(d[ok].min()) if ok.any() else None,
                "days_max": float(d[ok].max()) if ok.any() else None,
                "missing": int((~ok).sum()),
            }
    numeric = [c for c in features if c not in categorical]
    values = {c: _numeric(df, c, path, name, dates) for c in numeric}
    for c in categorical:
        if looks_like_dates(df[c]):
            raise DataError(
                f"{path}: categorical feature {c!r} holds dates (e.g. {df[c].dropna().iloc[0]!r}, "
                f"{df[c].nunique()} distinct values): one-hot encoding would make one input per date; list it "
                f"under {_key(name, 'dates')} instead (days since the patient's first record)"
            )

    y, label_names, label_values = label_mapping(df[spec["label"]["column"]], spec["label"], path, name)
    groups = subgroup_columns(df, spec.get("subgroups") or {})

    split = split_patients(patient_id, spec)
    pool = split == "pool"
    split_counts = check_split(patient_id, split, y, label_names, spec, path, name, official=False)
    for c in numeric:
        if np.isnan(values[c][pool]).all():
            raise DataError(
                f"{path}: feature column {c!r} has no value among the pool records (its "
                f"{int((~np.isnan(values[c])).sum())} values all belong to held-out test patients); "
                f"remove it from {_key(name, 'features')}"
            )

    threshold = spec["leakage_auc"]
    scan = leakage_scan(df, numeric, categorical, y, label_names)
    if threshold is not None and scan and scan[0]["auc"] >= threshold:
        top, label = scan[0], spec["label"].get("name", spec["label"]["column"])
        raise DataError(
            f"{path}: feature {top['feature']!r} separates the classes of label {label!r} "
            f"almost perfectly on its own (ROC AUC {top['auc']:.3f} of {top['how']}): a feature that encodes the "
            f"outcome leaks it into the inputs; remove it from {_key(name, 'features')}, or if it is a legitimate "
            f"predictor raise {_key(name, 'leakage_auc')} (now {threshold}) or set it to null"
        )

    flags = []
    for c, (low, high) in (spec.get("ranges") or {}).items():
        x = values[c]
        out = (~np.isnan(x)) & (((x < low) if low is not None else False) | ((x > high) if high is not None else False))
        if np.any(out):
            flags.append(
                pd.DataFrame(
                    {
                        "record_id": record_id.to_numpy()[out],
                        "patient_id": patient_id.to_numpy()[out],
                        "feature": c,
                        "value": x[out],
                        "low": low,
                        "high": high,
                    }
                )
            )
    flags = pd.concat(flags, ignore_index=True) if flags else pd.DataFrame(columns=FLAG_COLUMNS)

    cols: dict[str, np.ndarray] = {}
    prep: dict[str, dict] = {}
    for c in numeric:
        x = values[c]
        miss = np.isnan(x)
        med = float(np.nanmedian(x[pool]))
        cols[c] = np.where(miss, med, x)
        prep[c] = {"median": med}
        if c in dates:
            prep[c]["date"] = {"origin": date_effects[c]["origin"], "unit": "days"}
        if miss.any():
            cols[f"{c}__missing"] = miss.astype(np.float64)
    for c in categorical:
        v = df[c].map(id_label).astype(str)
        for level in sorted(v.unique()):
            cols[f"{c}={level}"] = (v == level).to_numpy(dtype=np.float64)
    names = list(cols)
    X = np.column_stack([cols[n] for n in names])
    mean = X[pool].mean(axis=0)
    sd = X[pool].std(axis=0)
    sd = np.where(sd > 0, sd, 1.0)
    X = (X - mean) / sd
    bad = ~np.isfinite(X).all(axis=0)
    if bad.any():  # a guard: the checks above should make this impossible
        raise DataError(f"{path}: input column(s) {[n for n, b in zip(names, bad, strict=True) if b]} are not finite")
    X = X.astype(np.float32)
    for i, n in enumerate(names):
        prep.setdefault(n, {}).update({"mean": float(mean[i]), "sd": float(sd[i])})

    records = pd.DataFrame(
        {
            "record_id": record_id.to_numpy(),
            "patient_id": patient_id.to_numpy(),
            "label": y,
            "split": pd.Categorical(split, categories=["pool", "test"]),
        }
    )
    add_subgroups(records, groups)
    report = {
        "rows_read": n_read,
        "filters": filter_effects,
        "dates": date_effects,
        **split_counts,
        "label_counts": dict(zip(label_names, np.bincount(y, minlength=len(label_names)).tolist(), strict=True)),
        "label_values": label_values,
        "id_notes": id_notes,
        "input_columns": len(names),
        "strongest_univariate_auc": scan[:5],
        "leakage_auc": threshold,
        "range_flags": {
            c: {"low": lo, "high": hi, "values": int((flags["feature"] == c).sum())}
            for c, (lo, hi) in (spec.get("ranges") or {}).items()
        },
    }
    return Prepared(records, X, names, prep, label_names, flags, report)


class TableAdapter:
    name = "table"
    modality = "table"

    def resolve(self, spec: dict, root=None) -> Path:
        if "path" not in spec:
            raise DataError("adapter 'table' needs config key datasets.<name>.path (a CSV or Parquet file)")
        return table_path(spec, root)

    def read_index(self, spec: dict, root=None) -> pd.DataFrame:
        text = [spec.get("patient_id"), spec.get("record_id"), (spec.get("label") or {}).get("column")]
        return read_table(self.resolve(spec, root), encoding=spec.get("encoding") or "utf-8", text_columns=text)

    def table_spec(self, spec: dict, df: pd.DataFrame) -> dict:
        return spec

    def labels(self, spec: dict) -> tuple[str, list[str]]:
        return "multiclass", []  # class names come from the data (see prepare_table)

    def load_input(self, row: dict, spec: dict) -> np.ndarray:
        return np.asarray([row[c] for c in spec["features"]], dtype=object)


ADAPTER = TableAdapter()
