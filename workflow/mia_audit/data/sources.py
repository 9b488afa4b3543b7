"""What a data set is read from, and a fingerprint of its content (the key of its validation).

The workflow validates and prepares a data set again whenever its *content* changes, not only
its configuration or a file's modification time (a table replaced by another one with an
older time must not leave results that describe the old one). The key is the SHA-256 of
each file the adapter reads its index from:

* ``table``: the table file;
* other adapters: the files of their index (the adapter's ``index_files`` method: CheXpert's ``train.csv``,
  ``valid.csv`` and demographics, PTB-XL's database and SCP tables, …); adapters whose
  labels sit inside the image files (FairVision's npz) list those files by name and size
  (its ``index_listing`` method): hashing every image at every run would cost more than the run;
* ``synthetic_images``: nothing (the data are generated from the configuration).

Raw images and signals are not hashed: a changed image under the same name and size is not
detected (their decoding is checked when they are prepared). A file above
:data:`FULL_HASH_BYTES` is fingerprinted by its size and the SHA-256 of its first and last
16 MiB and 64 evenly spaced 1 MiB blocks (a changed file of the same size whose changes all
fall between those blocks would be missed).

The Snakefile is parsed at every invocation (and by every cluster job), so each file is
hashed once per process: fingerprints are cached by path, size and modification time in
nanoseconds. Light imports only (the planner calls this when it builds the job graph).
"""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path

#: files up to this size are hashed whole; larger ones by size and sampled blocks (module docstring)
FULL_HASH_BYTES = 1 << 30
_EDGE, _BLOCK, _BLOCKS = 16 << 20, 1 << 20, 64


def source_files(spec: dict, root=None) -> tuple[list[Path], list[Path]]:
    """``(hashed, listed)``: the files whose content keys a data set's validation, and those
    keyed by name and size only (module docstring). ``spec``: the data set's config block."""
    from mia_audit.data.layout import table_path
    from mia_audit.settings import value

    adapter = value(spec, "adapter", "dataset")
    root = root if root is not None else spec.get("root")
    if adapter == "table":
        return [table_path(spec, root)], []
    from mia_audit.data.adapters.base import get_adapter

    impl = get_adapter(adapter)
    if root is None and getattr(impl, "needs_root", True):
        return [], []  # validation says that root is missing
    hashed = list(impl.index_files(spec, root)) if hasattr(impl, "index_files") else []
    listed = list(impl.index_listing(spec, root)) if hasattr(impl, "index_listing") else []
    return [Path(p) for p in hashed], [Path(p) for p in listed]


@functools.lru_cache(maxsize=4096)
def _fingerprint(path: str, size: int, mtime_ns: int) -> tuple[str, bool]:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        if size <= FULL_HASH_BYTES:
            while chunk := fh.read(1 << 24):
                h.update(chunk)
            return h.hexdigest(), False
        h.update(str(size).encode())
        offsets = [0, size - _EDGE, *(int(i * (size - _BLOCK) / (_BLOCKS - 1)) for i in range(_BLOCKS))]
        for offset, length in zip(offsets, [_EDGE, _EDGE, *[_BLOCK] * _BLOCKS], strict=True):
            fh.seek(offset)
            h.update(fh.read(length))
    return h.hexdigest(), True


def file_fingerprint(path) -> dict:
    """``{path, bytes, sha256[, sampled]}`` of a file, or ``{path, missing: True}``; cached by
    path, size and modification time (ns), so a file is read once per process."""
    path = str(path)
    try:
        st = os.stat(path)
    except OSError:
        return {"path": path, "missing": True}
    if not os.path.isfile(path):
        return {"path": path, "missing": True}
    digest, sampled = _fingerprint(os.path.abspath(path), st.st_size, st.st_mtime_ns)
    return {"path": path, "bytes": st.st_size, "sha256": digest, **({"sampled": True} if sampled else {})}


def source_fingerprints(spec: dict, root=None) -> list[dict]:
    """The fingerprint of every source file of a data set (:func:`source_files`): hashed files
    with their SHA-256, listed files with their size."""
    hashed, listed = source_files(spec, root)
    out = [file_fingerprint(p) for p in hashed]
    for p in listed:
        try:
            out.append({"path": str(p), "bytes": os.stat(p).st_size})
        except OSError:
            out.append({"path": str(p), "missing": True})
    return out


def content_key(spec: dict, root=None) -> str:
    """One SHA-256 over :func:`source_fingerprints` (paths, sizes and digests)."""
    h = hashlib.sha256()
    for fp in source_fingerprints(spec, root):
        h.update(repr(sorted(fp.items())).encode())
    return h.hexdigest()
