"""Membership inference against public pretrained chest X-ray models (TorchXrayVision).

No model is trained here. :func:`read_candidates` samples candidate records from the targets'
training data sets through the data-set adapters and :func:`preprocess_image` prepares them as
TorchXrayVision expects; :func:`load_xrv_model` and :func:`query_logits` query the public target
and reference models (:func:`write_cube` stores the logits); :func:`membership_signal` turns the
multi-label outputs into one φ per record and :func:`attack_target` runs offline RMIA with the
LiRA-offline and loss baselines. Weights are read only from local files with
``torch.load(weights_only=True)``, allowing only torch.nn and TorchXrayVision module classes.
What is computed, the choices made and the references: docs/public_models.md.
"""

from __future__ import annotations

import importlib
import logging
import os
import re
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import xarray as xr
from scipy import special

from mia_audit.audit import attacks
from mia_audit.data.adapters import get_adapter
from mia_audit.data.adapters.base import check_index, options
from mia_audit.data.adapters.imaging import open_image
from mia_audit.errors import ConfigError, DataError
from mia_audit.settings import complete, value

if TYPE_CHECKING:
    import torch

#: data-set finding name → TorchXrayVision pathology name (where they differ)
XRV_NAMES = {"Pleural Effusion": "Effusion"}
AGGREGATES = ("mean", "sum", "joint")
SCORE_LEVELS = ("record", "patient")

log_default = logging.getLogger("mia_audit")


# --------------------------------------------------------------------------- the package


def import_xrv():
    """Import torchxrayvision without keeping its process-wide ``warnings.filterwarnings("ignore")``."""
    with warnings.catch_warnings():
        return importlib.import_module("torchxrayvision")


def weights_info(weights: str) -> dict:
    """TorchXrayVision's record of a weights name: url, file name, labels, op_threshs, resolution.

    Only DenseNet weights (names starting ``densenet``) are supported.
    """
    xrv = import_xrv()
    urls = xrv.models.model_urls
    if weights not in urls or not weights.startswith("densenet"):
        known = sorted(k for k in urls if k.startswith("densenet"))
        raise DataError(f"unknown TorchXrayVision DenseNet weights {weights!r}; known: {known}")
    rec = urls[weights]
    return {
        "url": rec["weights_url"],
        "filename": os.path.basename(rec["weights_url"]),
        "labels": list(rec["labels"]),
        "op_threshs": np.asarray(rec.get("op_threshs", [np.nan] * len(rec["labels"])), dtype=np.float64),
        "input_resolution": int(rec.get("input_resolution", 224)),
    }


def default_weights_dir() -> Path:
    """The package's own cache, ``~/.torchxrayvision/models_data/`` (``xrv.utils.get_cache_dir``)."""
    return Path(import_xrv().utils.get_cache_dir())


def expected_weights_path(weights: str, weights_dir=None) -> Path:
    """Where the checkpoint of ``weights`` must be: ``weights_dir`` (or the cache) / the release's file name."""
    folder = Path(os.path.expanduser(str(weights_dir))) if weights_dir else default_weights_dir()
    return folder / weights_info(weights)["filename"]


def ensure_weights(
    weights: str, weights_dir=None, allow_download: bool = False, config_key: str = "public_models.<name>"
) -> Path:
    """The checkpoint path; downloads with the package's own downloader only if allowed.

    A missing file with ``allow_download`` false raises a DataError naming the path,
    the URL and the config keys ``{config_key}.weights_dir`` and ``{config_key}.allow_download``.
    """
    path = expected_weights_path(weights, weights_dir)
    if path.is_file():
        return path
    info = weights_info(weights)
    if not allow_download:
        raise DataError(
            f"weights {weights!r}: expected file {path} does not exist. Put the released file "
            f"({info['url']}) there, or point config key {config_key}.weights_dir at the folder that "
            f"holds {info['filename']}, or set {config_key}.allow_download: true to let TorchXrayVision "
            "download it"
        )
    xrv = import_xrv()
    got = Path(xrv.models.get_weights(weights, cache_dir=str(path.parent)))
    if not got.is_file():
        raise FileNotFoundError(f"weights {weights!r}: download did not produce {got}")
    return got


