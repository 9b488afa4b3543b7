"""Target model families and the registry that builds them from an experiment's ``model`` block."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from mia_audit.settings import complete


class MLP(nn.Module):
    """Tabular multi-layer perceptron: ``depth`` hidden layers of ``width`` units, ReLU, dropout."""

    def __init__(self, in_features: int, num_outputs: int, depth: int = 2, width: int = 128, dropout: float = 0.0):
        super().__init__()
        layers: list[nn.Module] = []
        d = in_features
        for _ in range(depth):
            layers += [nn.Linear(d, width), nn.ReLU()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            d = width
        layers.append(nn.Linear(d, num_outputs))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def build_mlp(spec: dict, input_shape: tuple[int, ...], num_outputs: int) -> nn.Module:
    """The tabular MLP of config block ``model`` (``depth``, ``width``, ``dropout``)."""
    return MLP(input_shape[0], num_outputs, int(spec["depth"]), int(spec["width"]), float(spec["dropout"]))


def build_vision(spec: dict, input_shape: tuple[int, ...], num_outputs: int) -> nn.Module:
    from mia_audit.train.vision import build_vision_model

    return build_vision_model(spec, tuple(input_shape), num_outputs)


def build_ecg(spec: dict, input_shape: tuple[int, ...], num_outputs: int) -> nn.Module:
    from mia_audit.train.ecg import build_ecg_model

    return build_ecg_model(spec, tuple(input_shape), num_outputs)


ARTICLE = {"table": "a", "image": "an", "signal": "a"}
#: input modality → (dimensions of one record's input, what they are)
MODALITY_SHAPES = {
    "table": (1, "(features,)"),
    "image": (3, "(channels, height, width)"),
    "signal": (2, "(leads, samples)"),
}


@dataclass(frozen=True)
class Family:
    """A registered model family: the modality of the inputs it takes, and the function that builds
    one untrained model from the experiment's ``model`` block, the shape of one record's input and
    the number of outputs (``build(spec, input_shape, num_outputs)``)."""

    modality: str
    build: Callable[[dict, tuple[int, ...], int], nn.Module]


#: The model-family registry: config key ``experiments.<name>.model.arch`` → family. Adding one
#: touches its module, this entry and the schema (the arch enum and its cluster cost;
#: docs/extending.md).
FAMILIES: dict[str, Family] = {
    "mlp": Family("table", build_mlp),
    "wrn-28-2": Family("image", build_vision),
    "wrn-40-4": Family("image", build_vision),
    "wrn": Family("image", build_vision),
    "vit-b-16": Family("image", build_vision),
    "vit-l-16": Family("image", build_vision),
    "ecg-resnet1d": Family("signal", build_ecg),
    "ecg-xresnet1d": Family("signal", build_ecg),
}


def known_archs() -> list[str]:
    return list(FAMILIES)


def build_model(spec: dict, input_shape: tuple[int, ...], num_outputs: int) -> nn.Module:
    """Build one (untrained) model from an experiment's ``model`` config block (validated: the
    schema documents each family's keys and fills their defaults).

    ``input_shape`` is the shape of one record's input (without the batch dimension):
    (features,) for ``mlp``; (channels, height, width) for the image networks of
    :mod:`mia_audit.train.vision`; (leads, samples) for the ECG networks of
    :mod:`mia_audit.train.ecg`.
    """
    if "arch" not in spec:
        raise ValueError(f"config key model.arch is missing; known: {known_archs()}")
    arch = str(spec["arch"]).lower()
    if arch not in FAMILIES:
        raise ValueError(f"unknown model.arch {spec['arch']!r}; known: {known_archs()}")
    spec = complete({**spec, "arch": arch}, "model")
    family = FAMILIES[arch]
    dims, what = MODALITY_SHAPES[family.modality]
    if len(input_shape) != dims:
        raise ValueError(
            f"model.arch {arch!r} is {ARTICLE[family.modality]} {family.modality} network and takes inputs {what}; "
            f"the data set's inputs have shape {tuple(input_shape)} per record"
        )
    return family.build(spec, tuple(input_shape), num_outputs)
