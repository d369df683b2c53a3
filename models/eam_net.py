"""EAM-Net (arXiv 2512.07275): attention-guided multi-scale network for skin lesions.

Spec: docs/MODELS.md section 5. No public code exists, so most of the layout is
[B] (our choice); [P] marks what the paper states.

[P] a 4-stage encoder of residual blocks each followed by MRCF; an External Attention
Bridge (EAB) on each skip; CMAM where features fuse; multi-scale supervision.

Layout [B], widths 32/64/128/192 and a 256 bottleneck (resolutions for a 256 input):

    stem Conv3x3-BN-ReLU (3->32)
    encoder l=1..4: ResBlock -> MRCF -> skip_l -> maxpool          256, 128, 64, 32
    bottleneck:     ResBlock(192->256) -> MRCF -> CMAM             16
    decoder l=4..1: up to skip size -> Conv1x1 -> concat EAB(skip_l) -> ResBlock(2C->C),
                    CMAM after the /8 stage (so CMAM sits at /16 and /8)
    side heads:     Conv1x1 on the bottleneck and every decoder stage (5 logits)
    fused head:     Conv1x1 over the 5 side logits brought to full size (HED-style) -> "logits"

Size: 4,199,127 params, 25.0 GFLOPs at 256 (paper: 4.6M, 16.85G; -8.7% params). Max-pools
round up (ceil_mode) and decoder stages resize to their skip, so any input size works.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ._registry import register_model
from .blocks import ConvBNAct, minmax01, resize_to, seg_output
from .cards import EAM_NET

WIDTHS = (32, 64, 128, 192)
BOTTLENECK = 256
MEMORY_UNITS = 64  # EAB S [B]
KV_POOL = 16  # CMAM pools keys/values to at most 16x16 [B]


class ResBlock(nn.Module):
    """Basic residual block: 2 x Conv3x3-BN (+ a 1x1-BN projection when the width changes) -> ReLU."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.body = nn.Sequential(ConvBNAct(in_ch, out_ch, 3), ConvBNAct(out_ch, out_ch, 3, act=None))
        self.shortcut = ConvBNAct(in_ch, out_ch, 1, act=None) if in_ch != out_ch else nn.Identity()

    def forward(self, x):
        return F.relu(self.body(x) + self.shortcut(x))


class MRCF(nn.Module):
    """Multi-resolution multi-channel fusion.

    [P] 4 channel groups: one kept as is, three through 3x3 convs with dilation 3/5/7;
    concatenate; 1x1 fusion. [B] the dilated convs are depthwise (GhostNet-style cheap
    operations) with BN-ReLU, the fusion is 1x1-BN, and a residual keeps the input.
    """

    def __init__(self, channels: int, dilations: Sequence[int] = (3, 5, 7)):
        super().__init__()
        if channels % 4:
            raise ValueError(f"MRCF needs a width divisible by 4, got {channels}")
        group = channels // 4
        self.branches = nn.ModuleList(ConvBNAct(group, group, 3, dilation=d, groups=group) for d in dilations)
        self.fuse = ConvBNAct(channels, channels, 1, act=None)

    def forward(self, x):
        kept, *rest = x.chunk(4, dim=1)
        mixed = torch.cat([kept] + [branch(part) for branch, part in zip(self.branches, rest)], dim=1)
        return F.relu(x + self.fuse(mixed))