def audit_weight_files(audit: dict, name: str) -> list[str]:
    """The checkpoint paths of every target and reference of config ``public_models.<name>``.

    Raises :class:`~mia_audit.errors.DataError` listing each missing file (role, model, weights name, path)
    and the config keys to set, unless ``allow_download`` is true (then [] is returned and
    the query job downloads).
    """
    if value(audit, "allow_download", "public_audit"):
        return []
    paths, missing = [], []
    for role in ("targets", "references"):
        for model, spec in audit[role].items():
            p = expected_weights_path(spec["weights"], audit.get("weights_dir"))
            paths.append(str(p))
            if not p.is_file():
                missing.append(f"{role}.{model} ({spec['weights']}): {p}")
    if missing:
        raise DataError(
            "missing TorchXrayVision checkpoint(s): " + "; ".join(missing) + ". Put the released files "
            f"there, or set config key public_models.{name}.weights_dir to the folder that holds them, "
            f"or set public_models.{name}.allow_download: true"
        )
    return paths


_SAFE_MODULE_PREFIXES = ("torch.nn.modules.", "torchxrayvision.models")


def _allowed_globals(path: Path) -> list:
    """The globals a checkpoint names, if all are torch.nn / TorchXrayVision module classes."""
    import torch

    allowed, refused = [], []
    for name in torch.serialization.get_unsafe_globals_in_checkpoint(str(path)):
        mod, _, attr = name.rpartition(".")
        obj = None
        if mod.startswith(_SAFE_MODULE_PREFIXES) or mod == "torchxrayvision.models":
            try:
                obj = getattr(importlib.import_module(mod), attr)
            except (ImportError, AttributeError):
                obj = None
        if isinstance(obj, type) and issubclass(obj, torch.nn.Module):
            allowed.append(obj)
        elif name == "collections.OrderedDict":
            import collections

            allowed.append(collections.OrderedDict)
        else:
            refused.append(name)
    if refused:
        raise DataError(
            f"checkpoint {path} names globals outside torch.nn and TorchXrayVision's model classes: "
            f"{refused}; refusing to unpickle it"
        )
    return allowed


def load_state_dict(path) -> dict:
    """A checkpoint's state dict, read with ``torch.load(weights_only=True)``.

    Accepts a plain state dict or a pickled module (TorchXrayVision's release format),
    allowing only torch.nn and TorchXrayVision module classes (docs/public_models.md).
    """
    import torch

    path = Path(path)
    with torch.serialization.safe_globals(_allowed_globals(path)):
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    if isinstance(obj, torch.nn.Module):
        return obj.state_dict()
    if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return obj
    raise DataError(f"checkpoint {path} holds {type(obj).__name__}, expected a module or a state dict")


def densenet_from_state_dict(state: dict):
    """An ``xrv.models.DenseNet`` (no weights name) shaped like ``state``, with ``state`` loaded.

    The architecture (initial features, growth rate, bottleneck size, layers per block,
    input channels, outputs) is read from the tensor shapes, so DenseNet-121 and smaller
    DenseNets load alike; loading is strict.
    """
    xrv = import_xrv()
    try:
        conv0 = state["features.conv0.weight"]
        growth = state["features.denseblock1.denselayer1.conv2.weight"].shape[0]
        bn_size = state["features.denseblock1.denselayer1.conv1.weight"].shape[0] // growth
        n_out = state["classifier.weight"].shape[0]
    except KeyError as e:
        raise DataError(f"state dict is not a TorchXrayVision DenseNet: missing {e}") from e
    blocks = {}
    for key in state:
        m = re.match(r"features\.denseblock(\d+)\.denselayer(\d+)\.", key)
        if m:
            b, layer = int(m.group(1)), int(m.group(2))
            blocks[b] = max(blocks.get(b, 0), layer)
    block_config = tuple(blocks[b] for b in sorted(blocks))
    model = xrv.models.DenseNet(
        growth_rate=growth,
        block_config=block_config,
        num_init_features=conv0.shape[0],
        bn_size=bn_size,
        num_classes=n_out,
        in_channels=conv0.shape[1],
    )
    model.load_state_dict(state, strict=True)
    return model


