"""PEFNet / MPE-ConvNeXt: Multi Kernel Positional Embedding ConvNeXt (RIVF 2022).

Spec: docs/MODELS.md section 3. Tags: [P] paper, [C] official Keras code, [B] our choice.

    image ─ ConvNeXt ─ F1..F4 (strides 4..32)
    y = F4;  for s = 3..1:  y = MPE(MKCNN(Up(y) + F_s))
    y = MPE(Up(y) → c1/2)  (stride 2);  logits = Conv1×1(y), upsampled ×2 to the input

- [P] ConvNeXt-T/S/B backbone (Base best); MPE = positional embedding on a multi-kernel conv block;
  encoder and decoder features are added ("y_enc + y_dec").
- [B] Variant ``efficientnet_lite0`` swaps in an ImageNet EfficientNet-Lite0 encoder (not in the
  paper: the one pretrained CNN at hand offline, trainable on a CPU).
- [C] MKCNN = Σ_{k∈1,3,5} SiLU(BN(Conv k×k)); Up = ConvTranspose(4×4, /2) → BN → SiLU; 1×1 head at H/2.
- [B] The code's learned (1,h,w,c) position tensor fixes the input size; here it is a fixed 2-D
  sinusoidal embedding (half the channels encode y, half x, base 10000, integer feature-grid
  positions as the paper's "position index"), so any input size works and it has no parameters.
- [B] ImageNet mean/std (what the timm weights expect) instead of the paper's [-1,1] scaling.
- [B] There is no attention module; the map shown is the channel L2 norm of the last MPE output,
  min-max scaled per image ("mpe_energy").
"""
from __future__ import annotations

from typing import Dict, Tuple

import torch
import torch.nn as nn

from . import _compat  # noqa: F401  (before timm: repairs torchvision on CPU torch)
from ._backbones import EFFICIENTNET_LITE0, create_backbone
from ._registry import register_model
from .blocks import ConvBNAct, minmax01, resize_to, seg_output
from .cards import PEFNET

VARIANTS = PEFNET.variants  # ("tiny", "small", "base", "efficientnet_lite0")
PRETRAINED_TAG = "fb_in22k_ft_in1k"  # [C] ImageNet-22k pretrain, 1k fine-tune
# variant -> (timm encoder, its out_indices at strides 4, 8, 16, 32)
ENCODERS = {size: (f"convnext_{size}.{PRETRAINED_TAG}", (0, 1, 2, 3)) for size in ("tiny", "small", "base")}
# [B] not in the paper: an ImageNet EfficientNet-Lite0 encoder (24/40/112/320 channels), the one
# pretrained CNN with weights offline here, so the MPE decoder can be trained on a CPU
ENCODERS["efficientnet_lite0"] = (EFFICIENTNET_LITE0, (1, 2, 3, 4))