class CMAM(nn.Module):
    """Cross-mix attention module.

    [B] X_c = CBAM channel attention (r = 8) of X, X_s = CBAM spatial attention (7x7) of X,
    both computed from X in parallel.
    [P] SA = softmax(Q_s K_c^T / sqrt d) V_c;  CA = softmax(Q_c K_s^T / sqrt d) V_s; SA + CA.
    [B] out = X + W_o(SA + CA), d = C/4, one head; K and V come from maps average-pooled to
    at most 16x16 so the cost stays linear in the number of query pixels.
    """

    def __init__(self, channels: int, reduction: int = 8, kv_pool: int = KV_POOL):
        super().__init__()
        self.dim = channels // 4
        self.kv_pool = kv_pool
        hidden = max(channels // reduction, 1)
        self.channel_mlp = nn.Sequential(
            nn.Conv2d(channels, hidden, 1, bias=False),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1, bias=False),
        )
        self.spatial_conv = nn.Conv2d(2, 1, 7, padding=3, bias=False)
        self.q_spatial = nn.Conv2d(channels, self.dim, 1, bias=False)
        self.kv_spatial = nn.Conv2d(channels, 2 * self.dim, 1, bias=False)
        self.q_channel = nn.Conv2d(channels, self.dim, 1, bias=False)
        self.kv_channel = nn.Conv2d(channels, 2 * self.dim, 1, bias=False)
        self.out = ConvBNAct(self.dim, channels, 1, act=None)
        self.last_spatial_map = None  # sigma(Conv7x7) of the last call, detached, for the heatmap

    def channel_attention(self, x):
        avg = self.channel_mlp(x.mean(dim=(2, 3), keepdim=True))
        peak = self.channel_mlp(x.amax(dim=(2, 3), keepdim=True))
        return x * torch.sigmoid(avg + peak)

    def spatial_map(self, x):
        stats = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return torch.sigmoid(self.spatial_conv(stats))

    def _tokens(self, q_proj: nn.Conv2d, kv_proj: nn.Conv2d, x: torch.Tensor):
        """Queries at full size; keys/values from the map pooled to <= 16x16 (pooling first is
        exact for a bias-free 1x1 projection and saves its full-size cost)."""
        # int(): a plain size, so an ONNX export (fixed input size) sees a constant pooling size
        pooled = F.adaptive_avg_pool2d(x, (min(int(x.shape[-2]), self.kv_pool), min(int(x.shape[-1]), self.kv_pool)))
        k, v = kv_proj(pooled).flatten(2).transpose(1, 2).chunk(2, dim=-1)
        return q_proj(x).flatten(2).transpose(1, 2), k, v

    def forward(self, x):
        b, c, h, w = x.shape
        s_map = self.spatial_map(x)
        self.last_spatial_map = s_map.detach()
        q_s, k_s, v_s = self._tokens(self.q_spatial, self.kv_spatial, x * s_map)
        q_c, k_c, v_c = self._tokens(self.q_channel, self.kv_channel, self.channel_attention(x))
        mixed = F.scaled_dot_product_attention(q_s, k_c, v_c) + F.scaled_dot_product_attention(q_c, k_s, v_s)
        mixed = mixed.transpose(1, 2).reshape(b, self.dim, h, w)
        return x + self.out(mixed)


class EAB(nn.Module):
    """External attention bridge on a skip connection.

    [P] input-independent memory units M_k, M_v, then top-k channel selection by l1 norm.
    [B] F = Conv1x1(s) (a query projection, as in external attention / MALUNet's IEA);
    A = F M_k^T with S = 64 units; softmax over pixels, then l1-normalise over S;
    F_hat = A M_v; keep the top C/2 channels by mean |F_hat| (per image);
    output = s + BN(F_hat * mask).
    """

    def __init__(self, channels: int, units: int = MEMORY_UNITS):
        super().__init__()
        self.keep = channels // 2
        self.query = nn.Conv2d(channels, channels, 1)
        self.memory_keys = nn.Parameter(torch.randn(units, channels) / math.sqrt(channels))
        self.memory_values = nn.Parameter(torch.randn(units, channels) / math.sqrt(units))
        self.norm = nn.BatchNorm2d(channels)
        self.last_max_affinity = None  # max_S A [B, 1, H, W] of the last call, detached, for the heatmap

    def read_memory(self, s: torch.Tensor):
        """A [B,N,S] and F_hat [B,N,C] for the skip ``s`` [B,C,H,W]."""
        feats = self.query(s).flatten(2).transpose(1, 2)  # [B, N, C]
        affinity = (feats @ self.memory_keys.t()).softmax(dim=1)  # over pixels
        affinity = affinity / (affinity.sum(dim=2, keepdim=True) + 1e-9)  # l1 over the S units
        return affinity, affinity @ self.memory_values

    def channel_mask(self, read: torch.Tensor) -> torch.Tensor:
        """[B,C] 0/1 mask of the C/2 channels of F_hat with the largest mean |F_hat|."""
        score = read.abs().mean(dim=1)
        top = score.topk(self.keep, dim=1).indices
        return torch.zeros_like(score).scatter_(1, top, 1.0)

    def forward(self, s):
        b, c, h, w = s.shape
        affinity, read = self.read_memory(s)
        self.last_max_affinity = affinity.detach().amax(dim=2).view(b, 1, h, w)
        selected = read * self.channel_mask(read).unsqueeze(1)
        return s + self.norm(selected.transpose(1, 2).reshape(b, c, h, w))


