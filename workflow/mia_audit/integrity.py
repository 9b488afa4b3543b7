"""What each shard wrote, and the checks that it is still there before anything is computed from it.

The train job records the size and SHA-256 of each file it wrote (``shard_{k}_manifest.json``,
checked by :func:`check_shard_file` before the weights are loaded); the query job records one
SHA-256 per region it wrote into each cube, its models × one record chunk
(:func:`region_digests`); ``create_cube`` stores those of ``member`` (:func:`member_digests`) and
one SHA-256 of every coordinate array (:func:`coordinate_digests`); ``membership.zarr`` and
``inputs.zarr`` carry one per array (:func:`check_arrays`), and the model inputs are checked to
be finite before training (:func:`check_finite`). The readers of a cube compare every region
and coordinate they read (:class:`CubeCheck`). Why and how, with the digests' byte layout:
docs/hpc.md, "Integrity and one run per results folder".
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
#: attribute of a cube holding the SHA-256 of each coordinate array (:func:`coordinate_digests`)
COORDS_ATTR = "sha256_coordinates"
#: attribute of membership.zarr and inputs.zarr holding the SHA-256 of each array (:func:`check_arrays`)
ARRAYS_ATTR = "sha256_arrays"
#: the arrays of a cube that are checked region by region, not as coordinates
CUBE_DATA = ("confidence", "member")


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
    """SHA-256 of an array's C-ordered bytes, NaNs canonicalised (docs/hpc.md)."""
    return hashlib.sha256(_canonical_bytes(np.asarray(block))).hexdigest()


class ValuesHasher:
    """SHA-256 of an array's values, fed in consecutive blocks along its first axis (the blocks
    of a stream give the digest of the whole array); see :func:`values_digest`."""

    def __init__(self):
        self._h = hashlib.sha256()
        self._rows = 0
        self._tail: tuple[int, ...] | None = None
        self._text: list[str] | None = None

    def update(self, block) -> None:
        a = np.asarray(block)
        self._rows += a.shape[0] if a.ndim else 1
        self._tail = a.shape[1:]
        if a.dtype.kind in "USOT":
            self._text = (self._text or []) + [str(x) for x in a.ravel().tolist()]
            return
        if a.dtype.kind in "iu":
            a = a.astype("<i8", copy=False)
        elif a.dtype.kind == "b":
            a = a.astype(bool, copy=False)
        if a.size:
            self._h.update(_canonical_bytes(a))

    def hexdigest(self) -> str:
        h = self._h.copy()
        if self._text is not None:
            h.update(json.dumps(self._text, ensure_ascii=False).encode())
        h.update(repr((self._rows, *(self._tail or ()))).encode())
        return h.hexdigest()


def _canonical_bytes(a: np.ndarray) -> memoryview:
    """The C-ordered little-endian bytes of ``a``, NaNs canonicalised (as :func:`block_digest` hashes them)."""
    a = np.ascontiguousarray(a)
    if a.dtype.kind == "f":
        nan = np.isnan(a)
        if nan.any():
            a = np.where(nan, np.array(np.nan, dtype=a.dtype), a)
        a = a.astype(a.dtype.newbyteorder("<"), copy=False)
    return memoryview(np.ascontiguousarray(a)).cast("B")


def values_digest(values) -> str:
    """SHA-256 of an array's values (module docstring): what a reader compares with the digest
    its writer stored, whatever the storage (chunks, encoding, string width)."""
    h = ValuesHasher()
    h.update(values)
    return h.hexdigest()


def open_store(path, what: str):
    """The Zarr group at ``path`` (read-only), or an :class:`IntegrityError` naming it and the
    command that rebuilds it when it is missing or cannot be opened."""
    import zarr

    try:
        return zarr.open_group(str(path), mode="r")
    except Exception as e:  # zarr raises several types for a missing or damaged store
        raise IntegrityError(
            f"{path} ({what}) cannot be opened ({type(e).__name__}: {' '.join(str(e).split())[:200]}); "
            f"{rebuild_hint(path)}"
        ) from None


