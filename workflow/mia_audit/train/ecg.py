"""1-D residual network for 12-lead ECGs (100 Hz x 10 s, input (B, 12, 1000)).

In the style of the resnet1d / xresnet1d models of the PTB-XL benchmark (Strodthoff et
al. 2021): a three-convolution stem with stride 2 and max pooling, four stages of basic
residual blocks (kernel 5) of widths w, 2w, 4w, 8w with ResNet-D shortcuts (average
pooling then a 1x1 convolution when downsampling, He et al. 2019 "Bag of Tricks"), and a
concat-pooling head (global average and max pooling concatenated). GroupNorm is the
default normalisation so that ensembles train under ``torch.func.vmap`` and per-sample
gradients (differential privacy) work; BatchNorm is available for single models.

References
----------
Strodthoff, N., Wagner, P., Schaeffter, T. & Samek, W. (2021). Deep Learning for ECG
Analysis: Benchmarks and Insights from PTB-XL. IEEE JBHI 25(5), 1519-1528.
He, T. et al. (2019). Bag of Tricks for Image Classification with CNNs. CVPR.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from mia_audit.errors import ConfigError, DataError
from mia_audit.settings import complete

__all__ = ["ResNet1d", "ecg_resnet1d", "build_ecg_model"]


def _norm1d(kind: str, channels: int, groups: int = 16) -> nn.Module:
    if kind == "group":
        return nn.GroupNorm(math.gcd(groups, channels), channels)
    if kind == "batch":
        return nn.BatchNorm1d(channels)
    raise ValueError(f"norm={kind!r} is not supported; expected 'group' or 'batch'")


def _conv(c_in: int, c_out: int, k: int, stride: int = 1) -> nn.Conv1d:
    return nn.Conv1d(c_in, c_out, k, stride=stride, padding=k // 2, bias=False)


class _Block1d(nn.Module):
    """Basic block conv-norm-ReLU-conv-norm + shortcut, then ReLU (post-activation, as xresnet)."""

    def __init__(self, c_in: int, c_out: int, stride: int, norm: str, kernel: int = 5):
        super().__init__()
        self.conv1 = _conv(c_in, c_out, kernel, stride)
        self.norm1 = _norm1d(norm, c_out)
        self.conv2 = _conv(c_out, c_out, kernel)
        self.norm2 = _norm1d(norm, c_out)
        nn.init.zeros_(self.norm2.weight)  # residual branch starts at zero (xresnet habit)
        self.act = nn.ReLU(inplace=False)
        if stride != 1 or c_in != c_out:
            pool = nn.AvgPool1d(stride, stride, ceil_mode=True) if stride != 1 else nn.Identity()
            self.shortcut = nn.Sequential(pool, _conv(c_in, c_out, 1), _norm1d(norm, c_out))
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o = self.act(self.norm1(self.conv1(x)))
        o = self.norm2(self.conv2(o))
        return self.act(o + self.shortcut(x))


class ResNet1d(nn.Module):
    """xresnet1d-style network; output (B, num_outputs) logits for input (B, leads, T)."""

    def __init__(
        self,
        num_outputs: int,
        in_leads: int = 12,
        base_width: int = 64,
        blocks: tuple[int, ...] = (2, 2, 2, 2),
        norm: str = "group",
        kernel: int = 5,
        dropout: float = 0.0,
    ):
        super().__init__()
        if base_width < 1 or not blocks or any(int(b) < 1 for b in blocks):
            raise ConfigError(f"base_width={base_width}, blocks={blocks}: expected positive integers")
        stem_w = (32, 32, base_width)
        layers: list[nn.Module] = []
        c = in_leads
        for i, w in enumerate(stem_w):
            layers += [_conv(c, w, kernel, stride=2 if i == 0 else 1), _norm1d(norm, w), nn.ReLU()]
            c = w
        layers.append(nn.MaxPool1d(3, stride=2, padding=1))
        self.stem = nn.Sequential(*layers)
        stages = []
        for i, n in enumerate(blocks):
            w = base_width * 2**i
            stage = [_Block1d(c, w, 1 if i == 0 else 2, norm, kernel)]
            stage += [_Block1d(w, w, 1, norm, kernel) for _ in range(int(n) - 1)]
            stages.append(nn.Sequential(*stage))
            c = w
        self.stages = nn.Sequential(*stages)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.head = nn.Linear(2 * c, num_outputs)
        for m in self.modules():
            if isinstance(m, nn.Conv1d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(x))
        pooled = torch.cat([x.mean(dim=-1), x.amax(dim=-1)], dim=-1)  # concat pooling
        return self.head(self.dropout(pooled))


def ecg_resnet1d(
    num_outputs: int,
    in_leads: int = 12,
    base_width: int = 64,
    blocks: tuple[int, ...] = (2, 2, 2, 2),
    norm: str = "group",
) -> nn.Module:
    """1-D ResNet for ECGs (B, in_leads, T) → (B, num_outputs) logits; any T ≥ 32 works.

    Stem: 3 convs (kernel 5, the first with stride 2) + max pool (stride 2); stages of
    ``blocks`` basic blocks with widths base_width·2^i, stride 2 from the second stage on;
    concat pooling (mean ‖ max over time) and a linear head. Total time downsampling is
    4·2^(len(blocks)-1) (32 for four stages: 1000 samples → 32 positions).
    """
    return ResNet1d(num_outputs, in_leads, base_width, tuple(blocks), norm)


def build_ecg_model(spec: dict, input_shape: tuple, num_outputs: int) -> nn.Module:
    """Build an ECG model from a config ``spec`` for inputs of shape (leads, T).

    spec["arch"] in {"resnet1d", "xresnet1d"}; optional keys ``base_width``, ``blocks``,
    ``norm``, ``dropout``.
    """
    known = ("resnet1d", "xresnet1d")
    arch = str(spec["arch"]).lower().removeprefix("ecg-")
    if arch in known:  # the schema's defaults of the family (base_width, blocks, norm, dropout)
        spec = complete({**spec, "arch": f"ecg-{arch}"}, "model")
    if arch not in known:
        raise ConfigError(f"ECG model arch {spec.get('arch')!r} is unknown; expected one of {list(known)}")
    if len(input_shape) != 2:
        raise ValueError(f"ECG input_shape={tuple(input_shape)} must be (leads, samples)")
    leads, t = (int(s) for s in input_shape)
    if t < 32:
        raise DataError(f"ECG input_shape={tuple(input_shape)}: need at least 32 samples")
    return ResNet1d(
        num_outputs,
        in_leads=leads,
        base_width=int(spec["base_width"]),
        blocks=tuple(int(b) for b in spec["blocks"]),
        norm=spec["norm"],
        dropout=float(spec["dropout"]),
    )