class EncoderStage(nn.Sequential):
    def __init__(self, in_ch: int, out_ch: int):
        super().__init__(ResBlock(in_ch, out_ch), MRCF(out_ch))


class DecoderStage(nn.Module):
    """up to the skip's size -> Conv1x1 -> concat EAB(skip) -> ResBlock(2C -> C)."""

    def __init__(self, deeper_ch: int, skip_ch: int):
        super().__init__()
        self.reduce = ConvBNAct(deeper_ch, skip_ch, 1)
        self.bridge = EAB(skip_ch)
        self.fuse = ResBlock(2 * skip_ch, skip_ch)

    def forward(self, deeper, skip):
        up = self.reduce(resize_to(deeper, skip.shape[-2:]))
        return self.fuse(torch.cat([up, self.bridge(skip)], dim=1))


class EAMNet(nn.Module):
    def __init__(self, widths: Sequence[int] = WIDTHS, bottleneck: int = BOTTLENECK):
        super().__init__()
        widths = tuple(widths)
        self.stem = ConvBNAct(3, widths[0], 3)
        ins = (widths[0],) + widths[:-1]
        self.encoders = nn.ModuleList(EncoderStage(i, o) for i, o in zip(ins, widths))
        self.bottleneck = nn.Sequential(EncoderStage(widths[-1], bottleneck), CMAM(bottleneck))
        deeper = (bottleneck,) + widths[:0:-1]  # 256, 192, 128, 64
        self.decoders = nn.ModuleList(DecoderStage(d, s) for d, s in zip(deeper, widths[::-1]))
        self.cmam_high = CMAM(widths[-1])  # after the /8 decoder stage
        self.side_heads = nn.ModuleList(nn.Conv2d(c, 1, 1) for c in (bottleneck,) + widths[::-1])
        self.fused_head = nn.Conv2d(len(self.side_heads), 1, 1)

    def forward(self, x: torch.Tensor) -> dict:
        input_hw = x.shape[-2:]
        out = self.stem(x)
        skips = []
        for stage, encoder in enumerate(self.encoders):
            if stage > 0:
                out = F.max_pool2d(out, 2, ceil_mode=True)  # ceil: any size keeps >= 1 px
            out = encoder(out)
            skips.append(out)
        out = self.bottleneck(F.max_pool2d(out, 2, ceil_mode=True))
        levels = [out]
        for stage, (decoder, skip) in enumerate(zip(self.decoders, reversed(skips))):
            out = decoder(out, skip)
            if stage == 0:
                out = self.cmam_high(out)
            levels.append(out)
        sides = [head(level) for head, level in zip(self.side_heads, levels)]
        full = skips[0].shape[-2:]
        logits = self.fused_head(torch.cat([resize_to(s, full) for s in sides], dim=1))
        eab_max = minmax01(self.decoders[-1].bridge.last_max_affinity)
        attention = {
            "cmam_spatial": resize_to(self.cmam_high.last_spatial_map, input_hw).clamp(0.0, 1.0),
            "eab_max": resize_to(eab_max, input_hw).clamp(0.0, 1.0),
        }
        extra = {"aux_logits": sides} if self.training else {}
        return seg_output(logits, attention, input_hw, **extra)


@register_model(EAM_NET)
def eam_net(pretrained_backbone: bool = False, backbone_weights=None, variant: str = "default") -> nn.Module:
    del pretrained_backbone, backbone_weights  # trained from scratch [B]
    if variant != "default":
        raise ValueError(f"unknown EAM-Net variant {variant!r}; use 'default'")
    return EAMNet()
