"""Your own PyTorch network as the audit's target model (``arch: torch``).

In the config::

    experiments:
      my_net:
        dataset: my_cohort
        model:
          arch: torch
          factory: docs/examples/my_network.py:make_network   # path relative to where snakemake runs
          kwargs: {width: 32}
        train: {epochs: 20, batch_size: 64, lr: 0.002, weight_decay: 0.01}

The workflow calls ``make_network(input_shape=..., num_outputs=..., **kwargs)`` once per target
model, with the shape of one record's input (``(features,)`` for a table, ``(channels, height,
width)`` for images, ``(leads, samples)`` for signals) and the number of classes (or labels);
the network returns logits of shape (batch, num_outputs). It is trained by the workflow's own
loop and ``train`` block, as a vectorised ensemble (torch.func.vmap) when the network allows it.
GroupNorm and LayerNorm keep no running statistics, so they work in ensembles and under DP-SGD;
BatchNorm does not.
"""

import math

from torch import nn


def make_network(input_shape, num_outputs: int, width: int = 32) -> nn.Module:
    """A two-layer network with layer normalisation for tables and signals; a small CNN for images."""
    if len(input_shape) == 3:  # images: (channels, height, width)
        return nn.Sequential(
            nn.Conv2d(input_shape[0], width, kernel_size=3, padding=1),
            nn.GroupNorm(4, width),
            nn.ReLU(),
            nn.Conv2d(width, width, kernel_size=3, stride=2, padding=1),
            nn.GroupNorm(4, width),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(width, num_outputs),
        )
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(math.prod(input_shape), width),
        nn.LayerNorm(width),
        nn.ReLU(),
        nn.Linear(width, width),
        nn.ReLU(),
        nn.Linear(width, num_outputs),
    )
