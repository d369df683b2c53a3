"""Per-network training presets from MODELS.md (tags: [P] paper, [C] official code, [B] ours).

The learning rate follows a pure function of the training progress (epoch as a
float), set before every step; a resumed run only needs the step counter.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Dict

import torch


OPTIMIZERS = ("adamw", "adam", "sgd")
SCHEDULES = ("cosine", "poly", "cosine_restarts", "constant")


@dataclass(frozen=True)
class Preset:
    loss: str = "bce_dice"
    optimizer: str = "adamw"  # adamw | adam | sgd
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9  # sgd only
    schedule: str = "cosine"  # cosine | poly | cosine_restarts | constant
    min_lr: float = 0.0
    poly_power: float = 0.9
    restart_t0: float = 10.0  # epochs (cosine_restarts)
    restart_mult: float = 2.0
    epochs: int = 100
    batch: int = 8
    augment: str = "standard"
    deep_supervision: bool = True  # use out["aux_logits"] when the network gives them
    notes: str = ""


PRESETS: Dict[str, Preset] = {
    # [P] SGD lr 4e-4, momentum 0.9, poly decay; [B] power 0.9, wd 1e-5, 100 epochs, batch 16.
    "ea-dk": Preset(optimizer="sgd", lr=4e-4, weight_decay=1e-5, schedule="poly", epochs=100, batch=16,
                    notes="EA-DK: SGD poly [P]"),
    # [C] AdamW 1e-3, wd 1e-2, cosine to 1e-5, batch 8, flips + 0-360 rotation. The code's
    # T_max 50 over 300 epochs oscillates; [B] one cosine over the run.
    "microaunet": Preset(optimizer="adamw", lr=1e-3, weight_decay=1e-2, schedule="cosine", min_lr=1e-5,
                         epochs=300, batch=8, augment="microaunet", notes="MicroAUNet: AdamW + cosine [C]"),
    # [P] Adam 1e-4, cosine, Jaccard loss; batch 128 [P] is beyond CPU memory: [B] 16.
    "pefnet": Preset(loss="jaccard", optimizer="adam", lr=1e-4, schedule="cosine", min_lr=1e-6,
                     epochs=270, batch=16, augment="pefnet", notes="PEFNet: Adam + cosine, Jaccard α=100 [P]"),
    # [B] AdamW 1e-4, cosine, 100 epochs, batch 16, BCE + Dice.
    "dino-keys": Preset(optimizer="adamw", lr=1e-4, weight_decay=1e-4, schedule="cosine", min_lr=1e-6,
                        epochs=100, batch=16, augment="standard", notes="DINO-keys: AdamW + cosine [B]"),
    # [P] Adam, cosine warm restarts; [B] lr 1e-3, T_0 10, T_mult 2, 150 epochs, batch 8.
    "eam-net": Preset(optimizer="adam", lr=1e-3, schedule="cosine_restarts", min_lr=1e-6, restart_t0=10,
                      restart_mult=2, epochs=150, batch=8, augment="standard",
                      notes="EAM-Net: Adam + cosine warm restarts [P]"),
}

DEFAULT = Preset()


def get_preset(name: str, **overrides) -> Preset:
    preset = PRESETS.get(name.replace("_", "-"), DEFAULT)
    overrides = {k: v for k, v in overrides.items() if v is not None}
    return replace(preset, **overrides) if overrides else preset


def make_optimizer(preset: Preset, params) -> torch.optim.Optimizer:
    params = [p for p in params if p.requires_grad]
    if preset.optimizer == "sgd":
        return torch.optim.SGD(params, lr=preset.lr, momentum=preset.momentum, weight_decay=preset.weight_decay)
    if preset.optimizer == "adam":
        return torch.optim.Adam(params, lr=preset.lr, weight_decay=preset.weight_decay)
    if preset.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=preset.lr, weight_decay=preset.weight_decay)
    raise ValueError(f"unknown optimizer {preset.optimizer!r}")


def lr_at(preset: Preset, epoch: float, total_epochs: int) -> float:
    """Learning rate at a (fractional) epoch of a run of ``total_epochs``."""
    progress = min(max(epoch / max(total_epochs, 1), 0.0), 1.0)
    lo, hi = preset.min_lr, preset.lr
    if preset.schedule == "constant":
        return hi
    if preset.schedule == "poly":
        return hi * (1 - progress) ** preset.poly_power
    if preset.schedule == "cosine":
        return lo + (hi - lo) * 0.5 * (1 + math.cos(math.pi * progress))
    if preset.schedule == "cosine_restarts":  # SGDR: periods T0, T0*m, T0*m^2, ... in epochs
        period, start = preset.restart_t0, 0.0
        while epoch >= start + period:
            start += period
            period *= preset.restart_mult
        return lo + (hi - lo) * 0.5 * (1 + math.cos(math.pi * (epoch - start) / period))
    raise ValueError(f"unknown schedule {preset.schedule!r}")
