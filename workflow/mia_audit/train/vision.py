"""Image architectures for target models: wide residual networks and vision transformers.

Both families are built so that an ensemble of identically shaped models can be trained
at once with :mod:`torch.func` (``stack_module_state`` + ``vmap(functional_call)``). The
default normalisation of the WRN is GroupNorm, which keeps no running statistics and
normalises each image on its own, so it is compatible with ``vmap`` and with per-sample
gradients (Opacus / differential privacy). BatchNorm is available for single-model use.

References
----------
Zagoruyko, S. & Komodakis, N. (2016). Wide Residual Networks. BMVC. arXiv:1605.07146.
He, K. et al. (2016). Identity Mappings in Deep Residual Networks. ECCV (pre-activation).
Dosovitskiy, A. et al. (2021). An Image is Worth 16x16 Words. ICLR (ViT).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn
from torchvision.models import vision_transformer as tv_vit

from mia_audit.errors import ConfigError, DataError
from mia_audit.settings import complete

__all__ = [
    "WideResNet",
    "wide_resnet",
    "vit",
    "load_state_dict_file",
    "build_vision_model",
    "KNOWN_ARCHS",
]

WRN_PRESETS = {"wrn-28-2": (28, 2), "wrn-40-4": (40, 4)}
VIT_VARIANTS = {"vit-b-16": tv_vit.vit_b_16, "vit-l-16": tv_vit.vit_l_16}
KNOWN_ARCHS = ("wrn-28-2", "wrn-40-4", "wrn", "vit-b-16", "vit-l-16")


def _norm(kind: str, channels: int, groups: int) -> nn.Module:
    """Normalisation layer; GroupNorm uses gcd(groups, channels) groups so any width works."""
    if kind == "group":
        return nn.GroupNorm(math.gcd(groups, channels), channels)
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    raise ValueError(f"norm={kind!r} is not supported; expected 'group' or 'batch'")


class _PreActBlock(nn.Module):
    """Pre-activation basic block: norm-ReLU-conv3x3-norm-ReLU-(dropout)-conv3x3 + shortcut.

    When the shape changes (stride or width), the shortcut is a 1x1 convolution applied to
    the pre-activated input, as in the reference WRN implementation.
    """

    def __init__(self, c_in: int, c_out: int, stride: int, norm: str, groups: int, dropout: float):
        super().__init__()
        self.norm1 = _norm(norm, c_in, groups)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.norm2 = _norm(norm, c_out, groups)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, stride=1, padding=1, bias=False)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.act = nn.ReLU(inplace=False)
        self.shortcut = nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False) if (stride != 1 or c_in != c_out) else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o = self.act(self.norm1(x))
        residual = x if self.shortcut is None else self.shortcut(o)
        o = self.conv1(o)
        o = self.conv2(self.dropout(self.act(self.norm2(o))))
        return o + residual


class WideResNet(nn.Module):
    """CIFAR-style WRN-depth-widen; global average pooling makes it size-agnostic (≥ 32 px)."""

    def __init__(
        self,
        depth: int,
        widen: int,
        num_outputs: int,
        in_channels: int = 3,
        norm: str = "group",
        groups: int = 16,
        dropout: float = 0.0,
    ):
        super().__init__()
        if depth < 10 or (depth - 4) % 6 != 0:
            raise ConfigError(f"WRN depth={depth} is invalid; expected depth = 6n + 4 with n >= 1")
        if widen < 1:
            raise ConfigError(f"WRN widen={widen} is invalid; expected a positive integer")
        n = (depth - 4) // 6
        widths = [16, 16 * widen, 32 * widen, 64 * widen]
        self.depth, self.widen = depth, widen
        self.stem = nn.Conv2d(in_channels, widths[0], 3, stride=1, padding=1, bias=False)
        stages = []
        c_in = widths[0]
        for c_out, stride in zip(widths[1:], (1, 2, 2), strict=True):
            blocks = []
            for j in range(n):
                blocks.append(_PreActBlock(c_in, c_out, stride if j == 0 else 1, norm, groups, dropout))
                c_in = c_out
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.norm = _norm(norm, c_in, groups)
        self.act = nn.ReLU(inplace=False)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(c_in, num_outputs)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.GroupNorm, nn.BatchNorm2d)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(x))
        x = self.pool(self.act(self.norm(x)))
        return self.head(torch.flatten(x, 1))


def wide_resnet(
    depth: int,
    widen: int,
    num_outputs: int,
    in_channels: int = 3,
    norm: str = "group",
    groups: int = 16,
    dropout: float = 0.0,
) -> nn.Module:
    """Wide residual network WRN-``depth``-``widen`` (Zagoruyko & Komodakis 2016).

    depth = 6n + 4 (n pre-activation basic blocks in each of 3 stages of widths 16k, 32k,
    64k after a 16-channel stem; strides 1, 2, 2), then norm-ReLU, global average pooling
    and a linear head with ``num_outputs`` logits. ``norm="group"`` (default) uses
    GroupNorm with gcd(``groups``, channels) groups: vmap- and DP-compatible. ``"batch"``
    uses BatchNorm2d (single models only: running statistics cannot be updated under vmap).
    """
    return WideResNet(depth, widen, num_outputs, in_channels, norm, groups, dropout)


class _RepeatChannels(nn.Module):
    """Feeds grey-scale images (C=1) to a 3-channel model by repeating the channel."""

    def __init__(self, model: nn.Module, repeats: int = 3):
        super().__init__()
        self.model = model
        self.repeats = repeats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.expand(*x.shape[:-3], self.repeats, *x.shape[-2:]))


def load_state_dict_file(path: str | Path) -> OrderedDict[str, torch.Tensor]:
    """Read a local state dict without unpickling: ``.safetensors`` or ``.pt/.pth`` (weights_only).

    Raises :class:`~mia_audit.errors.DataError` naming the file and the config key ``model.pretrained``.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"pretrained weights file {str(path)!r} (config key model.pretrained) does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    elif path.suffix in (".pt", ".pth"):
        state = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
            state = state["model"]
    else:
        raise DataError(
            f"pretrained weights file {str(path)!r} (config key model.pretrained) has suffix "
            f"{path.suffix!r}; expected .safetensors, .pt or .pth"
        )
    if not isinstance(state, dict):
        raise DataError(f"pretrained weights file {str(path)!r} does not hold a state dict")
    return OrderedDict(state)