def load_xrv_model(
    weights: str, weights_dir=None, allow_download: bool = False, config_key: str = "public_models.<name>"
):
    """A TorchXrayVision DenseNet with released weights, in eval mode, returning logits.

    As ``xrv.models.DenseNet(weights=...)`` but: no download unless allowed
    (:func:`ensure_weights`), safe loading (:func:`load_state_dict`), and
    ``op_threshs = None`` / ``apply_sigmoid = False`` so ``forward`` returns the
    classifier's logits. Attributes set: ``pathologies`` (= ``targets``, the output
    order, '' where an output is unused), ``input_resolution`` and ``xrv_op_threshs``
    (the operating points TorchXrayVision would apply, as a numpy array).
    """
    info = weights_info(weights)
    path = ensure_weights(weights, weights_dir, allow_download, config_key)
    model = densenet_from_state_dict(load_state_dict(path))
    if model.classifier.out_features != len(info["labels"]):
        raise DataError(
            f"checkpoint {path} has {model.classifier.out_features} outputs; weights {weights!r} "
            f"have {len(info['labels'])} labels"
        )
    return as_logit_model(model, info["labels"], info["input_resolution"], info["op_threshs"])


def as_logit_model(model, labels, input_resolution: int, op_threshs=None):
    """Set the attributes :func:`load_xrv_model` documents on an xrv DenseNet; eval mode."""
    model.targets = list(labels)
    model.pathologies = model.targets
    model.input_resolution = int(input_resolution)
    model.op_threshs = None
    model.apply_sigmoid = False
    model.xrv_op_threshs = (
        np.full(len(labels), np.nan) if op_threshs is None else np.asarray(op_threshs, dtype=np.float64)
    )
    return model.eval()


# --------------------------------------------------------------------------- candidates


def _raw_chexpert(spec: dict, root: Path, findings: list[str]) -> pd.DataFrame:
    opts = options(spec)
    csv_dir = Path(opts["csv_dir"]) if opts.get("csv_dir") else None
    if csv_dir is None:
        cands = [root / d for d in ("CheXpert-v1.0-small", "CheXpert-v1.0") if (root / d / "train.csv").exists()]
        csv_dir = cands[0] if cands else root
    frames = [pd.read_csv(p) for p in (csv_dir / "train.csv", csv_dir / "valid.csv") if p.exists()]
    df = pd.concat(frames, ignore_index=True)
    rid = df["Path"].astype(str).str.replace(r"^CheXpert-v1\.0(-small)?/", "", regex=True)
    return pd.DataFrame({f: pd.to_numeric(df[f], errors="coerce").to_numpy() for f in findings}).set_index(rid)


def _raw_mimic(spec: dict, root: Path, findings: list[str], index: pd.DataFrame) -> pd.DataFrame:
    from mia_audit.data.adapters.mimic_cxr import _read

    labeler = str(options(spec).get("labeler", "chexpert")).lower()
    lab = _read(root, f"mimic-cxr-2.0.0-{labeler}", f"MIMIC-CXR-JPG {labeler} labels")
    lab = lab.assign(study_id=lab["study_id"].astype(int).astype(str)).drop_duplicates("study_id")
    m = index[["record_id", "study_id"]].merge(lab, on="study_id", how="left")
    return pd.DataFrame({f: pd.to_numeric(m[f], errors="coerce").to_numpy() for f in findings}).set_index(
        m["record_id"].to_numpy()
    )


def raw_label_codes(adapter_name: str, spec: dict, index: pd.DataFrame, findings: list[str]) -> pd.DataFrame:
    """Per record (rows aligned with ``index``): each finding's code 1, 0, −1 or NaN.

    CheXpert and MIMIC-CXR-JPG codes are read from their label tables (1 positive,
    0 negative, −1 uncertain, blank → NaN, not mentioned). Other adapters only give the
    coded 0/1 ``label_<finding>`` columns, which are used as they are.
    """
    root = Path(spec["root"])
    if adapter_name == "chexpert":
        raw = _raw_chexpert(spec, root, findings)
    elif adapter_name == "mimic_cxr":
        raw = _raw_mimic(spec, root, findings, index)
    else:
        return pd.DataFrame({f: index[f"label_{f}"].to_numpy(dtype=np.float32) for f in findings})
    raw = raw[~raw.index.duplicated()]
    out = raw.reindex(index["record_id"].to_numpy())
    bad = ~out.isin([1, 0, -1]) & out.notna()
    if bad.any(axis=None):
        col = bad.any()[bad.any()].index[0]
        raise DataError(f"{adapter_name}: finding {col!r} has a value outside 1, 0, -1, blank")
    return out.reset_index(drop=True).astype(np.float32)


