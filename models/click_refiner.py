"""Click refiner: corrects a mask from the user's positive and negative clicks.

The interactive-segmentation recipe of RITM (Sofiiuk et al., "Reviving Iterative Training
with Mask Guidance for Interactive Segmentation", 2022) on an encoder small enough for a CPU:

    image ─ stem conv ─(+)─ BN ─ EfficientNet-Lite0 blocks ─ F1..F5 (strides 2..32)
    [mask, pos, neg] ─ conv 3×3/2 ─┘
    F2..F5 ─ FPN (1×1 laterals, top-down sum, 3×3) ─ D2 (1/4) ─ ↑2 ⊕ F1 ─ head ─ logits (1/2) ─ ↑2
    logits + w·(2·mask − 1)   (w learned, starts at 3: the mask is kept until clicks say otherwise)

- [RITM] the previous mask and the click maps enter after the first convolution, through a
  convolution of their own added to the image stem's output ("Conv1S"), so the ImageNet
  encoder is unchanged at the start (that convolution starts at zero).
- [RITM] clicks are discs (``CLICK_RADIUS`` px at the input size), positive and negative in two
  maps; the third map is the current mask as a probability in [0, 1].
- [B] EfficientNet-Lite0, the ImageNet encoder with weights at hand offline; an FPN decoder of
  ``DECODER_WIDTH`` channels. Where a click changes the mask, and at what resolution, is
  decided outside the network (``napari_polyp.corrections.clicks``: the zoom-in crop).

The network's input is one tensor of ``IN_CHANNELS`` channels (normalised RGB, mask, positive
clicks, negative clicks), so it exports to ONNX like the segmentation networks.
"""
from __future__ import annotations

from typing import List

import torch
import torch.nn as nn

from . import _compat  # noqa: F401  (before timm: repairs torchvision on CPU torch)
from ._backbones import EFFICIENTNET_LITE0, create_backbone
from ._registry import register_model
from .blocks import ConvBNAct, resize_to, seg_output
from .cards import CLICK_REFINER

IN_CHANNELS = 6  # RGB (normalised per the card), current mask, positive discs, negative discs
MAP_CHANNELS = IN_CHANNELS - 3
CLICK_RADIUS = 5  # px at the network's input size (RITM: 5 px at 320-480)
DECODER_WIDTH = 64
MASK_WEIGHT_START = 3.0  # logit added for a pixel inside the current mask at the start (σ(3) = 0.95)


class ClickRefiner(nn.Module):
    in_channels = IN_CHANNELS  # what an ONNX export feeds it

    def __init__(self, encoder: nn.Module, width: int = DECODER_WIDTH):
        super().__init__()
        self.encoder = encoder
        stem = encoder.conv_stem.out_channels
        # zero start: the maps add nothing until training teaches them to
        self.map_stem = nn.Conv2d(MAP_CHANNELS, stem, 3, stride=2, padding=1, bias=False)
        nn.init.zeros_(self.map_stem.weight)
        info = encoder.feature_info
        self.feature_blocks = [int(name.split(".")[1]) for name in info.module_name()]  # blocks.i
        channels = info.channels()
        self.laterals = nn.ModuleList(nn.Conv2d(c, width, 1) for c in channels[1:])
        self.smooth = ConvBNAct(width, width, 3)
        self.head = nn.Sequential(ConvBNAct(width + channels[0], width // 2, 3),
                                  ConvBNAct(width // 2, width // 2, 3),
                                  nn.Conv2d(width // 2, 1, 1))
        # [B] the current mask, as ±1, added to the logits with a learned weight: the network
        # starts by keeping the mask and learns what the clicks change
        self.mask_weight = nn.Parameter(torch.tensor(MASK_WEIGHT_START))

    def encode(self, image: torch.Tensor, maps: torch.Tensor) -> List[torch.Tensor]:
        x = self.encoder.conv_stem(image) + self.map_stem(maps)
        x = self.encoder.bn1(x)
        feats = []
        for index, block in enumerate(self.encoder.blocks):
            x = block(x)
            if index in self.feature_blocks:
                feats.append(x)
        return feats

    def decode(self, feats: List[torch.Tensor]) -> torch.Tensor:
        """FPN top-down from 1/32 to 1/4, then a head on the 1/2 features: logits at 1/2."""
        y = None
        for lateral, feat in zip(reversed(self.laterals), reversed(feats[1:])):
            x = lateral(feat)
            y = x if y is None else x + resize_to(y, x.shape[-2:])
        y = resize_to(self.smooth(y), feats[0].shape[-2:])
        return self.head(torch.cat([y, feats[0]], dim=1))

    def forward(self, x: torch.Tensor) -> dict:
        image, maps = x[:, :3], x[:, 3:]
        logits = resize_to(self.decode(self.encode(image, maps)), x.shape[-2:])
        keep = self.mask_weight * (2 * maps[:, :1] - 1)
        return seg_output(logits + keep, {}, x.shape[-2:])


@register_model(CLICK_REFINER)
def click_refiner(pretrained_backbone: bool = False, backbone_weights=None,
                  variant: str = "efficientnet_lite0") -> nn.Module:
    if variant not in CLICK_REFINER.variants:
        raise ValueError(f"click-refiner variant must be one of {CLICK_REFINER.variants}, got {variant!r}")
    encoder = create_backbone(EFFICIENTNET_LITE0, pretrained_backbone, backbone_weights,
                              features_only=True, out_indices=(0, 1, 2, 3, 4))
    model = ClickRefiner(encoder)
    model.backbone_name = EFFICIENTNET_LITE0
    return model
