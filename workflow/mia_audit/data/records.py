"""The rules of records.parquet shared by every adapter: id labels, the patient split, subgroup columns.

Every data set, table or not, gets its ``record_id``/``patient_id`` text, its ``split`` and
its subgroup attribute columns from these functions, so the same raw value is written the
same way whichever adapter read it.

Split rule: records the data set itself puts in its official test split keep
``split = "test"`` (config ``official_split: true``, the default); a data set without one
gets a random share ``test_fraction`` of its *patients* held out (seed ``split_seed``). A
patient with records in both official splits is held out entirely (every record ``test``),
so no patient is both trained on and tested.
"""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import numpy as np
import pandas as pd

from mia_audit.data.adapters.base import label_columns
from mia_audit.errors import DataError
from mia_audit.settings import complete


def id_label(v) -> str:
    """A raw id, category or attribute value as text: missing → ``"missing"``, 3.0 → ``"3"``."""
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "missing"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def integer_text(values: pd.Series) -> pd.Series:
    """Ids read as text, with the ``.0`` that a float export appends to an integer id dropped
    (``15709.0`` → ``15709``); every other text kept exactly as written, missing values missing."""
    text = values.astype(object).where(values.isna(), values.astype(object).astype(str))
    return text.str.replace(r"^(\d+)\.0+$", r"\1", regex=True)


def _rows_of(ids: pd.Series, value, first: int = 3) -> list:
    """Row labels (0-based data rows of the file) holding ``value``, the first ``first``."""
    return ids.index[(ids == value).to_numpy()][:first].tolist()


def check_ids(ids: pd.Series, column, source, what: str = "patient") -> list[str]:
    """Ids are text, compared exactly: ``01`` and ``1`` or ``1E2`` and ``100`` are different
    ids. Refused (a :class:`DataError` naming the column and rows): a blank id, and ids that
    differ only in surrounding spaces (`` 7`` and ``7``), which are one id written two ways
    far more often than two people. Returns notes for the validation report on ids that are
    equal as numbers but written differently (kept apart)."""
    distinct = pd.Series(pd.unique(ids.to_numpy()), dtype=object).astype(str)
    stripped = distinct.str.strip()
    blank = stripped == ""
    if blank.any():
        rows = ids.index[ids.astype(str).str.strip().eq("").to_numpy()][:5].tolist()
        raise DataError(f"{source}: {what}-id column {column!r} has blank id(s) (rows {rows}); every record needs one")
    twice = stripped.duplicated(keep=False)
    if twice.any():
        groups = distinct[twice].groupby(stripped[twice].to_numpy()).agg(list)
        a, b = sorted(groups.iloc[0], key=len)[:2]
        more = f", and {len(groups) - 1} more such" if len(groups) > 1 else ""
        raise DataError(
            f"{source}: {what}-id column {column!r} holds ids that differ only in surrounding spaces: {a!r} "
            f"(rows {_rows_of(ids, a)}) and {b!r} (rows {_rows_of(ids, b)}){more}; "
            f"ids are compared exactly, so they would be two {what}s: remove the spaces in the file if they "
            f"are one {what}, or give different {what}s different ids"
        )
    number = pd.to_numeric(stripped, errors="coerce")
    same = number.notna() & number.duplicated(keep=False)
    if not same.any():
        return []
    groups = distinct[same].groupby(number[same].to_numpy()).agg(lambda v: sorted(v))
    shown = ", ".join("/".join(repr(x) for x in g) for g in groups.iloc[:5])
    return [
        f"{what}-id column {column!r}: {len(groups)} group(s) of ids are equal as numbers but written "
        f"differently ({shown}{' …' if len(groups) > 5 else ''}); ids are text, so each is a different {what}"
    ]


def split_patients(patient_id: pd.Series, spec: dict) -> np.ndarray:
    """'pool'/'test' per record, drawn by patient: ``round(test_fraction · n)`` of the n distinct
    patients (sorted) are held out, chosen without replacement by ``numpy.random.default_rng(split_seed)``
    (config keys ``test_fraction``, default 0.2, and ``split_seed``, default 0)."""
    patients = np.unique(patient_id.to_numpy())
    spec = complete(spec, "dataset")
    rng = np.random.default_rng(int(spec["split_seed"]))
    n_test = int(round(float(spec["test_fraction"]) * len(patients)))
    test = np.zeros(len(patients), dtype=bool)
    test[rng.choice(len(patients), size=n_test, replace=False)] = True
    return np.where(patient_id.isin(set(patients[test])), "test", "pool")