def sample_candidates(index: pd.DataFrame, n: int | None, seed: int, splits=("pool",)) -> pd.DataFrame:
    """``n`` records drawn without replacement (seeded) from the records in ``splits``; all if n is None.

    Rows keep the index's order; raises DataError naming the counts when fewer than ``n``.
    """
    if splits and "split" in index:
        index = index[index["split"].isin(list(splits))]
    if n is None:
        return index.reset_index(drop=True)
    if len(index) < n:
        raise DataError(f"{n} candidates requested but only {len(index)} records are in splits {list(splits)}")
    pick = np.sort(np.random.default_rng(seed).choice(len(index), size=n, replace=False))
    return index.iloc[pick].reset_index(drop=True)


def read_candidates(name: str, spec: dict, seed: int = 0) -> pd.DataFrame:
    """The candidate records of data set ``name`` (config ``public_models.<audit>.candidates.<name>``).

    Columns: ``record_id, patient_id, dataset, split, path`` and one float column
    ``code_<pathology>`` per finding of the data set's label table under its
    TorchXrayVision name (1, 0, −1 uncertain, NaN not mentioned).
    """
    adapter = get_adapter(spec["adapter"])
    if adapter.modality != "image":
        raise DataError(f"candidates.{name}.adapter = {spec['adapter']!r} is not an image data set")
    index = adapter.read_index(spec, spec["root"])
    check_index(index, adapter, spec)
    picked = sample_candidates(index, spec.get("n"), seed, spec["splits"])
    _, findings = adapter.labels(spec)
    codes = raw_label_codes(spec["adapter"], spec, picked, findings)
    codes.columns = [f"code_{XRV_NAMES.get(f, f)}" for f in findings]
    keep = picked[["record_id", "patient_id", "split", "path"]].astype(str)
    keep.insert(2, "dataset", name)
    return pd.concat([keep, codes], axis=1)


def preprocess_image(path, size: int) -> np.ndarray:
    """One file → uint8 (1, size, size) as TorchXrayVision expects.

    Grey scale; JPEGs decoded at a reduced DCT scale that keeps both sides ≥ ``size``
    (Pillow ``draft``), then TorchXrayVision's ``XRayCenterCrop`` (square on the shorter
    side) and ``XRayResizer(size)`` (skimage, anti-aliased) on the image scaled to
    [−1024, 1024] by ``xrv.utils.normalize(img, 255)``, in the package's order (its
    resize pads with 0, so the order matters at the borders). Stored as uint8, i.e.
    rounded to the nearest of the 256 levels of the normalised scale (≤ 4.02 units of
    2048); :func:`to_model_input` maps back with the same ``normalize``.
    """
    xrv = import_xrv()
    img = xrv.utils.normalize(np.asarray(open_image(path, size, "L").convert("L")), 255)[None]
    img = xrv.datasets.XRayCenterCrop()(img)
    img = xrv.datasets.XRayResizer(size)(img)  # pads with 0 (mid-grey) at the borders, so normalise first
    return np.clip(np.rint((img / 1024.0 + 1.0) * 127.5), 0, 255).astype(np.uint8)


def _preprocess_many(args):
    paths, size = args
    return np.stack([preprocess_image(p, size) for p in paths])


def write_inputs(
    path, candidates: pd.DataFrame, size: int, workers: int = 1, block: int = 256, log: logging.Logger | None = None
) -> None:
    """Preprocess every candidate into ``path`` (Zarr: ``image`` (record, 1, size, size) uint8)."""
    import zarr

    from mia_audit.storage import quiet_zarr

    log = log or log_default
    n = len(candidates)
    ds = xr.Dataset(
        coords={"record_id": ("record", candidates["record_id"].to_numpy().astype("U"))},
        attrs={"image_size": int(size)},
    )
    with quiet_zarr():
        ds.to_zarr(path, mode="w", consolidated=False)
    arr = zarr.open_group(path, mode="a").create_array(
        "image",
        shape=(n, 1, size, size),
        chunks=(min(block, max(n, 1)), 1, size, size),
        dtype="uint8",
        dimension_names=["record", "channel", "y", "x"],
    )
    paths = candidates["path"].tolist()
    chunks = [(paths[i : i + block], size) for i in range(0, n, block)]
    pool = ProcessPoolExecutor(max_workers=workers) if workers > 1 else None
    try:
        results = pool.map(_preprocess_many, chunks) if pool else map(_preprocess_many, chunks)
        for i, stack in enumerate(results):
            arr[i * block : i * block + len(stack)] = stack
            log.info("preprocessed %d / %d images", min(n, (i + 1) * block), n)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    with quiet_zarr():
        zarr.consolidate_metadata(path)


