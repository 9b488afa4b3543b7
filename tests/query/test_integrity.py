"""What each shard wrote is checked where it is read (workflow/mia_audit/integrity.py): a good
cube passes (with views, all-NaN shards and the record-risk stage's streaming check) and gives
the same record risk as an unchecked read; the failures are in tests/workflow/test_bad_inputs.py."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from mia_audit import integrity
from mia_audit.audit import cube_audit
from mia_audit.query import cube


def write_cube(tmp, n_models=6, n_records=23, per_shard=2, chunk=5, views=None, nan_shard=None):
    rng = np.random.default_rng(1)
    records = pd.DataFrame(
        {
            "record_id": [f"r{i}" for i in range(n_records)],
            "patient_id": [f"p{i // 3}" for i in range(n_records)],
            "split": np.where(np.arange(n_records) < 18, "pool", "test"),
        }
    )
    member = np.zeros((n_models, n_records), dtype=bool)
    member[: n_models // 2, :18] = True
    member = rng.permuted(member, axis=0)
    path = tmp / "cube.zarr"
    cube.create_cube(path, records, member, models_per_shard=per_shard, views=views, record_chunk=chunk)
    summaries = []
    for k in range(n_models // per_shard):
        shape = (per_shard, n_records) + ((len(views),) if views else ())
        block = rng.standard_normal(shape).astype(np.float32)
        if k == nan_shard:
            block[:] = -np.float32(np.nan)  # a diverged shard; zarr may keep such chunks unwritten
        cube.write_confidence(path, k * per_shard, block)
        s = tmp / f"shard_{k}.json"
        s.write_text(json.dumps({"cube_regions": {"full": integrity.cube_region(path, k * per_shard, block)}}))
        summaries.append(s)
    return path, summaries


@pytest.mark.parametrize("views, nan_shard", [(None, None), (["original", "hflip"], None), (None, 1)])
def test_a_good_cube_passes_every_check(tmp_path, views, nan_shard) -> None:
    path, summaries = write_cube(tmp_path, views=views, nan_shard=nan_shard)
    check = integrity.CubeCheck(path, summaries)
    assert check.verify() == 3 * 5  # shards × record chunks
    checked = cube_audit.record_risk_from_cube(path, block_records=7)
    streamed = pd.concat(list(cube_audit.iter_record_risk(path, block_records=7, check=check.check_slab)))
    pd.testing.assert_frame_equal(streamed.reset_index(drop=True), checked)


def test_region_digests_follow_the_cube_chunks(tmp_path) -> None:
    block = np.arange(2 * 11, dtype=np.float32).reshape(2, 11)
    digests = integrity.region_digests(block, 4)
    assert len(digests) == 3 and digests[2] == integrity.block_digest(block[:, 8:11])
    nan_a = np.array([np.nan, 1], dtype=np.float32)
    nan_b = nan_a.copy()
    nan_b.view(np.uint32)[0] = 0xFFC00001  # another NaN bit pattern
    assert integrity.block_digest(nan_a) == integrity.block_digest(nan_b)
    assert integrity.block_digest(np.array([0.0, 1], dtype=np.float32)) != integrity.block_digest(nan_a)


def test_shard_manifest_round_trip(tmp_path) -> None:
    w = tmp_path / "shard_0.safetensors"
    w.write_bytes(b"weights" * 100)
    integrity.write_shard_manifest(tmp_path / "m.json", 0, (0, 4), [w])
    assert integrity.check_shard_file(w, tmp_path / "m.json", models=[0, 4])["models"] == [0, 4]
    with pytest.raises(integrity.IntegrityError, match=r"holds models \[0, 4\] but shard 0 .* should hold \[4, 8\]"):
        integrity.check_shard_file(w, tmp_path / "m.json", models=[4, 8])
