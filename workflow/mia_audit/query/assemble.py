"""The confidence cube assembled from its shards' query outputs.

No job writes into another job's output: ``create_cube`` writes the cube's skeleton (records,
membership, empty confidences: ``cube_skeleton.zarr``), each query job writes its models' rows
to its own store ``query/shard_{k}.zarr``, and ``assemble_cube`` copies the skeleton and fills
in every shard's rows (``cube.zarr``). So the workflow also runs where jobs see only the files
they declare, staged by a storage plugin (no shared file system).

A shard's store is one Zarr group per cube it has rows for (``full``, and each partial-access
level), each with one array ``confidence`` (models of the shard × records [× views], float32,
chunked by the cube's record chunk) and the attribute ``model_start``: the cube row of its
first model. The readers of a cube are unchanged, and the checksums the query job records
(``query/shard_{k}.json``, :mod:`mia_audit.integrity`) are those of the rows as assembled.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from mia_audit.errors import DataError

FULL = "full"


def rows_path(summary_path) -> Path:
    """A shard's store (``query/shard_{k}.zarr``) beside its summary (``query/shard_{k}.json``)."""
    return Path(summary_path).with_suffix(".zarr")


def write_rows(path, level: str, model_start: int, block: np.ndarray, record_chunk: int) -> None:
    """One shard's rows of one cube (``level``) into its store ``path``."""
    import zarr

    root = zarr.open_group(str(path), mode="a")
    group = root.require_group(level)
    chunks = (block.shape[0], int(record_chunk), *block.shape[2:])
    arr = group.create_array("confidence", shape=block.shape, chunks=chunks, dtype="float32", overwrite=True)
    arr[...] = block.astype(np.float32, copy=False)
    group.attrs["model_start"] = int(model_start)


def read_rows(path, level: str = FULL) -> tuple[int, np.ndarray]:
    """(model_start, rows) of one cube from a shard's store."""
    import zarr

    try:
        group = zarr.open_group(str(path), mode="r")[level]
    except (FileNotFoundError, KeyError) as err:
        raise DataError(f"{path} holds no rows of the {level!r} cube (queried by an older version?): {err}") from None
    return int(group.attrs["model_start"]), group["confidence"][...]


def check_rows(store, summary, level: str, rows: np.ndarray) -> None:
    """A shard's rows are what its query job recorded (``query/shard_{k}.json``: the digests per
    record chunk, :func:`mia_audit.integrity.region_digests`); else an IntegrityError naming the
    command that queries the shard again."""
    import json

    from mia_audit import integrity

    try:
        region = json.loads(Path(summary).read_text())["cube_regions"][level]
    except (OSError, ValueError, KeyError, TypeError):
        raise integrity.IntegrityError(
            f"{summary} records no checksums of shard rows {store}; {integrity.rebuild_hint(summary)}"
        ) from None
    if integrity.region_digests(rows.astype(np.float32, copy=False), int(region["record_chunk"])) != region["sha256"]:
        raise integrity.IntegrityError(
            f"{store}: the rows of models {region['models'][0]}–{region['models'][1] - 1} differ from what their "
            f"query job recorded in {summary} (a deleted or changed chunk); {integrity.rebuild_hint(summary)}"
        )


def assemble(
    skeleton,
    shard_stores: Iterable,
    out,
    level: str = FULL,
    log: Callable[[str], None] | None = None,
    summaries: Iterable | None = None,
) -> int:
    """Copy the cube ``skeleton`` to ``out`` and write each shard's rows of ``level`` into it;
    returns the number of shards. ``out`` is replaced. With ``summaries`` (each shard's
    ``query/shard_{k}.json``, in the order of ``shard_stores``) every shard's rows are checked
    against their recorded digests first (:func:`check_rows`)."""
    from mia_audit.query.cube import write_confidence

    stores = list(shard_stores)
    summaries = list(summaries) if summaries is not None else None
    if summaries is not None and len(summaries) != len(stores):
        raise ValueError(f"{len(stores)} shard stores but {len(summaries)} query summaries")
    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(skeleton, out)
    for i, store in enumerate(stores):
        model_start, rows = read_rows(store, level)
        if summaries is not None:
            check_rows(store, summaries[i], level, rows)
        write_confidence(out, model_start, rows)
    if log:
        log(f"assembled {out} from {skeleton} and the rows of {len(stores)} shard(s)")
    return len(stores)