class MultiKernelConv(nn.Module):
    """[C] MKCNN: parallel 1×1, 3×3, 5×5 Conv→BN→SiLU branches, summed; channel count kept."""

    def __init__(self, channels: int, kernel_sizes: Tuple[int, ...] = (1, 3, 5)):
        super().__init__()
        self.branches = nn.ModuleList(ConvBNAct(channels, channels, k, act=nn.SiLU) for k in kernel_sizes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return sum(branch(x) for branch in self.branches)


def sinusoidal_position_embedding_2d(h: int, w: int, channels: int, base: float = 10000.0,
                                     device=None, dtype=torch.float32) -> torch.Tensor:
    """[B] A fixed [1,C,H,W] embedding: the first C//2 channels encode the row, the rest the column.

    Within an axis with d channels, channel pairs use frequency 1/base^(2i/d): sin in the first
    half, cos in the second (d odd: the last cos is dropped).
    """
    def axis(n: int, d: int) -> torch.Tensor:  # [d, n]
        n_freq = (d + 1) // 2
        freq = base ** (-2.0 * torch.arange(n_freq, device=device, dtype=torch.float32) / d)
        angle = freq[:, None] * torch.arange(n, device=device, dtype=torch.float32)[None, :]
        return torch.cat([angle.sin(), angle.cos()], dim=0)[:d]

    c_y = channels // 2
    pe_y = axis(h, c_y)[:, :, None].expand(c_y, h, w)
    pe_x = axis(w, channels - c_y)[:, None, :].expand(channels - c_y, h, w)
    return torch.cat([pe_y, pe_x], dim=0).unsqueeze(0).to(dtype)


class SinusoidalPositionEmbedding2d(nn.Module):
    """Adds the 2-D sinusoidal embedding; one tensor is cached per (h, w, c, device, dtype)."""

    max_cached = 16

    def __init__(self, base: float = 10000.0):
        super().__init__()
        self.base = base
        self._cache: Dict[tuple, torch.Tensor] = {}

    def embedding(self, x: torch.Tensor) -> torch.Tensor:
        _, c, h, w = x.shape
        key = (h, w, c, x.device, x.dtype)
        pe = self._cache.get(key)
        if pe is None:
            if len(self._cache) >= self.max_cached:
                self._cache.clear()
            pe = sinusoidal_position_embedding_2d(h, w, c, self.base, x.device, x.dtype)
            self._cache[key] = pe
        return pe

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.embedding(x)


class MPE(nn.Module):
    """[P] Multi Kernel Positional Embedding block: PE(MKCNN(x))."""

    def __init__(self, channels: int):
        super().__init__()
        self.mkcnn = MultiKernelConv(channels)
        self.pos_embed = SinusoidalPositionEmbedding2d()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pos_embed(self.mkcnn(x))


def up_block(in_ch: int, out_ch: int) -> nn.Sequential:
    """[C] ×2 upsampling: ConvTranspose 4×4 stride 2 → BN → SiLU."""
    return nn.Sequential(
        nn.ConvTranspose2d(in_ch, out_ch, 4, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.SiLU(),
    )


class DecoderStage(nn.Module):
    """[C] y = MPE(MKCNN(Up(y) + F_s))."""

    def __init__(self, in_ch: int, skip_ch: int):
        super().__init__()
        self.up = up_block(in_ch, skip_ch)
        self.mkcnn = MultiKernelConv(skip_ch)
        self.mpe = MPE(skip_ch)

    def forward(self, y: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        y = resize_to(self.up(y), skip.shape[-2:])  # odd input sizes: /32 ×2 can miss /16 by a pixel
        return self.mpe(self.mkcnn(y + skip))


class PEFNet(nn.Module):
    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone
        channels = backbone.feature_info.channels()  # strides 4, 8, 16, 32
        self.stages = nn.ModuleList(
            DecoderStage(channels[s + 1], channels[s]) for s in reversed(range(len(channels) - 1))
        )
        half = channels[0] // 2
        self.final_up = up_block(channels[0], half)
        self.final_mpe = MPE(half)
        self.head = nn.Conv2d(half, 1, 1)

    def forward(self, x: torch.Tensor) -> dict:
        feats = self.backbone(x)
        y = feats[-1]
        for stage, skip in zip(self.stages, reversed(feats[:-1])):
            y = stage(y, skip)
        y = self.final_mpe(self.final_up(y))  # stride 2
        energy = minmax01(y.detach().norm(dim=1, keepdim=True))
        return seg_output(self.head(y), {"mpe_energy": energy}, x.shape[-2:])


@register_model(PEFNET)
def pefnet(pretrained_backbone: bool = False, backbone_weights=None, variant: str = "base") -> nn.Module:
    if variant not in VARIANTS:
        raise ValueError(f"pefnet variant must be one of {VARIANTS}, got {variant!r}")
    timm_name, out_indices = ENCODERS[variant]
    encoder = create_backbone(timm_name, pretrained_backbone, backbone_weights,
                              features_only=True, out_indices=out_indices)
    model = PEFNet(encoder)
    model.backbone_name = timm_name  # the card's "backbone" for this variant
    return model