def check_split(
    patient_id: pd.Series,
    split: np.ndarray,
    y: np.ndarray | None,
    label_names: list[str],
    spec: dict,
    source,
    name=None,
    official: bool = False,
    split_file=None,
) -> dict:
    """The split must leave work for every stage: at least one held-out test patient (each
    model's test metrics), at least two pool patients (each model trains on a random half of
    them; ``n_models`` must give each model at least one) and, for a single-label task ``y``,
    two label classes among the pool records. Returns the counts (patients per side, the rule).
    (That every target model gets a patient is the sampling stage's check,
    :func:`mia_audit.sampling.membership.check_design`.)
    ``split_file``: the file of the official test split, named when that split is empty.
    """
    key = f"datasets.{name or '<name>'}"
    pid = np.asarray(patient_id)
    test_p = np.unique(pid[split == "test"])
    pool_p = np.unique(pid[split == "pool"])
    n_pat = len(np.unique(pid))
    rule = "official split" if official else f"test_fraction = {spec['test_fraction']}"
    if len(test_p) == 0:
        if official:
            where = ""
            if split_file is not None:
                where = f" ({split_file}{'' if Path(split_file).exists() else ' does not exist'})"
            raise DataError(
                f"{source}: the data set's official test split{where} holds no patient; the test metrics "
                f"need at least one: supply the split, or set {key}.official_split: false to hold out "
                f"test_fraction of the patients"
            )
        raise DataError(
            f"{source}: {key}.test_fraction = {spec['test_fraction']} holds out no patient of the "
            f"{n_pat}; the test metrics need at least one: raise it to at least {1 / max(n_pat, 1):.3g}"
        )
    if len(pool_p) < 2:
        raise DataError(
            f"{source}: only {len(pool_p)} pool patient(s) left for training ({n_pat} patients, {len(test_p)} "
            f"held out by the {rule}); each target model trains on a random half of the pool patients, "
            "which needs at least 2: add data or hold out fewer patients"
        )
    if y is not None:
        present = np.unique(np.asarray(y)[split == "pool"])
        if len(present) < 2:
            only = label_names[int(present[0])] if len(present) and int(present[0]) < len(label_names) else present
            raise DataError(
                f"{source}: every pool record has label class {only!r} (the other classes occur only in "
                f"held-out test patients); the target models need two classes to learn"
            )
    return {
        "split_rule": rule,
        "records": int(len(pid)),
        "patients": int(n_pat),
        "pool_patients": int(len(pool_p)),
        "test_patients": int(len(test_p)),
    }


def subgroup_columns(df: pd.DataFrame, spec: dict) -> pd.DataFrame:
    """One text column per subgroup attribute (config block ``subgroups``), aligned with ``df``.

    An attribute with ``bins`` is cut into left-closed intervals (named by ``labels`` or
    ``[lo, hi)``); one with ``map`` renames the raw codes (unmapped codes kept); missing
    values become ``"missing"`` (see :func:`id_label`).
    """
    out = {}
    for attr, sg in spec.items():
        col = df[sg["column"]]
        if sg.get("bins") is not None:
            bins = sg["bins"]
            labels = sg.get("labels") or [f"[{lo:g}, {hi:g})" for lo, hi in pairwise(bins)]
            cut = pd.cut(pd.to_numeric(col, errors="coerce"), bins=bins, labels=labels, right=False)
            values = cut.astype(object)
        elif sg.get("map") is not None:
            mapping = sg["map"]
            values = col.map(lambda v, m=mapping: m.get(str(v), str(v)) if pd.notna(v) else v).astype(object)
        else:
            values = col.astype(object)
        values = values.map(id_label)
        out[attr] = values.astype(str)
    return pd.DataFrame(out, index=df.index)


def add_subgroups(records: pd.DataFrame, groups: pd.DataFrame) -> None:
    """Append the subgroup columns to ``records`` in place; an attribute may not reuse a reserved column name."""
    for attr in groups:
        if attr in records:
            raise DataError(f"subgroup attribute name {attr!r} clashes with a reserved column of records.parquet")
        records[attr] = groups[attr].to_numpy()


def uses_official_split(index: pd.DataFrame, spec: dict) -> bool:
    """Whether the split rule keeps the data set's own split (an index ``split`` column and
    ``official_split: true``); ``test_fraction`` is then not used."""
    return "split" in index and bool(spec["official_split"])


def assign_split(index: pd.DataFrame, spec: dict) -> np.ndarray:
    """'pool'/'test' per record by the module's split rule."""
    pid = index["patient_id"].astype(str)
    if uses_official_split(index, spec):
        test_patients = set(pid[index["split"].astype(str) == "test"])
        return np.where(pid.isin(test_patients), "test", "pool")
    return split_patients(pid, spec)


def records_table(index: pd.DataFrame, spec: dict, task: str, label_names: list[str]) -> pd.DataFrame:
    """records.parquet's rows from an adapter's index: ids, label column(s), split, subgroup attributes (text)."""
    rec = pd.DataFrame(
        {
            "record_id": index["record_id"].map(id_label).astype(str).to_numpy(),
            "patient_id": index["patient_id"].map(id_label).astype(str).to_numpy(),
        }
    )
    source = f"adapter {spec.get('adapter')!r}"
    rec.attrs["id_notes"] = check_ids(rec["patient_id"], "patient_id", source) + check_ids(
        rec["record_id"], "record_id", source, "record"
    )
    if task == "multiclass":
        rec["label"] = index["label"].to_numpy(dtype=np.int64)
    else:
        for c in label_columns(label_names):
            rec[c] = index[c].to_numpy(dtype=np.int8)
    rec["split"] = pd.Categorical(assign_split(index, spec), categories=["pool", "test"])
    sub = spec.get("subgroups") or {}
    for attr, sg in sub.items():
        if sg["column"] not in index:
            raise DataError(
                f"subgroups.{attr}.column = {sg['column']!r} is not an attribute of this data set; "
                f"available: {[c for c in index.columns if c not in ('path',)]}"
            )
    add_subgroups(rec, subgroup_columns(index.reset_index(drop=True), sub))
    return rec
