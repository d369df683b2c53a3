"""EA-DK: Encoder Attention + Dynamic Kernel update for polyp segmentation (arXiv 2509.23502).

Spec: docs/MODELS.md section 1. Tags: [P] paper, [C] official code (none public;
the layout follows LDNet), [B] our choice.

    image ─ Res2Net-50 ─ E1..E5 ─┬─ EncoderAttention ─ G ─ MLP ─ K0 (a 1×1 kernel)
                                 └─ UCA (1×1 → 32 ch) ─ U1..U5 ─ LDNet decoder ─ D5..D1
    P5 = <K0, D5>;  for s = 4..1: K = GatedKernelUpdate(K, D_s, P_{s+1});  P_s = <K', D_s>

- [P] Res2Net-50 backbone, all 5 stages; EA self-attention over the stages gives a global vector G;
  an MLP on G initialises the dynamic kernel; UCA maps every stage to 32 channels; 4 gated,
  element-wise kernel updates; BCE + Dice loss.
- [B] timm ``res2net50d`` (deep stem, closest to the v1b used by PraNet/LDNet); ``res2net50_26w_4s``
  is the plain variant. One token per stage (Linear(GAP) + stage embedding), one pre-norm
  transformer layer (8 heads, FFN ×4), G = mean of the tokens. The 5×5 attention matrix is kept:
  its column means say how much each encoder stage is attended to ("stage_importance").
- [B] Kernel update in the K-Net/LDNet form written in MODELS.md. Its last step ends in a ReLU and
  the decoder features end in a ReLU too, so <K, D> could never be negative (every pixel would be
  foreground). As in K-Net, the mask kernel is therefore a linear projection of the updated
  kernel (``mask_fc``) plus a scalar bias, while the ReLU'd kernel is what the next stage updates.
- [B] Deep supervision on all 5 predictions: in training mode P5..P2 go to ``aux_logits``.
"""
from __future__ import annotations

from typing import List, Sequence

import torch
import torch.nn as nn

from . import _compat  # noqa: F401  (before timm: repairs torchvision on CPU torch)
from ._backbones import EFFICIENTNET_LITE0, create_backbone
from ._registry import register_model
from .blocks import ConvBNAct, double_conv, resize_to, seg_output
from .cards import EA_DK

BACKBONES = EA_DK.variants  # ("res2net50d", "res2net50_26w_4s", "efficientnet_lite0")
# variant -> timm encoder; [B] "efficientnet_lite0" is not in the paper: an ImageNet encoder with
# weights offline here (16/24/40/112/320 channels at strides 2..32), trainable on a CPU
ENCODERS = {"res2net50d": "res2net50d.in1k", "res2net50_26w_4s": "res2net50_26w_4s.in1k",
            "efficientnet_lite0": EFFICIENTNET_LITE0}
TOKEN_DIM = 256  # [B] EA width
KERNEL_DIM = 32  # [P] UCA width = dynamic kernel length


