"""MicroAUNet (arXiv 2511.01143): a 25k-parameter polyp segmenter, and its distillation teachers.

Spec: docs/MODELS.md section 2. Tags: [P] paper, [C] the authors' official code
(github.com/JeremyXSC/MicroAUNet; its architecture is described in MODELS.md and
re-implemented here, not copied), [B] our choice.

Student layout [C] (c = widths, E(.) = GELU(maxpool2(GroupNorm(.)))):

    t1 = E(DSDConv 3->c0)                       H/2
    t2..t5 = E(DWD(c_{l-1}) + LDGA(c_{l-1}->c_l))  H/4 .. H/32
    t1..t5 <- LSCAB(t1..t5)                     (parameter-shared channel + spatial attention)
    bottleneck = GELU(DWD(c4) + LDGA(c4->c5))   on the *pre*-LSCAB t5, as the code does
    decoder:   GELU(up(GN(LDGA + DWD))) + t_l   (no up-sampling at the first stage)
    head:      Conv1x1 -> up x2

Deviations, all [B]:
- The code up-samples by a fixed factor 2, which only works for sides divisible by 32.
  Here each decoder stage up-samples to its skip's size and the head to the input size
  (identical to the code at multiples of 32), and inputs under 32 px are enlarged first.
- The LSCAB spatial conv reflect-pads by 3 [C]; reflect padding needs a map larger than
  3 px, so tiny maps (inputs under ~128 px) fall back to replicate padding.
- Training mode adds "features" = [t1..t5] *after* LSCAB (the code returns them before)
  and "decoder_features" = the last decoder map before the head (InfoNCE target).

Teachers (not registered as product models): :class:`MALUNet` (the teacher the paper's
code distils from; its blocks follow the MALUNet paper/code: DGA, IEA, SC_Att_Bridge) and
an EfficientNet-Lite0 U-Net, both via :func:`build_teacher`.
"""
from __future__ import annotations

import math
from typing import List, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import _compat  # noqa: F401  (before timm)
from ._backbones import EFFICIENTNET_LITE0, create_backbone
from ._registry import IMAGENET_MEAN, IMAGENET_STD, register_model
from .blocks import double_conv, resize_to, seg_output
from .cards import MICROAUNET

WIDTHS = {
    "paper": (4, 8, 12, 16, 24, 32),  # 24,881 params, the paper's 0.0249M [V]
    "repo": (8, 16, 24, 32, 48, 64),  # the code's default, 84,281 params [V]
    "wide": (16, 32, 48, 64, 96, 128),  # [B] twice the code's widths, for the accuracy target
}
MALUNET_WIDTHS = (8, 16, 24, 32, 48, 64)  # 177,943 params [V]
MIN_SIDE = 32  # five 2x max-pools need at least 32 px per side


