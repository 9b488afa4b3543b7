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


def build_model(spec: dict, input_shape: tuple[int, ...], num_outputs: int) -> nn.Module:
    """Build one (untrained) model from an experiment's ``model`` config block.

    ``input_shape`` is the shape of one record's input (without the batch dimension).
    """
    arch = spec["arch"]
    if arch == "mlp":
        if len(input_shape) != 1:
            raise ValueError(f"model.arch 'mlp' needs flat feature vectors, got input shape {input_shape}")
        return MLP(input_shape[0], num_outputs, spec.get("depth", 2), spec.get("width", 128), spec.get("dropout", 0.0))
    raise ValueError(f"unknown model.arch {arch!r}; known: ['mlp']")
