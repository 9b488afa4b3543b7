"""What each shard wrote, and the checks that it is still there before anything is computed from it.

A damaged file must stop the run with a message naming the shard and the command that
rebuilds it, never feed a result: a deleted Zarr chunk reads back as its fill value (NaN
confidences, False membership) without any error, and a truncated weights file fails deep
inside safetensors without naming the file.

What is recorded:

* the train job of shard k writes ``models/shard_{k}_manifest.json``: the models it covers
  and the SHA-256 and size of each file it wrote (weights, metrics); the query job checks
  the weights against it before loading them (:func:`check_shard_file`);
* the query job of shard k records, in ``query/shard_{k}.json`` under ``cube_regions``, one
  SHA-256 per *region* it wrote into each cube: its models' rows × one record chunk of the
  cube (:func:`region_digests`); regions are whole Zarr chunks, so each is one chunk file;
* ``create_cube`` stores the same per-region digests of ``member`` as an attribute of that
  array (:func:`member_digests`).

How it is checked (:class:`CubeCheck`): the readers of a cube (audit_records,
attack_aggregate, audit_access_records) compare the digests of every region they read with
the recorded ones, and that the shards' records cover every model of the cube once. The
record-risk stage does it on the slabs it reads anyway (no second read); the aggregate
attacks, which read only the pool records, make one extra pass over the cube, chunk by
chunk. SHA-256 runs at about 1.4 GB/s on one core, faster than Zarr decompresses.

A digest is over the C-ordered little-endian bytes of the region as float32 (``confidence``)
or bool (``member``), with every NaN written as the one canonical quiet NaN (zarr may store
an all-NaN chunk as "empty", which reads back as its canonical fill value).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from mia_audit.errors import DataError

#: attribute of the cube's ``member`` array holding its region digests
MEMBER_ATTR = "sha256_by_region"


class IntegrityError(DataError):
    """A stage output differs from what the job that wrote it recorded."""


def rebuild_hint(target) -> str:
    return (
        f"rebuild it with: snakemake --force {target} (add your usual --cores/--configfile/--profile), "
        "then run the workflow again"
    )


def file_sha256(path, block: int = 1 << 24) -> str:
    """SHA-256 of a file's bytes (as ``sha256sum`` prints it)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(block):
            h.update(chunk)
    return h.hexdigest()


def write_shard_manifest(path, shard: int, models: Iterable[int], files: Iterable) -> dict:
    """``models/shard_{k}_manifest.json``: the shard's model range and each written file's size and SHA-256."""
    a, b = list(models)
    record = {
        "shard": int(shard),
        "models": [int(a), int(b)],
        "files": {Path(f).name: {"bytes": Path(f).stat().st_size, "sha256": file_sha256(f)} for f in files},
    }
    Path(path).write_text(json.dumps(record, indent=1) + "\n")
    return record


def check_shard_file(path, manifest_path, models: Iterable[int] | None = None) -> dict:
    """Check a file of a shard against the train job's manifest (size, then SHA-256) and, given
    ``models``, that the manifest covers exactly that model range. Returns the manifest."""
    path, manifest_path = Path(path), Path(manifest_path)
    try:
        manifest = json.loads(manifest_path.read_text())
        entry = manifest["files"][path.name]
    except (OSError, ValueError, KeyError, TypeError):
        raise IntegrityError(
            f"{manifest_path} does not record {path.name} (missing or damaged manifest); {rebuild_hint(path)}"
        ) from None
    shard = f"shard {manifest.get('shard', '?')} (models {manifest['models'][0]}–{manifest['models'][1] - 1})"
    if models is not None and list(models) != manifest["models"]:
        raise IntegrityError(
            f"{path} holds models {manifest['models']} but {shard} should hold {list(models)}; {rebuild_hint(path)}"
        )
    if not path.exists():
        raise IntegrityError(f"{path} of {shard} does not exist; {rebuild_hint(path)}")
    size = path.stat().st_size
    if size != entry["bytes"]:
        raise IntegrityError(
            f"{path} of {shard} has {size:,} bytes but its train job wrote {entry['bytes']:,} "
            f"(truncated or replaced); {rebuild_hint(path)}"
        )
    if file_sha256(path) != entry["sha256"]:
        raise IntegrityError(
            f"{path} of {shard} differs from what its train job wrote (SHA-256 mismatch); {rebuild_hint(path)}"
        )
    return manifest