# ----------------------------------------------------------------------------------------
# Student blocks [C]
# ----------------------------------------------------------------------------------------
class DSDConv(nn.Sequential):
    """Depthwise-separable dilated conv: dw3x3(d) -> BN -> ReLU -> pw1x1 -> BN -> ReLU, no biases."""

    def __init__(self, in_ch: int, out_ch: int, dilation: int = 1):
        super().__init__(
            nn.Conv2d(in_ch, in_ch, 3, padding=dilation, dilation=dilation, groups=in_ch, bias=False),
            nn.BatchNorm2d(in_ch),
            nn.ReLU(inplace=True),
            nn.Conv2d(in_ch, out_ch, 1, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
        )


class DWConv(nn.Sequential):
    """DWConv_k: depthwise kxk -> GroupNorm(4) -> pointwise (both convs with bias)."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int = 3):
        super().__init__(
            nn.Conv2d(in_ch, in_ch, kernel_size, padding=kernel_size // 2, groups=in_ch),
            nn.GroupNorm(4, in_ch),
            nn.Conv2d(in_ch, out_ch, 1),
        )


class DWD(nn.Module):
    """Two DSDConvs (dilation 2 then 1) with a residual: GELU(DSD1(GELU(DSD2(x))) + x)."""

    def __init__(self, channels: int):
        super().__init__()
        self.dilated = DSDConv(channels, channels, dilation=2)
        self.local = DSDConv(channels, channels, dilation=1)

    def forward(self, x):
        return F.gelu(self.local(F.gelu(self.dilated(x))) + x)


class LDGA(nn.Module):
    """Lightweight dilated gated attention: a 1-channel sigmoid gate between two DWConvs.

    u = DWConv3(x); u = u * sigmoid(Conv1x1_{C->1}(u)); out = DWConv1(u) + shortcut(x),
    where the shortcut is a DWConv1 projection when the width changes [C].
    """

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.features = DWConv(in_ch, in_ch, 3)
        self.gate = nn.Conv2d(in_ch, 1, 1, bias=False)
        self.project = DWConv(in_ch, out_ch, 1)
        self.shortcut = DWConv(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x):
        u = self.features(x)
        u = u * torch.sigmoid(self.gate(u))
        return self.project(u) + self.shortcut(x)


class SharedChannelAttention(nn.Module):
    """LSCAB channel path: one Conv1d(k3) and ONE FC(sum c -> sum c) shared by all levels [C].

    (MALUNet has a separate FC per level; sharing it is MicroAUNet's saving.)
    """

    def __init__(self, widths: Sequence[int]):
        super().__init__()
        self.widths = list(widths)
        total = sum(self.widths)
        self.mix = nn.Conv1d(1, 1, 3, padding=1, bias=False)
        self.fc = nn.Linear(total, total)

    def forward(self, skips: List[torch.Tensor]) -> List[torch.Tensor]:
        pooled = torch.cat([t.mean(dim=(2, 3)) for t in skips], dim=1)  # [B, sum c]
        att = torch.sigmoid(self.fc(self.mix(pooled.unsqueeze(1)).squeeze(1)))
        return [a[:, :, None, None] for a in att.split(self.widths, dim=1)]


class SharedSpatialAttention(nn.Module):
    """LSCAB spatial path: s_l = sigmoid(Conv7x7(reflect-pad [mean_c, max_c])), one conv for all levels."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, 7, bias=False)

    def forward(self, skips: List[torch.Tensor]) -> List[torch.Tensor]:
        return [self.one(t) for t in skips]

    def one(self, t: torch.Tensor) -> torch.Tensor:
        stats = torch.cat([t.mean(dim=1, keepdim=True), t.amax(dim=1, keepdim=True)], dim=1)
        # reflect padding needs more than 3 px per side; tiny maps replicate instead [B]
        mode = "reflect" if min(t.shape[-2:]) > 3 else "replicate"
        return torch.sigmoid(self.conv(F.pad(stats, (3, 3, 3, 3), mode=mode)))


class LSCAB(nn.Module):
    """Parameter-shared channel-spatial attention bridge over t1..t5 [C].

    t_l' = (alpha * a_l + beta * s_l) * t_l + t_l with scalar alpha, beta (init 0.5).
    Returns the refined skips and the spatial maps s_l (s_1 is the heatmap).
    """

    def __init__(self, widths: Sequence[int]):
        super().__init__()
        self.catt = SharedChannelAttention(widths)
        self.satt = SharedSpatialAttention()
        self.alpha = nn.Parameter(torch.tensor(0.5))
        self.beta = nn.Parameter(torch.tensor(0.5))

    def forward(self, skips: List[torch.Tensor]):
        channel = self.catt(skips)
        spatial = self.satt(skips)
        refined = [(self.alpha * a + self.beta * s) * t + t for t, a, s in zip(skips, channel, spatial)]
        return refined, spatial


# ----------------------------------------------------------------------------------------
# Shared skeleton of MicroAUNet and MALUNet (same U-shape, different blocks) [C]
# ----------------------------------------------------------------------------------------
def _up(x: torch.Tensor, size) -> torch.Tensor:
    # align_corners=True as in the code; to a size, not x2, so any input size works [B]
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=True)


def _enlarge_tiny(x: torch.Tensor) -> torch.Tensor:
    h, w = x.shape[-2:]
    if min(h, w) >= MIN_SIDE:
        return x
    return resize_to(x, (max(h, MIN_SIDE), max(w, MIN_SIDE)))


def _init_like_the_code(module: nn.Module) -> None:
    """He fan-out normal for convs, trunc-normal(0.02) for linears, as MALUNet/MicroAUNet do [C]."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Conv1d):
        module.weight.data.normal_(0, math.sqrt(2.0 / (module.kernel_size[0] * module.out_channels)))
    elif isinstance(module, nn.Conv2d):
        fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels // module.groups
        module.weight.data.normal_(0, math.sqrt(2.0 / fan_out))
        if module.bias is not None:
            nn.init.zeros_(module.bias)


class _UShape(nn.Module):
    """E(.)-encoder, bridge, bottleneck, GN decoder with additive skips, 1x1 head.

    Subclasses fill ``encoders`` (5 stages), ``bottleneck``, ``bridge``, ``decoders`` (5).
    """

    attention_name = "spatial"

    def __init__(self, widths: Sequence[int]):
        super().__init__()
        if len(widths) != 6 or any(c % 4 for c in widths):
            raise ValueError(f"widths must be 6 multiples of 4 (GroupNorm(4)), got {tuple(widths)}")
        self.widths = tuple(int(c) for c in widths)
        c = self.widths
        self.encoder_norms = nn.ModuleList(nn.GroupNorm(4, c[i]) for i in range(5))
        self.decoder_norms = nn.ModuleList(nn.GroupNorm(4, c[i]) for i in (4, 3, 2, 1, 0))
        self.head = nn.Conv2d(c[0], 1, 1)

    def _bridge(self, skips):
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> dict:
        input_hw = x.shape[-2:]
        x = _enlarge_tiny(x)
        skips = []
        out = x
        for encoder, norm in zip(self.encoders, self.encoder_norms):
            out = F.gelu(F.max_pool2d(norm(encoder(out)), 2, 2))
            skips.append(out)
        skips, spatial_maps = self._bridge(skips)
        out = F.gelu(self.bottleneck(out))  # `out` is t5 before the bridge, as in the code [C]
        stages = zip(self.decoders, self.decoder_norms, reversed(skips))
        for stage, (decoder, norm, skip) in enumerate(stages):
            out = norm(decoder(out))
            if stage > 0:
                out = _up(out, skip.shape[-2:])
            out = F.gelu(out) + skip
        logits = _up(self.head(out), x.shape[-2:])
        heat = resize_to(spatial_maps[0], input_hw).clamp(0.0, 1.0)
        extra = {}
        if self.training:
            extra = {"features": skips, "decoder_features": out}
        return seg_output(logits, {self.attention_name: heat}, input_hw, **extra)


class MicroAUNet(_UShape):
    """MicroAUNet student [C]; ``widths`` = c0..c5 (default: the paper's 24,881-param model)."""

    attention_name = "lscab_spatial"

    def __init__(self, widths: Sequence[int] = WIDTHS["paper"]):
        super().__init__(widths)
        c = self.widths
        self.encoders = nn.ModuleList(
            [DSDConv(3, c[0])] + [nn.Sequential(DWD(c[i]), LDGA(c[i], c[i + 1])) for i in range(4)]
        )
        self.lscab = LSCAB(c[:5])
        self.bottleneck = nn.Sequential(DWD(c[4]), LDGA(c[4], c[5]))
        self.decoders = nn.ModuleList(nn.Sequential(LDGA(c[i + 1], c[i]), DWD(c[i])) for i in (4, 3, 2, 1, 0))
        self.apply(_init_like_the_code)

    def _bridge(self, skips):
        return self.lscab(skips)


# ----------------------------------------------------------------------------------------
# Teacher 1: MALUNet (Ruan et al., BIBM 2022), the teacher of the paper's code
# ----------------------------------------------------------------------------------------
class GatedAttentionUnit(nn.Module):
    """MALUNet GAU: GELU(DWConv3(sigmoid(DWConv3 x) * GELU(DWConv5 x))) + Conv1x1(x)."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.gate = DWConv(in_ch, in_ch, 3)
        self.value = DWConv(in_ch, in_ch, 5)
        self.out = DWConv(in_ch, out_ch, 3)
        self.skip = nn.Conv2d(in_ch, out_ch, 1)

    def forward(self, x):
        mixed = torch.sigmoid(self.gate(x)) * F.gelu(self.value(x))
        return F.gelu(self.out(mixed)) + self.skip(x)


class DilatedGatedAttention(nn.Module):
    """MALUNet DGA: 4 channel groups through depthwise 3x3 with dilations 7/5/2/1, GN, 1x1, GELU, then GAU."""

    def __init__(self, in_ch: int, out_ch: int, dilations=(7, 5, 2, 1)):
        super().__init__()
        group = in_ch // 4
        self.branches = nn.ModuleList(
            nn.Conv2d(group, group, 3, padding=d, dilation=d, groups=group) for d in dilations
        )
        self.norm = nn.GroupNorm(4, in_ch)
        self.fuse = nn.Conv2d(in_ch, in_ch, 1)
        self.gau = GatedAttentionUnit(in_ch, out_ch)

    def forward(self, x):
        parts = [branch(part) for branch, part in zip(self.branches, x.chunk(4, dim=1))]
        return self.gau(F.gelu(self.fuse(self.norm(torch.cat(parts, dim=1)))))


class InvertedExternalAttention(nn.Module):
    """MALUNet IEA: external attention with 4C memory units (softmax over pixels, l1 over units)."""

    def __init__(self, channels: int, expansion: int = 4):
        super().__init__()
        units = channels * expansion
        self.proj_in = nn.Conv2d(channels, channels, 1)
        self.keys = nn.Conv1d(channels, units, 1, bias=False)
        self.values = nn.Conv1d(units, channels, 1, bias=False)
        self.proj_out = nn.Conv2d(channels, channels, 1, bias=False)
        self.norm = nn.GroupNorm(4, channels)

    def tie_init(self) -> None:
        # the values start as the transposed keys (separate parameters afterwards)
        with torch.no_grad():
            self.values.weight.copy_(self.keys.weight.permute(1, 0, 2))

    def forward(self, x):
        b, c, h, w = x.shape
        attn = self.keys(self.proj_in(x).flatten(2)).softmax(dim=-1)
        attn = attn / (attn.sum(dim=1, keepdim=True) + 1e-9)
        out = self.values(attn).view(b, c, h, w)
        return F.gelu(self.norm(self.proj_out(out)) + x)


class ChannelAttentionBridge(nn.Module):
    """MALUNet CAB: GAP of t1..t5 -> Conv1d(k3) -> one FC per level -> sigmoid."""

    def __init__(self, widths: Sequence[int]):
        super().__init__()
        total = sum(widths)
        self.mix = nn.Conv1d(1, 1, 3, padding=1, bias=False)
        self.fcs = nn.ModuleList(nn.Linear(total, c) for c in widths)

    def forward(self, skips):
        pooled = self.mix(torch.cat([t.mean(dim=(2, 3)) for t in skips], dim=1).unsqueeze(1)).squeeze(1)
        return [torch.sigmoid(fc(pooled))[:, :, None, None] for fc in self.fcs]


class SpatialAttentionBridge(nn.Module):
    """MALUNet SAB: one shared dilated (d=3) 7x7 conv on [mean_c, max_c] -> sigmoid."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, 7, padding=9, dilation=3)

    def forward(self, skips):
        return [
            torch.sigmoid(self.conv(torch.cat([t.mean(1, keepdim=True), t.amax(1, keepdim=True)], 1)))
            for t in skips
        ]


class SCAttentionBridge(nn.Module):
    """MALUNet SC_Att_Bridge: spatial then channel attention, each with a residual."""

    def __init__(self, widths: Sequence[int]):
        super().__init__()
        self.satt = SpatialAttentionBridge()
        self.catt = ChannelAttentionBridge(widths)

    def forward(self, skips):
        spatial = self.satt(skips)
        weighted = [s * t for s, t in zip(spatial, skips)]
        summed = [w + t for w, t in zip(weighted, skips)]
        channel = self.catt(summed)
        return [a * s + w for a, s, w in zip(channel, summed, weighted)], spatial


class MALUNet(_UShape):
    """MALUNet teacher; default widths (8,16,24,32,48,64) give 177,943 params, as MODELS.md [V]."""

    attention_name = "scab_spatial"

    def __init__(self, widths: Sequence[int] = MALUNET_WIDTHS):
        super().__init__(widths)
        c = self.widths
        def plain(i, o):
            return nn.Conv2d(i, o, 3, padding=1)

        def encoding(i, o):
            return nn.Sequential(InvertedExternalAttention(i), DilatedGatedAttention(i, o))

        def decoding(i, o):
            return nn.Sequential(DilatedGatedAttention(i, o), InvertedExternalAttention(o))

        self.encoders = nn.ModuleList(
            [plain(3, c[0]), plain(c[0], c[1]), plain(c[1], c[2])]
            + [encoding(c[2], c[3]), encoding(c[3], c[4])]
        )
        self.scab = SCAttentionBridge(c[:5])
        self.bottleneck = encoding(c[4], c[5])
        self.decoders = nn.ModuleList(
            [decoding(c[5], c[4]), decoding(c[4], c[3]), decoding(c[3], c[2])]
            + [plain(c[2], c[1]), plain(c[1], c[0])]
        )
        self.apply(_init_like_the_code)
        for module in self.modules():
            if isinstance(module, InvertedExternalAttention):
                module.tie_init()

    def _bridge(self, skips):
        return self.scab(skips)


# ----------------------------------------------------------------------------------------
# Teacher 2: EfficientNet-Lite0 U-Net [B]
# ----------------------------------------------------------------------------------------
class EfficientLiteUNet(nn.Module):
    """A small U-Net decoder over timm ``tf_efficientnet_lite0`` (strides 2..32) [B].

    Takes the student's min-max [0,1] input and standardises it with ImageNet mean/std
    itself, so the trainer feeds student and teacher the same tensor. "features" are the
    five encoder maps (same strides as the student's t1..t5); "decoder_features" is the
    stride-2 decoder map (same resolution as the student's). At sides that are not
    multiples of 32 timm's 'same' padding rounds the deep maps up where the student's
    max-pools round down: resize before comparing maps.
    """

    timm_name = EFFICIENTNET_LITE0

    def __init__(self, pretrained_backbone: bool = False, backbone_weights=None,
                 decoder_widths: Sequence[int] = (16, 24, 40, 64)):
        super().__init__()
        self.encoder = create_backbone(
            self.timm_name, pretrained_backbone, backbone_weights, features_only=True
        )
        enc = self.encoder.feature_info.channels()  # [16, 24, 40, 112, 320]
        self.decoders = nn.ModuleList()
        deeper = enc[4]
        for level in (3, 2, 1, 0):
            self.decoders.append(double_conv(deeper + enc[level], decoder_widths[level]))
            deeper = decoder_widths[level]
        self.head = nn.Conv2d(decoder_widths[0], 1, 1)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> dict:
        input_hw = x.shape[-2:]
        x = _enlarge_tiny(x)
        feats = self.encoder((x - self.mean) / self.std)
        out = feats[4]
        for decoder, skip in zip(self.decoders, reversed(feats[:4])):
            out = decoder(torch.cat([resize_to(out, skip.shape[-2:]), skip], dim=1))
        logits = self.head(out)
        extra = {"features": list(feats), "decoder_features": out} if self.training else {}
        return seg_output(logits, {}, input_hw, **extra)


def build_teacher(kind: str = "malunet", pretrained_backbone: bool = False, backbone_weights=None,
                  **kwargs) -> nn.Module:
    """A distillation teacher for MicroAUNet: ``"malunet"`` [C] or ``"efficientnet_lite0"`` [B].

    Both take the student's (min-max) input and, in training mode, return "features"
    (5 skip maps at strides 2..32) and "decoder_features" (stride 2) next to "logits".
    The pretrained flags only concern the EfficientNet encoder (MALUNet has none).
    """
    if kind == "malunet":
        return MALUNet(**kwargs)
    if kind == "efficientnet_lite0":
        return EfficientLiteUNet(pretrained_backbone, backbone_weights, **kwargs)
    raise ValueError(f"unknown teacher {kind!r}; use 'malunet' or 'efficientnet_lite0'")


# ----------------------------------------------------------------------------------------
@register_model(MICROAUNET)
def microaunet(pretrained_backbone: bool = False, backbone_weights=None, variant: str = "paper",
               widths: Optional[Sequence[int]] = None) -> nn.Module:
    """MicroAUNet; ``variant`` "paper" | "repo", or explicit ``widths`` (6 multiples of 4)."""
    del pretrained_backbone, backbone_weights  # no backbone: trained from scratch [C]
    if widths is None:
        if variant not in WIDTHS:
            raise ValueError(f"unknown MicroAUNet variant {variant!r}; use one of {sorted(WIDTHS)}")
        widths = WIDTHS[variant]
    return MicroAUNet(widths)