def store_arrays(path) -> dict:
    """``{name: values}`` of every array of a Zarr store (read whole: for small arrays)."""
    import zarr

    return {name: np.asarray(arr[...]) for name, arr in zarr.open_group(str(path), mode="r").arrays()}


def check_arrays(path, recorded, arrays: dict, what: str, rebuild=None) -> None:
    """Compare ``arrays`` (``{name: values}``) with the digests ``recorded`` in store ``path``
    (its attribute :data:`ARRAYS_ATTR`); an :class:`IntegrityError` naming the store, the array
    and the command that rebuilds it (``rebuild``: the target, default ``path``) at the first
    difference. ``what``: the store in words (e.g. 'the membership matrix')."""
    target = rebuild if rebuild is not None else path
    if not isinstance(recorded, dict) or not recorded:
        raise IntegrityError(
            f"{path} ({what}) records no checksums of its arrays (written by an older version, or damaged); "
            f"{rebuild_hint(target)}"
        )
    for name, digest in recorded.items():
        if name not in arrays:
            raise IntegrityError(f"{path}: array {name!r} of {what} is missing (damaged store); {rebuild_hint(target)}")
        if values_digest(arrays[name]) != digest:
            raise IntegrityError(
                f"{path}/{name} ({what}) differs from what was written (a deleted or changed chunk); stopping "
                f"instead of computing from damaged data; {rebuild_hint(target)}"
            )


def check_finite(path, values: np.ndarray, record_ids, names=None) -> None:
    """An :class:`IntegrityError` naming the store, a record and a column when float model inputs
    hold NaN or infinity (the preparation writes finite inputs only)."""
    if values.dtype.kind != "f":
        return
    finite = np.isfinite(values)
    if finite.all():
        return
    bad = np.argwhere(~finite)
    r, c = int(bad[0][0]), int(bad[0][1]) if values.ndim > 1 else 0
    column = f" column {names[c]!r}" if names is not None and c < len(names) else ""
    raise IntegrityError(
        f"{path}: {len(bad):,} model input value(s) are not finite (e.g. record {str(record_ids[r])!r}{column}: "
        f"{values[tuple(bad[0])]}); prepared inputs are always finite, so the store was changed or damaged; "
        f"{rebuild_hint(path)}"
    )


def coordinate_digests(root) -> dict:
    """``{name: SHA-256}`` of every array of a cube group other than ``confidence`` and ``member``."""
    return {name: values_digest(arr[...]) for name, arr in root.arrays() if name not in CUBE_DATA}


def check_coordinates(cube_path, root=None) -> int:
    """Check every coordinate array of a cube against :data:`COORDS_ATTR` (an
    :class:`IntegrityError` naming the array and the command that rebuilds the cube);
    returns how many were checked."""
    import zarr

    cube_path = Path(cube_path)
    root = root if root is not None else zarr.open_group(str(cube_path), mode="r")
    recorded = root.attrs.get(COORDS_ATTR)
    if not isinstance(recorded, dict) or not recorded:
        raise IntegrityError(
            f"{cube_path} records no checksums of its coordinates (an older cube, or damaged); "
            f"{rebuild_hint(cube_path)}"
        )
    names = {name for name, _ in root.arrays()}
    for name, digest in recorded.items():
        if name not in names:
            raise IntegrityError(
                f"{cube_path}: coordinate {name!r} is missing (damaged cube); {rebuild_hint(cube_path)}"
            )
        if values_digest(root[name][...]) != digest:
            raise IntegrityError(
                f"{cube_path}/{name} (the cube's {name} coordinate) differs from what create_cube wrote (a deleted "
                f"or changed chunk); stopping instead of computing from damaged data; {rebuild_hint(cube_path)}"
            )
    return len(recorded)


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
        self.coordinates = check_coordinates(self.cube, root)
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
