"""Target model families: the registry that turns an experiment's ``model`` block into models.

Two kinds of family:

* ``network``: a PyTorch ``nn.Module`` whose outputs are logits, trained by the project's own
  loop and ``train`` block (:mod:`mia_audit.train.ensemble`, DP-SGD where asked). Its entry's
  ``build(spec, input_shape, num_outputs)`` makes one untrained model. The project's networks
  (MLP, wide ResNets, ViTs, 1-D ResNets) and a user's own (``arch: torch``, a factory).
* ``estimator``: a classifier fitted by its own library (scikit-learn, XGBoost, LightGBM, or a
  user's scikit-learn-compatible estimator, ``arch: sklearn``), configured by ``model.params``
  (or a factory); the ``train`` block does not apply. Its entry's ``build()`` returns the
  family's adapter (:class:`mia_audit.train.estimators.Estimator`): how one model is made,
  fitted, scored (its logits, from which φ is computed) and stored.

This module imports neither PyTorch nor the estimator libraries (the plan and the config
checks read the registry when the Snakefile is parsed); each builder imports what it needs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mia_audit.errors import ConfigError
from mia_audit.settings import complete


def __getattr__(name: str):
    """``MLP`` lives in :mod:`mia_audit.train.mlp` (imported here on first use, with torch)."""
    if name == "MLP":
        from mia_audit.train.mlp import MLP

        return MLP
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def build_mlp(spec: dict, input_shape: tuple[int, ...], num_outputs: int):
    from mia_audit.train.mlp import build_mlp as build

    return build(spec, input_shape, num_outputs)


def build_vision(spec: dict, input_shape: tuple[int, ...], num_outputs: int):
    from mia_audit.train.vision import build_vision_model

    return build_vision_model(spec, tuple(input_shape), num_outputs)


def build_ecg(spec: dict, input_shape: tuple[int, ...], num_outputs: int):
    from mia_audit.train.ecg import build_ecg_model

    return build_ecg_model(spec, tuple(input_shape), num_outputs)


def build_torch_factory(spec: dict, input_shape: tuple[int, ...], num_outputs: int):
    """A user's network: ``factory(input_shape=…, num_outputs=…, **kwargs)`` (``arch: torch``),
    checked to be an ``nn.Module``."""
    from torch import nn

    from mia_audit.train import factories

    key = "model.factory"
    fn = factories.resolve(spec["factory"], key)
    model = fn(input_shape=tuple(int(d) for d in input_shape), num_outputs=int(num_outputs), **spec["kwargs"])
    if not isinstance(model, nn.Module):
        raise ConfigError(
            f"config key {key}: {spec['factory']} returned a {type(model).__module__}.{type(model).__name__}, "
            "not a torch.nn.Module"
        )
    return model


def estimator(name: str) -> Callable[[], object]:
    """The builder of an estimator family: returns its adapter, the class ``name`` of
    :mod:`mia_audit.train.estimators` (imported on first use)."""

    def adapter():
        from mia_audit.train import estimators

        return getattr(estimators, name)()

    adapter.__qualname__ = f"estimator({name!r})"
    return adapter


ARTICLE = {"table": "a", "image": "an", "signal": "a"}
#: input modality → (dimensions of one record's input, what they are)
MODALITY_SHAPES = {
    "table": (1, "(features,)"),
    "image": (3, "(channels, height, width)"),
    "signal": (2, "(leads, samples)"),
}
KINDS = ("network", "estimator")


@dataclass(frozen=True)
class Family:
    """A registered model family.

    ``kind``: ``network`` or ``estimator`` (module docstring). ``modality``: the inputs it takes
    (``table``, ``image``, ``signal``; None: any, a user's network). ``build``: for a network,
    ``build(spec, input_shape, num_outputs)`` → one untrained ``nn.Module``; for an estimator,
    ``build()`` → its adapter. ``keys``: the ``model`` keys it reads besides ``arch``, checked
    before any job (None: the schema's network keys, not checked).
    """

    kind: str
    modality: str | None
    build: Callable
    keys: frozenset[str] | None = None


PARAMS = frozenset({"params"})
FACTORY = frozenset({"factory", "kwargs"})

#: The model-family registry: config key ``experiments.<name>.model.arch`` → family. Adding one
#: touches its module (its builder, or its adapter in train/estimators.py), this entry and the
#: schema (the arch enum, its keys and defaults, its cluster cost; docs/extending.md).
FAMILIES: dict[str, Family] = {
    "mlp": Family("network", "table", build_mlp),
    "wrn-28-2": Family("network", "image", build_vision),
    "wrn-40-4": Family("network", "image", build_vision),
    "wrn": Family("network", "image", build_vision),
    "vit-b-16": Family("network", "image", build_vision),
    "vit-l-16": Family("network", "image", build_vision),
    "ecg-resnet1d": Family("network", "signal", build_ecg),
    "ecg-xresnet1d": Family("network", "signal", build_ecg),
    "torch": Family("network", None, build_torch_factory, FACTORY),
    "logistic_regression": Family("estimator", "table", estimator("LogisticRegressionFamily"), PARAMS),
    "hist_gradient_boosting": Family("estimator", "table", estimator("HistGradientBoostingFamily"), PARAMS),
    "random_forest": Family("estimator", "table", estimator("RandomForestFamily"), PARAMS),
    "xgboost": Family("estimator", "table", estimator("XGBoostFamily"), PARAMS),
    "lightgbm": Family("estimator", "table", estimator("LightGBMFamily"), PARAMS),
    "sklearn": Family("estimator", "table", estimator("SklearnFactoryFamily"), FACTORY),
}


def known_archs() -> list[str]:
    return list(FAMILIES)


def family(spec: dict) -> Family:
    """The registered family of a ``model`` block (its ``arch``)."""
    if "arch" not in spec:
        raise ValueError(f"config key model.arch is missing; known: {known_archs()}")
    arch = str(spec["arch"]).lower()
    if arch not in FAMILIES:
        raise ValueError(f"unknown model.arch {spec['arch']!r}; known: {known_archs()}")
    return FAMILIES[arch]


def is_estimator(spec: dict) -> bool:
    """Whether a ``model`` block's family is fitted by its own library (not trained as a network)."""
    return family(spec).kind == "estimator"


def estimator_adapter(spec: dict):
    """The adapter (:class:`mia_audit.train.estimators.Estimator`) of an estimator family's ``model`` block."""
    fam = family(spec)
    if fam.kind != "estimator":
        raise ValueError(f"model.arch {spec['arch']!r} is a network, not an estimator")
    return fam.build()


def build_model(spec: dict, input_shape: tuple[int, ...], num_outputs: int):
    """Build one (untrained) network from an experiment's ``model`` config block (validated: the
    schema documents each family's keys and fills their defaults).

    ``input_shape`` is the shape of one record's input (without the batch dimension):
    (features,) for ``mlp``; (channels, height, width) for the image networks of
    :mod:`mia_audit.train.vision`; (leads, samples) for the ECG networks of
    :mod:`mia_audit.train.ecg`; whatever the data set gives for ``torch``.
    """
    fam = family(spec)
    arch = str(spec["arch"]).lower()
    if fam.kind != "network":
        raise ValueError(f"model.arch {arch!r} is fitted by its own library, not built as a network")
    spec = complete({**spec, "arch": arch}, "model")
    if fam.modality is not None:
        dims, what = MODALITY_SHAPES[fam.modality]
        if len(input_shape) != dims:
            raise ValueError(
                f"model.arch {arch!r} is {ARTICLE[fam.modality]} {fam.modality} network and takes inputs {what}; "
                f"the data set's inputs have shape {tuple(input_shape)} per record"
            )
    return fam.build(spec, tuple(input_shape), num_outputs)