def block_digest(block: np.ndarray) -> str:
    """SHA-256 of an array's C-ordered bytes, NaNs canonicalised (module docstring)."""
    a = np.ascontiguousarray(block)
    if a.dtype.kind == "f":
        nan = np.isnan(a)
        if nan.any():
            a = np.where(nan, np.array(np.nan, dtype=a.dtype), a)
        a = a.astype(a.dtype.newbyteorder("<"), copy=False)
    return hashlib.sha256(memoryview(a).cast("B")).hexdigest()


def region_digests(block: np.ndarray, record_chunk: int) -> list[str]:
    """Digests of a shard's rows ``block`` (models, records[, view]) per record chunk of the cube."""
    n = block.shape[1]
    return [block_digest(block[:, s : s + record_chunk]) for s in range(0, n, record_chunk)]


def cube_region(cube_path, model_start: int, block: np.ndarray) -> dict:
    """The record of one shard's write into a cube (for ``query/shard_{k}.json``)."""
    import zarr

    arr = zarr.open_array(str(Path(cube_path) / "confidence"), mode="r")
    chunk = int(arr.chunks[1])
    return {
        "cube": str(cube_path),
        "models": [int(model_start), int(model_start + block.shape[0])],
        "records": int(block.shape[1]),
        "record_chunk": chunk,
        "sha256": region_digests(block.astype(np.float32, copy=False), chunk),
    }


def member_digests(member: np.ndarray, models_per_shard: int, record_chunk: int) -> dict:
    """The ``member`` array's attribute :data:`MEMBER_ATTR`: per shard (rows of
    ``models_per_shard``), the digests of its rows per record chunk."""
    return {
        "models_per_shard": int(models_per_shard),
        "record_chunk": int(record_chunk),
        "sha256": [
            region_digests(member[m : m + models_per_shard].astype(bool), record_chunk)
            for m in range(0, member.shape[0], models_per_shard)
        ],
    }


def _shard_of(path) -> str:
    m = re.search(r"shard_(\d+)", Path(path).name)
    return m.group(1) if m else "?"