class EncoderAttention(nn.Module):
    """[P] Self-attention across the encoder stages → global context vector G.

    [B] Each stage E_i becomes one token Linear_i(GAP(E_i)) + stage embedding; one pre-norm
    transformer layer mixes the tokens; G is their mean. Returns G [B,D] and the head-averaged
    attention matrix A [B,S,S] (rows are softmaxes, so its column means sum to 1).
    """

    def __init__(self, in_channels: Sequence[int], dim: int = TOKEN_DIM, heads: int = 8, mlp_ratio: int = 4):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.heads = heads
        self.token_proj = nn.ModuleList(nn.Linear(c, dim) for c in in_channels)
        self.stage_embed = nn.Parameter(torch.zeros(len(in_channels), dim))
        nn.init.trunc_normal_(self.stage_embed, std=0.02)
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(), nn.Linear(mlp_ratio * dim, dim))
        self.norm_out = nn.LayerNorm(dim)

    def tokens(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        pooled = [proj(f.mean(dim=(2, 3))) for proj, f in zip(self.token_proj, feats)]
        return torch.stack(pooled, dim=1) + self.stage_embed  # [B,S,D]

    def attend(self, t: torch.Tensor):
        b, s, d = t.shape
        q, k, v = self.qkv(t).view(b, s, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        attn = (q @ k.transpose(-2, -1) * (d // self.heads) ** -0.5).softmax(dim=-1)  # [B,h,S,S]
        mixed = (attn @ v).transpose(1, 2).reshape(b, s, d)
        return self.proj(mixed), attn.mean(dim=1)

    def forward(self, feats: Sequence[torch.Tensor]):
        t = self.tokens(feats)
        mixed, attn = self.attend(self.norm1(t))
        t = t + mixed
        t = t + self.ffn(self.norm2(t))
        return self.norm_out(t.mean(dim=1)), attn


class GatedKernelUpdate(nn.Module):
    """[P] gated element-wise kernel update; [B] the K-Net/LDNet form of MODELS.md:

        p = σ(P_prev);  a = Σ p·D / Σ p
        [a_in, a_out] = W_a a;  [k_in, k_out] = W_k K;  g = a_in ⊙ k_in
        γ_a = σ(LN W1 g);  γ_k = σ(LN W2 g)
        K ← ReLU(LN W_o(γ_a ⊙ LN a_out + γ_k ⊙ LN k_out))
    """

    def __init__(self, dim: int = KERNEL_DIM):
        super().__init__()
        self.feat_proj = nn.Linear(dim, 2 * dim)  # W_a
        self.kernel_proj = nn.Linear(dim, 2 * dim)  # W_k
        self.feat_gate = nn.Sequential(nn.Linear(dim, dim), nn.LayerNorm(dim))  # W1
        self.kernel_gate = nn.Sequential(nn.Linear(dim, dim), nn.LayerNorm(dim))  # W2
        self.feat_norm = nn.LayerNorm(dim)
        self.kernel_norm = nn.LayerNorm(dim)
        self.out = nn.Sequential(nn.Linear(dim, dim), nn.LayerNorm(dim), nn.ReLU())  # W_o

    @staticmethod
    def masked_pool(feat: torch.Tensor, prev_logits: torch.Tensor) -> torch.Tensor:
        """Feature average weighted by the previous prediction (soft mask pooling)."""
        p = torch.sigmoid(resize_to(prev_logits, feat.shape[-2:]))
        return (p * feat).sum(dim=(2, 3)) / p.sum(dim=(2, 3)).clamp_min(1e-6)

    def forward(self, kernel: torch.Tensor, feat: torch.Tensor, prev_logits: torch.Tensor) -> torch.Tensor:
        a_in, a_out = self.feat_proj(self.masked_pool(feat, prev_logits)).chunk(2, dim=-1)
        k_in, k_out = self.kernel_proj(kernel).chunk(2, dim=-1)
        gate = a_in * k_in
        gamma_a = torch.sigmoid(self.feat_gate(gate))
        gamma_k = torch.sigmoid(self.kernel_gate(gate))
        return self.out(gamma_a * self.feat_norm(a_out) + gamma_k * self.kernel_norm(k_out))


class MaskKernel(nn.Module):
    """[B] Signed 1×1 mask kernel from an updated (ReLU'd) kernel, plus a scalar bias (K-Net's fc_mask)."""

    def __init__(self, dim: int = KERNEL_DIM):
        super().__init__()
        self.fc = nn.Linear(dim, dim)
        self.bias = nn.Parameter(torch.zeros(1))

    def forward(self, kernel: torch.Tensor, feat: torch.Tensor) -> torch.Tensor:
        return apply_kernel(self.fc(kernel), feat) + self.bias


def apply_kernel(kernel: torch.Tensor, feat: torch.Tensor) -> torch.Tensor:
    """Per-sample 1×1 convolution <K, D> at each pixel: [B,C] × [B,C,H,W] → [B,1,H,W]."""
    return torch.einsum("bc,bchw->bhw", kernel, feat).unsqueeze(1)


class EADK(nn.Module):
    def __init__(self, backbone: nn.Module, dim: int = KERNEL_DIM, token_dim: int = TOKEN_DIM):
        super().__init__()
        self.backbone = backbone
        channels = backbone.feature_info.channels()
        n = len(channels)
        self.encoder_attention = EncoderAttention(channels, token_dim)
        self.kernel_init = nn.Sequential(nn.Linear(token_dim, token_dim), nn.ReLU(), nn.Linear(token_dim, dim))
        self.uca = nn.ModuleList(ConvBNAct(c, dim, 1) for c in channels)  # [P] UCA; [B] + BN/ReLU
        # decoder[i] builds D_{i+1}: the deepest block sees U5 alone, the others cat[D_{s+1}, U_s]
        self.decoder = nn.ModuleList(double_conv(dim if i == n - 1 else 2 * dim, dim) for i in range(n))
        self.updates = nn.ModuleList(GatedKernelUpdate(dim) for _ in range(n - 1))
        self.mask_kernels = nn.ModuleList(MaskKernel(dim) for _ in range(n - 1))

    def decode(self, unified: List[torch.Tensor]) -> List[torch.Tensor]:
        """LDNet layout: D5 = ↑2 Blk(U5); D_s = ↑2 Blk(cat[D_{s+1}, U_s]). Returns [D5, D4, ..., D1].

        Each ↑2 goes to the next skip's size (2× the finest skip at the end), so odd input
        sizes line up.
        """
        targets = [u.shape[-2:] for u in unified[:-1]]
        targets = [(2 * targets[0][0], 2 * targets[0][1])] + targets  # targets[s] is D_{s+1}'s size
        decoded, y = [], None
        for s in reversed(range(len(unified))):
            x = unified[s] if y is None else torch.cat([y, unified[s]], dim=1)
            y = resize_to(self.decoder[s](x), targets[s])
            decoded.append(y)
        return decoded

    def forward(self, x: torch.Tensor) -> dict:
        feats = self.backbone(x)
        context, stage_attn = self.encoder_attention(feats)
        decoded = self.decode([uca(f) for uca, f in zip(self.uca, feats)])

        kernel = self.kernel_init(context)
        preds = [apply_kernel(kernel, decoded[0])]  # P5
        for update, mask_kernel, feat in zip(self.updates, self.mask_kernels, decoded[1:]):
            kernel = update(kernel, feat, preds[-1])
            preds.append(mask_kernel(kernel, feat))  # P4, P3, P2, P1

        n = len(preds)
        attention = {"kernel_init": torch.sigmoid(resize_to(preds[0], x.shape[-2:]))}
        attention.update({f"stage{n - 1 - i}": torch.sigmoid(p) for i, p in enumerate(preds[1:])})
        extra = {"stage_importance": stage_attn.mean(dim=1)}  # column means of A_EA, [B,5]
        if self.training:
            extra["aux_logits"] = preds[:-1]
        return seg_output(preds[-1], attention, x.shape[-2:], **extra)


@register_model(EA_DK)
def ea_dk(pretrained_backbone: bool = False, backbone_weights=None, variant: str = "res2net50d",
          backbone: str = None) -> nn.Module:
    # Every network names its variant ``variant``; ``backbone`` is kept as a readable alias.
    backbone = backbone or variant
    if backbone not in BACKBONES:
        raise ValueError(f"ea-dk backbone must be one of {BACKBONES}, got {backbone!r}")
    encoder = create_backbone(
        ENCODERS[backbone], pretrained_backbone, backbone_weights, features_only=True, out_indices=(0, 1, 2, 3, 4)
    )
    model = EADK(encoder)
    model.backbone_name = ENCODERS[backbone]  # the card's "backbone" for this variant
    return model
