"""Data-set adapters: each published data layout → the prepare stage's records and inputs.

``get_adapter(name)`` finds an adapter (see :mod:`.base` for the interface and the index
contract); :func:`mia_audit.data.prepare.prepare` runs one and writes records.parquet and
inputs.zarr, for every data set, tables included. The rules shared by all adapters (id
labels, the patient split, subgroup columns) are in :mod:`mia_audit.data.records`.
"""

from mia_audit.data.adapters.base import DatasetAdapter, adapter_names, get_adapter

__all__ = ["DatasetAdapter", "adapter_names", "get_adapter"]
