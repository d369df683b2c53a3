"""Building blocks shared by more than one network (written once, used everywhere)."""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F


class ConvBNAct(nn.Sequential):
    """Conv2d → BatchNorm → activation, 'same' padding for odd kernels."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int = 3, stride: int = 1,
                 dilation: int = 1, groups: int = 1, act: type = nn.ReLU):
        padding = dilation * (kernel_size - 1) // 2
        super().__init__(
            nn.Conv2d(in_ch, out_ch, kernel_size, stride, padding, dilation, groups, bias=False),
            nn.BatchNorm2d(out_ch),
            act() if act is not None else nn.Identity(),
        )


class LowRankAdapter(nn.Module):
    """LoRA (Hu et al., 2021) beside a frozen ``nn.Linear``: y = W·x + b + B·(A·x).

    ``up`` (B) starts at zero, so an adapted network starts exactly as the frozen one and
    a checkpoint saved before adapters existed is the adapted network at its start.
    The adapter works through a forward hook on the frozen layer (:meth:`attach`), so the
    frozen weights are neither copied nor touched and keep their sha256.
    """

    def __init__(self, linear: nn.Linear, rank: int):
        super().__init__()
        if rank < 1:
            raise ValueError(f"adapter rank must be at least 1, got {rank}")
        self.down = nn.Linear(linear.in_features, rank, bias=False)
        self.up = nn.Linear(rank, linear.out_features, bias=False)
        nn.init.kaiming_uniform_(self.down.weight, a=math.sqrt(5))
        nn.init.zeros_(self.up.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.down(x))

    def attach(self, linear: nn.Linear):
        """Add this adapter's output to ``linear``'s (hooks registered later see the sum)."""
        return linear.register_forward_hook(lambda module, args, output: output + self(args[0]))


def double_conv(in_ch: int, out_ch: int, act: type = nn.ReLU) -> nn.Sequential:
    """2 × (Conv3×3 → BN → act), the U-Net / LDNet decoder block."""
    return nn.Sequential(ConvBNAct(in_ch, out_ch, 3, act=act), ConvBNAct(out_ch, out_ch, 3, act=act))


def resize_to(x: torch.Tensor, size: Sequence[int], mode: str = "bilinear") -> torch.Tensor:
    """Resize the last two dims to ``size``; a no-op when they already match."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    if mode == "nearest":
        return F.interpolate(x, size=tuple(size), mode="nearest")
    return F.interpolate(x, size=tuple(size), mode=mode, align_corners=False)


def minmax01(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Scale each sample's map to [0, 1] (a constant map becomes 0)."""
    flat = x.flatten(1)
    lo = flat.min(dim=1).values.view(-1, *([1] * (x.dim() - 1)))
    hi = flat.max(dim=1).values.view(-1, *([1] * (x.dim() - 1)))
    return ((x - lo) / (hi - lo).clamp_min(eps)).clamp(0.0, 1.0)


def seg_output(logits: torch.Tensor, attention: dict, input_hw: Sequence[int], **extra) -> dict:
    """The output dict every network returns, with logits at the input size."""
    out = {"logits": resize_to(logits, input_hw), "attention": attention}
    out.update(extra)
    return out
