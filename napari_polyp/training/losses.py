"""The papers' segmentation losses, on logits [B,1,H,W] and {0,1} targets [B,1,H,W].

- ``bce_dice``: BCE + soft Dice, weights 1:1 (EA-DK [P], MicroAUNet [C], EAM-Net [P],
  DINO-keys [B]).
- ``jaccard``: PEFNet's [P] L = α(1 − (α + Σyŷ)/(α + Σ(y + ŷ − yŷ))) with α = 100 [B],
  per image.
- ``deep_supervision``: the loss on the main logits plus, with equal weights [B], the
  same loss on every ``aux_logits`` side output, each compared with the target
  resized (area-weighted, so soft at coarse scales) to the side output's size.
"""
from __future__ import annotations

from typing import Callable, Dict

import torch
import torch.nn.functional as F


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    prob = torch.sigmoid(logits.float()).flatten(1)
    target = target.float().flatten(1)
    inter = (prob * target).sum(1)
    dice = (2 * inter + smooth) / (prob.sum(1) + target.sum(1) + smooth)
    return (1 - dice).mean()


def bce_dice(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """BCE + soft Dice; ``target`` may be soft (a teacher's probability map in [0, 1])."""
    bce = F.binary_cross_entropy_with_logits(logits.float(), target.float())
    return bce + soft_dice_loss(logits, target)


def jaccard(logits: torch.Tensor, target: torch.Tensor, alpha: float = 100.0) -> torch.Tensor:
    prob = torch.sigmoid(logits.float()).flatten(1)
    target = target.float().flatten(1)
    inter = (prob * target).sum(1)
    union = (prob + target - prob * target).sum(1)
    return (alpha * (1 - (alpha + inter) / (alpha + union))).mean()


LOSSES: Dict[str, Callable] = {"bce_dice": bce_dice, "jaccard": jaccard}


def resize_target(target: torch.Tensor, size) -> torch.Tensor:
    if tuple(target.shape[-2:]) == tuple(size):
        return target
    return F.interpolate(target.float(), size=tuple(size), mode="area")


def deep_supervision(out: dict, target: torch.Tensor, loss_fn: Callable) -> torch.Tensor:
    """loss(main) + Σ loss(aux_k), each aux against the target at its own size."""
    total = loss_fn(out["logits"], target)
    for aux in out.get("aux_logits", None) or []:
        total = total + loss_fn(aux, resize_target(target, aux.shape[-2:]))
    return total