def vit(
    variant: str,
    image_size: int,
    num_outputs: int,
    in_channels: int = 3,
    weights_path: str | None = None,
) -> nn.Module:
    """torchvision ViT-B/16 or ViT-L/16 for ``image_size`` px inputs with ``num_outputs`` logits.

    Built with ``weights=None`` (nothing is downloaded). With ``weights_path`` a local state
    dict (e.g. ImageNet weights at 224 px) is loaded: the position embeddings are resized
    to the (image_size/16)² patch grid with
    :func:`torchvision.models.vision_transformer.interpolate_embeddings` (bicubic) and the
    old classification head is dropped (the new head keeps its fresh initialisation).
    ``in_channels=1`` repeats the grey channel three times in front of the model.

    variant: "vit-b-16" / "b16" or "vit-l-16" / "l16".
    """
    key = variant.lower().replace("_", "-")
    key = {"b16": "vit-b-16", "b-16": "vit-b-16", "l16": "vit-l-16", "l-16": "vit-l-16"}.get(key, key)
    if key not in VIT_VARIANTS:
        raise ConfigError(f"ViT variant {variant!r} is unknown; expected one of {sorted(VIT_VARIANTS)}")
    patch = 16
    if image_size < patch or image_size % patch != 0:
        raise ConfigError(f"ViT image_size={image_size} must be a positive multiple of {patch} (e.g. 64 or 128)")
    if in_channels not in (1, 3):
        raise ConfigError(f"ViT in_channels={in_channels} is not supported; expected 1 (grey) or 3")
    model = VIT_VARIANTS[key](weights=None, image_size=image_size)
    hidden = model.hidden_dim
    model.heads = nn.Sequential(OrderedDict(head=nn.Linear(hidden, num_outputs)))
    nn.init.zeros_(model.heads.head.weight)
    nn.init.zeros_(model.heads.head.bias)
    if weights_path is not None:
        state = load_state_dict_file(weights_path)
        state = OrderedDict((k, v) for k, v in state.items() if not k.startswith("heads."))
        state = tv_vit.interpolate_embeddings(image_size, patch, state)
        missing, unexpected = model.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.startswith("heads.")]
        if missing or unexpected:
            raise ValueError(
                f"pretrained weights file {str(weights_path)!r} (config key model.pretrained) does not "
                f"match {key}: missing keys {missing[:5]}, unexpected keys {list(unexpected)[:5]}"
            )
    if in_channels == 1:
        return _RepeatChannels(model, 3)
    return model


def build_vision_model(spec: dict, input_shape: tuple, num_outputs: int) -> nn.Module:
    """Build an image model from a config ``spec`` for inputs of shape (C, H, W).

    spec["arch"] in {"wrn-28-2", "wrn-40-4", "wrn" (needs ``depth`` and ``widen``),
    "vit-b-16", "vit-l-16"}. Optional keys: WRN ``norm``, ``groups``, ``dropout``;
    ViT ``pretrained`` (path of a local state dict).
    """
    if "arch" not in spec:
        raise ValueError(f"model spec {spec!r} has no 'arch' key; expected one of {list(KNOWN_ARCHS)}")
    arch = str(spec["arch"]).lower()
    if arch in KNOWN_ARCHS:  # the schema's defaults of the family (norm, groups, dropout)
        spec = complete({**spec, "arch": arch}, "model")
    if len(input_shape) != 3:
        raise ValueError(f"input_shape={tuple(input_shape)} must be (channels, height, width)")
    c, h, w = (int(s) for s in input_shape)
    if arch in WRN_PRESETS or arch == "wrn":
        if arch == "wrn":
            missing = [k for k in ("depth", "widen") if k not in spec]
            if missing:
                raise ValueError(f"model spec with arch 'wrn' lacks key(s) {missing}")
            depth, widen = int(spec["depth"]), int(spec["widen"])
        else:
            depth, widen = WRN_PRESETS[arch]
        return wide_resnet(
            depth,
            widen,
            num_outputs,
            in_channels=c,
            norm=spec["norm"],
            groups=int(spec["groups"]),
            dropout=float(spec["dropout"]),
        )
    if arch in VIT_VARIANTS:
        if h != w:
            raise ValueError(f"ViT needs square images; input_shape={tuple(input_shape)}")
        return vit(arch, h, num_outputs, in_channels=c, weights_path=spec.get("pretrained"))
    raise ValueError(f"model arch {spec['arch']!r} is unknown; expected one of {list(KNOWN_ARCHS)}")