class CubeCheck:
    """The recorded regions of one cube (an access level), checked as the cube is read.

    ``summaries``: the ``query/shard_{k}.json`` files of every shard of the experiment;
    ``level``: ``full`` or an access level name (its own cube); ``n_models``: only the first
    models are read (an adaptive audit's trained waves), None = every model of the cube.
    """

    def __init__(self, cube_path, summaries: Iterable, level: str = "full", n_models: int | None = None):
        import zarr

        self.cube = Path(cube_path)
        root = zarr.open_group(str(self.cube), mode="r")
        conf, mem = root["confidence"], root["member"]
        self.n_models, self.n_records = int(conf.shape[0] if n_models is None else n_models), int(conf.shape[1])
        self.chunk = int(conf.chunks[1])
        self.shards = []  # (m0, m1, digests, summary path)
        for s in summaries:
            try:
                region = json.loads(Path(s).read_text())["cube_regions"][level]
            except (OSError, ValueError, KeyError, TypeError):
                raise IntegrityError(
                    f"{s} records no checksums of what shard {_shard_of(s)} wrote into {self.cube} "
                    f"(written by an older version, or damaged); {rebuild_hint(s)}"
                ) from None
            m0, m1 = region["models"]
            if region["records"] != self.n_records or region["record_chunk"] != self.chunk:
                raise IntegrityError(
                    f"{self.cube} has {self.n_records} records in chunks of {self.chunk}, but shard "
                    f"{_shard_of(s)} wrote {region['records']} in chunks of {region['record_chunk']} "
                    f"(the cube was made again after the query); {rebuild_hint(s)}"
                )
            self.shards.append((int(m0), int(m1), list(region["sha256"]), str(s)))
        self.shards.sort()
        covered = np.zeros(self.n_models, dtype=int)
        for m0, m1, _, _ in self.shards:
            covered[m0:m1] += 1
        if (covered != 1).any():
            missing = np.flatnonzero(covered == 0)
            twice = np.flatnonzero(covered > 1)
            raise IntegrityError(
                f"{self.cube}: the query records do not cover each of its {self.n_models} models once "
                f"(models without a record: {missing[:10].tolist()}, recorded twice: {twice[:10].tolist()}); "
                "run the workflow so that every shard is queried"
            )
        member = mem.attrs.get(MEMBER_ATTR)
        if not isinstance(member, dict) or member.get("record_chunk") != self.chunk:
            raise IntegrityError(
                f"{self.cube}/member records no checksums (an older cube, or damaged); {rebuild_hint(self.cube)}"
            )
        self.member_per_shard, self.member = int(member["models_per_shard"]), member["sha256"]

    def _member_digest(self, m0: int, c: int) -> str | None:
        i = m0 // self.member_per_shard
        return self.member[i][c] if m0 % self.member_per_shard == 0 and i < len(self.member) else None

    def _fail(self, what: str, m0: int, m1: int, c: int, shard_record) -> None:
        r0, r1 = c * self.chunk, min(self.n_records, (c + 1) * self.chunk)
        # the cube is assembled from the shards' own stores, which assemble_cube checks against
        # their records: rebuilding the cube re-assembles it (and names a damaged shard)
        target = self.cube
        raise IntegrityError(
            f"{self.cube}: {what} of models {m0}–{m1 - 1} (shard {_shard_of(shard_record)}), records "
            f"{r0}–{r1 - 1}, differ from what was written (a deleted or changed chunk); stopping instead of "
            f"computing from partial data; {rebuild_hint(target)}"
        )

    def check_slab(self, start: int, stop: int, confidence: np.ndarray, member: np.ndarray | None = None) -> None:
        """Check the regions of records [start, stop) (whole record chunks, or up to the last
        record), given the slab of all models' ``confidence`` (and ``member``) there."""
        if start % self.chunk or (stop % self.chunk and stop != self.n_records):
            raise ValueError(f"slab {start}:{stop} is not aligned to the cube's record chunks of {self.chunk}")
        for c in range(start // self.chunk, -(-stop // self.chunk)):
            a, b = c * self.chunk - start, min(stop, (c + 1) * self.chunk) - start
            for m0, m1, digests, path in self.shards:
                if block_digest(confidence[m0:m1, a:b]) != digests[c]:
                    self._fail("the confidences", m0, m1, c, path)
                if member is not None and block_digest(member[m0:m1, a:b].astype(bool)) != self._member_digest(m0, c):
                    self._fail("the membership", m0, m1, c, path)

    def verify(self) -> int:
        """Read the whole cube once, region by region (bounded memory); returns the regions checked."""
        import zarr

        root = zarr.open_group(str(self.cube), mode="r")
        conf, mem = root["confidence"], root["member"]
        n = 0
        for m0, m1, digests, path in self.shards:
            for c in range(len(digests)):
                r0, r1 = c * self.chunk, min(self.n_records, (c + 1) * self.chunk)
                if block_digest(conf[m0:m1, r0:r1]) != digests[c]:
                    self._fail("the confidences", m0, m1, c, path)
                if block_digest(np.asarray(mem[m0:m1, r0:r1], dtype=bool)) != self._member_digest(m0, c):
                    self._fail("the membership", m0, m1, c, path)
                n += 1
        return n
