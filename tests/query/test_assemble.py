"""The cube assembled from its shards' own outputs (mia_audit.query.assemble): the same cube as
the shards' rows written into the skeleton in place, every check of the assembled cube passes,
the skeleton is left as it was, and a damaged shard store stops the assembly naming the shard."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import zarr

from mia_audit import integrity
from mia_audit.query import assemble, cube


def shards(tmp, n_models=6, n_records=23, per_shard=2, chunk=5, views=None):
    """A skeleton, and per shard its store of rows and its summary (as a query job writes them)."""
    rng = np.random.default_rng(2)
    records = pd.DataFrame(
        {
            "record_id": [f"r{i}" for i in range(n_records)],
            "patient_id": [f"p{i // 3}" for i in range(n_records)],
            "split": np.where(np.arange(n_records) < 18, "pool", "test"),
        }
    )
    member = rng.permuted(np.repeat([[True], [False]], n_models // 2, axis=0) & (np.arange(n_records) < 18), axis=0)
    skeleton = tmp / "cube_skeleton.zarr"
    cube.create_cube(skeleton, records, member, models_per_shard=per_shard, views=views, record_chunk=chunk)
    stores, summaries, blocks = [], [], []
    for k in range(n_models // per_shard):
        block = rng.standard_normal((per_shard, n_records, *([len(views)] if views else []))).astype(np.float32)
        region = integrity.cube_region(skeleton, k * per_shard, block)
        store = tmp / "query" / f"shard_{k}.zarr"
        assemble.write_rows(store, "full", k * per_shard, block, region["record_chunk"])
        summary = store.with_suffix(".json")
        summary.write_text(json.dumps({"cube_regions": {"full": region}}))
        stores.append(store)
        summaries.append(summary)
        blocks.append(block)
    return skeleton, stores, summaries, np.concatenate(blocks)


@pytest.mark.parametrize("views", [None, ["original", "hflip"]])
def test_assembled_cube_is_the_skeleton_with_every_shards_rows(tmp_path, views) -> None:
    skeleton, stores, summaries, expected = shards(tmp_path, views=views)
    assert assemble.rows_path(summaries[1]) == stores[1]
    out = tmp_path / "cube.zarr"
    assert assemble.assemble(skeleton, stores, out, summaries=summaries) == 3
    np.testing.assert_array_equal(zarr.open_group(str(out), mode="r")["confidence"][...], expected)
    assert integrity.CubeCheck(out, summaries).verify() == 3 * 5  # the recorded digests hold in the cube
    assert np.isnan(zarr.open_group(str(skeleton), mode="r")["confidence"][...]).all()  # skeleton untouched
    opened = cube.open_cube(out)
    assert opened["confidence"].shape == expected.shape and opened.sizes["model"] == 6


def test_a_damaged_shard_store_stops_the_assembly_naming_the_shard(tmp_path) -> None:
    skeleton, stores, summaries, _ = shards(tmp_path)
    arr = zarr.open_array(str(stores[2] / "full" / "confidence"), mode="r+")
    arr[0, 0] = 99.0
    with pytest.raises(
        integrity.IntegrityError, match=r"shard_2\.zarr: the rows of models 4–5 differ.*--force .*shard_2\.json"
    ):
        assemble.assemble(skeleton, stores, tmp_path / "cube.zarr", summaries=summaries)
    with pytest.raises(ValueError, match="3 shard stores but 2 query summaries"):
        assemble.assemble(skeleton, stores, tmp_path / "cube.zarr", summaries=summaries[:2])
    with pytest.raises(Exception, match="holds no rows of the 'labs' cube"):
        assemble.read_rows(stores[0], "labs")