# --------------------------------------------------------------------------- query


def to_model_input(images_uint8) -> torch.Tensor:
    """uint8 (N, 1, S, S) → float32 in [−1024, 1024] by ``xrv.utils.normalize(img, 255)``."""
    import torch

    xrv = import_xrv()
    return torch.from_numpy(xrv.utils.normalize(np.asarray(images_uint8), 255))


def query_logits(
    model,
    images,
    batch_size: int = 64,
    device="cpu",
    log_every: int = 50,
    log: logging.Logger | None = None,
    label: str = "model",
) -> np.ndarray:
    """Logits (N, outputs) float32 of ``model`` on uint8 images (N, 1, S, S) (array or zarr), batched.

    Runs in eval mode under ``torch.inference_mode``; progress is logged every ``log_every`` batches.
    """
    import torch

    log = log or log_default
    device = torch.device(device)
    model = model.to(device).eval()
    n = images.shape[0]
    n_batches = -(-n // batch_size)
    out = np.empty((n, model.classifier.out_features), dtype=np.float32)
    with torch.inference_mode():
        for b, start in enumerate(range(0, n, batch_size)):
            x = to_model_input(images[start : start + batch_size]).to(device)
            out[start : start + len(x)] = model(x).float().cpu().numpy()
            if (b + 1) % log_every == 0 or b + 1 == n_batches:
                log.info("%s: batch %d / %d", label, b + 1, n_batches)
    return out


def write_cube(path, candidates: pd.DataFrame, models: dict, logits: dict, attrs: dict | None = None) -> xr.Dataset:
    """The confidence cube of a public-model audit as ``path`` (Zarr).

    ``models``: name → {"role": "target"|"reference", "weights": str, "labels": list,
    "op_threshs": array, "members": data set name or None}; ``logits``: name → (records,
    outputs) array in the model's output order. Variables: ``logit`` (model, record,
    label) float32 (NaN where the model has no such output), ``op_thresh`` (model, label),
    ``has_label`` (model, label), ``member`` (model, record) bool (a target's member
    records are those of its ``members`` data set; references have none), ``code``
    (record, label) float32, the records' label codes (NaN where the data set has no
    such label). Record coordinates: record_id, patient_id, dataset, split.
    """
    names = list(models)
    labels = []
    for m in names:
        labels += [k for k in models[m]["labels"] if k and k not in labels]
    n = len(candidates)
    logit = np.full((len(names), n, len(labels)), np.nan, dtype=np.float32)
    thr = np.full((len(names), len(labels)), np.nan)
    has = np.zeros((len(names), len(labels)), dtype=bool)
    for i, m in enumerate(names):
        z = np.asarray(logits[m])
        if z.shape != (n, len(models[m]["labels"])):
            raise ValueError(f"logits of {m!r} have shape {z.shape}, expected {(n, len(models[m]['labels']))}")
        for j, k in enumerate(models[m]["labels"]):
            if k:
                col = labels.index(k)
                logit[i, :, col], thr[i, col], has[i, col] = z[:, j], models[m]["op_threshs"][j], True
    member = np.zeros((len(names), n), dtype=bool)
    for i, m in enumerate(names):
        if models[m]["role"] == "target":
            member[i] = candidates["dataset"].to_numpy() == models[m]["members"]
    code = np.stack(
        [
            candidates[f"code_{k}"].to_numpy(np.float32)
            if f"code_{k}" in candidates
            else np.full(n, np.nan, np.float32)
            for k in labels
        ],
        axis=1,
    )
    ds = xr.Dataset(
        {
            "logit": (("model", "record", "label"), logit),
            "op_thresh": (("model", "label"), thr),
            "has_label": (("model", "label"), has),
            "member": (("model", "record"), member),
            "code": (("record", "label"), code),
        },
        coords={
            "model": names,
            "label": labels,
            "role": ("model", [models[m]["role"] for m in names]),
            "weights": ("model", [models[m]["weights"] for m in names]),
            **{
                c: ("record", candidates[c].astype(str).to_numpy().astype("U"))
                for c in ("record_id", "patient_id", "dataset", "split")
            },
        },
        attrs=dict(attrs or {}),
    )
    ds["logit"].attrs["long_name"] = "classifier logit (before sigmoid and operating-point normalisation)"
    from mia_audit.storage import quiet_zarr

    with quiet_zarr():
        ds.to_zarr(path, mode="w", consolidated=True)
    return ds


# --------------------------------------------------------------------------- signal


def membership_signal(
    logit, code, use_label, *, aggregate: str = "mean", uncertain: str = "skip", missing: str = "skip"
) -> np.ndarray:
    r"""One membership signal per (model, record) from per-label logits.

    Parameters
    ----------
    logit : (models, records, labels) logits z.
    code : (records, labels) label codes 1, 0, −1 (uncertain), NaN (not mentioned / not in
        the record's data set).
    use_label : (labels,) bool, the labels every model compared shares.
    aggregate : ``mean`` | ``sum`` of φ_k, or ``joint``: the log-odds of the probability
        of the whole label vector, log P − log(1 − P), log P = Σ_k log σ(φ_k).
    uncertain : ``skip`` (default), ``positive`` or ``negative`` for code −1.
    missing : ``skip`` (default) or ``negative`` for NaN codes of labels the record's data
        set has; labels the data set lacks are always skipped (``code`` NaN there too,
        so use ``negative`` only where the data set's table has every used label).

    φ_k = z_k for a positive, −z_k for a negative label (``multilabel_signal``); the
    labels used for a record are the same for every model. Returns (models, records)
    float64, NaN where a record has no usable label.
    """
    z = np.asarray(logit, dtype=np.float64)
    c = np.array(code, dtype=np.float64)
    if aggregate not in AGGREGATES:
        raise ConfigError(f"signal.aggregate = {aggregate!r}; expected one of {AGGREGATES}")
    if uncertain not in ("skip", "positive", "negative"):
        raise ConfigError(f"signal.uncertain = {uncertain!r}; expected skip, positive or negative")
    if missing not in ("skip", "negative"):
        raise ConfigError(f"signal.missing = {missing!r}; expected skip or negative")
    if uncertain != "skip":
        c[c == -1] = 1.0 if uncertain == "positive" else 0.0
    if missing == "negative":
        c[np.isnan(c)] = 0.0
    known = np.isin(c, (0.0, 1.0)) & np.asarray(use_label, dtype=bool)[None, :]
    import torch

    from mia_audit.query.membership_signal import multilabel_signal

    phi = multilabel_signal(torch.from_numpy(z), torch.from_numpy(np.nan_to_num(c) == 1.0)).numpy()
    phi = np.where(known[None], phi, np.nan)
    n = known.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        if aggregate == "mean":
            s = np.nansum(phi, axis=-1) / n
        elif aggregate == "sum":
            s = np.nansum(phi, axis=-1)
        else:
            log_p = np.where(known[None], special.log_expit(np.nan_to_num(phi)), 0.0).sum(axis=-1)
            s = log_p - np.log(-np.expm1(np.minimum(log_p, -1e-300)))
    return np.where(n[None, :] > 0, s, np.nan)


# --------------------------------------------------------------------------- attacks


def shared_labels(cube: xr.Dataset, models) -> np.ndarray:
    """(labels,) bool: output by every model in ``models``."""
    return cube["has_label"].sel(model=list(models)).values.all(axis=0)


def attack_target(
    cube: xr.Dataset,
    target: str,
    references,
    *,
    population: int = 500,
    seed: int = 0,
    a: float | None = None,
    gamma: float = 1.0,
    signal: dict | None = None,
) -> pd.DataFrame:
    r"""Scores of every candidate against one public target.

    Attacks (higher = member):

    * ``rmia_offline``: :func:`mia_audit.audit.attacks.rmia_offline_external` (population of
      ``population`` other candidates; ``a`` defaults to 0.3, Zarifzadeh et al.'s offline
      value, since public references cannot be used to tune it);
    * ``lira_offline``: LiRA offline with a global variance, φ_t(x) − mean_r φ_r(x). With
      one reference no per-record variance exists; with any *global* σ the offline
      score −log Pr[Z ≥ φ_t], Z ~ N(φ_ref, σ²), is monotone in φ_t − φ_ref, so this
      difference has the same ROC (and is Watson et al.'s reference-calibrated score). It is
      reported as ``lira_offline``, but it is not :func:`mia_audit.audit.attacks.lira_offline`,
      whose per-record variance needs two out-references per record;
    * ``loss_threshold``: φ_t(x).

    Candidates without a usable label have status ``no_labels`` and no scores.
    Returns one row per candidate: target, record_id, patient_id, dataset, member,
    n_labels, signal_target, signal_reference, the three scores and status;
    ``attrs["a"]`` is RMIA's ``a``.
    """
    signal = complete(signal, "public_signal")
    models = [target, *references]
    use = shared_labels(cube, models)
    if not use.any():
        raise DataError(f"target {target!r} and references {list(references)} share no output label")
    phi = membership_signal(
        cube["logit"].sel(model=models).values,
        cube["code"].values,
        use,
        aggregate=signal["aggregate"],
        uncertain=signal["uncertain"],
        missing=signal["missing"],
    )
    code = cube["code"].values
    n_labels = (np.isin(code, (0.0, 1.0)) & use[None]).sum(axis=1)
    member = cube["member"].sel(model=target).values
    if member.all() or not member.any():
        raise DataError(f"target {target!r}: candidates must include members and non-members")
    ok = np.isfinite(phi).all(axis=0)
    t, r = phi[0], phi[1:]
    out = pd.DataFrame(
        {
            "target": target,
            "record_id": cube["record_id"].values,
            "patient_id": cube["patient_id"].values,
            "dataset": cube["dataset"].values,
            "member": member,
            "n_labels": n_labels,
            "signal_target": t,
            "signal_reference": r.mean(axis=0),
        }
    )
    for k in attacks.EXTERNAL_ATTACKS:
        out[k] = np.nan
    a = attacks.DEFAULT_RMIA_A if a is None else float(a)
    rm = attacks.rmia_offline_external(
        t[ok], r[:, ok], member[ok], population_size=population, a=a, seed=seed, gamma=gamma
    )
    out.loc[ok, "rmia_offline"] = rm["score"].to_numpy()
    out.loc[ok, "lira_offline"] = (t - r.mean(axis=0))[ok]
    out.loc[ok, "loss_threshold"] = attacks.loss_threshold(t[None, ok])[0]
    out["status"] = np.where(ok, attacks.STATUS_OK, "no_labels")
    out.attrs["a"] = rm.attrs["a"]
    return out


def patient_scores(scores: pd.DataFrame) -> pd.DataFrame:
    """Per target × patient: each attack's maximum over the patient's scored records
    (:func:`mia_audit.audit.attacks.patient_maximum`), ``member`` (any record a member),
    ``n_records`` and ``dataset``."""
    ok = scores[scores["status"] == attacks.STATUS_OK]
    return attacks.patient_maximum(ok, attacks.EXTERNAL_ATTACKS, by=("target", "patient_id"), first=("dataset",))


def summarise(scores: pd.DataFrame, patients: pd.DataFrame, a: dict | None = None) -> pd.DataFrame:
    """One row per level (record, patient) × target × attack: AUC and TPR at FPR 0.1 %, 1 %, 10 %
    (:func:`mia_audit.audit.attacks.summary_table`) and offline RMIA's ``a`` (``rmia_a``)."""
    parts = []
    for level, df in (("record", scores), ("patient", patients)):
        t = attacks.summary_table(df, attacks.EXTERNAL_ATTACKS, by=("target",))
        t.insert(2, "level", level)
        t["rmia_a"] = [
            (a or {}).get(target, np.nan) if "a" in attacks.ATTACKS[k].options else np.nan
            for target, k in zip(t["target"], t["attack"], strict=True)
        ]
        parts.append(t)
    return pd.concat(parts, ignore_index=True)
