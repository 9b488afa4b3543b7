"""The tabular multi-layer perceptron (model family ``mlp``)."""

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


def build_mlp(spec: dict, input_shape: tuple[int, ...], num_outputs: int) -> nn.Module:
    """The tabular MLP of config block ``model`` (``depth``, ``width``, ``dropout``)."""
    return MLP(input_shape[0], num_outputs, int(spec["depth"]), int(spec["width"]), float(spec["dropout"]))
