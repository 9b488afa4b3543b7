"""Target model architectures and the registry that builds them from config."""

from __future__ import annotations

import torch
from torch import nn


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


# model.arch → family. The ECG names carry an ``ecg-`` prefix in the config so that they
# cannot be confused with image networks; the ECG module knows them without it.
ECG_ARCHS = {"ecg-resnet1d": "resnet1d", "ecg-xresnet1d": "xresnet1d"}


def known_archs() -> list[str]:
    from .vision import KNOWN_ARCHS

    return ["mlp", *KNOWN_ARCHS, *ECG_ARCHS]


def build_model(spec: dict, input_shape: tuple[int, ...], num_outputs: int) -> nn.Module:
    """Build one (untrained) model from an experiment's ``model`` config block.

    ``input_shape`` is the shape of one record's input (without the batch dimension):
    (features,) for ``mlp``; (channels, height, width) for the image networks of
    :mod:`mia_audit.vision` (``wrn-28-2``, ``wrn-40-4``, ``wrn`` with ``depth``/``widen``,
    ``vit-b-16``, ``vit-l-16``; optional ``norm``, ``groups``, ``dropout``, ``pretrained``
    = a local state-dict file); (leads, samples) for the ECG networks of
    :mod:`mia_audit.ecg` (``ecg-resnet1d``, ``ecg-xresnet1d``; optional ``base_width``,
    ``blocks``, ``norm``, ``dropout``).
    """
    if "arch" not in spec:
        raise ValueError(f"config key model.arch is missing; known: {known_archs()}")
    arch = str(spec["arch"]).lower()
    if arch == "mlp":
        if len(input_shape) != 1:
            raise ValueError(f"model.arch 'mlp' needs flat feature vectors, got input shape {input_shape}")
        return MLP(
            input_shape[0],
            num_outputs,
            int(spec.get("depth", 2)),
            int(spec.get("width", 128)),
            float(spec.get("dropout", 0.0)),
        )
    from .vision import KNOWN_ARCHS

    if arch in KNOWN_ARCHS:
        if len(input_shape) != 3:
            raise ValueError(
                f"model.arch {arch!r} is an image network; the data set's inputs have shape "
                f"{tuple(input_shape)} per record, not (channels, height, width)"
            )
        from .vision import build_vision_model

        return build_vision_model({**spec, "arch": arch}, tuple(input_shape), num_outputs)
    if arch in ECG_ARCHS:
        if len(input_shape) != 2:
            raise ValueError(
                f"model.arch {arch!r} is a signal network; the data set's inputs have shape "
                f"{tuple(input_shape)} per record, not (leads, samples)"
            )
        from .ecg import build_ecg_model

        return build_ecg_model({**spec, "arch": ECG_ARCHS[arch]}, tuple(input_shape), num_outputs)
    raise ValueError(f"unknown model.arch {spec['arch']!r}; known: {known_archs()}")
