"""An exponential moving average (EMA) of a network's weights, validated and saved instead
of the raw weights (``napari-polyp train --ema DECAY``).

On this project's small datasets the validation Dice of the raw weights jumps by
±0.02 from one epoch to the next (DINO-keys at 336 px: 0.80–0.84 over consecutive
epochs), so "the best epoch" is partly luck. The average over the last few hundred
steps moves smoothly and usually scores a little higher.

Only what trains is averaged: the parameters that require gradients and the floating
point buffers (BatchNorm statistics); a frozen backbone is left alone, and nothing is
deep-copied (a copy of a network with forward hooks, e.g. DINO-keys' key capture,
would keep writing into the original's). Early on the decay is lowered
(``min(decay, (1 + step) / (10 + step))``, as timm's ModelEma does), so the
average of a network trained from scratch is not dominated by its random start.
"""
from __future__ import annotations

import contextlib
from typing import Dict, Iterator

import torch
import torch.nn as nn


def _averaged_tensors(model: nn.Module) -> Dict[str, torch.Tensor]:
    tensors = {name: p for name, p in model.named_parameters() if p.requires_grad}
    tensors.update((name, b) for name, b in model.named_buffers() if b.dtype.is_floating_point)
    return tensors


class WeightAverage:
    def __init__(self, model: nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"the EMA decay must be between 0 and 1 (e.g. 0.998), not {decay}")
        self.decay = float(decay)
        self.updates = 0
        self.shadow = {name: t.detach().clone() for name, t in _averaged_tensors(model).items()}

    def decay_now(self) -> float:
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @staticmethod
    def shadow_source(model: nn.Module) -> Dict[str, torch.Tensor]:
        """The network's own tensors that the average follows."""
        return _averaged_tensors(model)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """After an optimiser step: shadow <- decay * shadow + (1 - decay) * weights."""
        weight = 1.0 - self.decay_now()
        for name, tensor in _averaged_tensors(model).items():
            self.shadow[name].lerp_(tensor.detach().to(self.shadow[name].dtype), weight)
        self.updates += 1

    @contextlib.contextmanager
    @torch.no_grad()
    def applied(self, model: nn.Module) -> Iterator[nn.Module]:
        """``model`` with the averaged weights inside the block, its own ones again after it."""
        tensors = _averaged_tensors(model)
        own = {name: t.detach().clone() for name, t in tensors.items()}
        try:
            for name, tensor in tensors.items():
                tensor.copy_(self.shadow[name])
            yield model
        finally:
            for name, tensor in tensors.items():
                tensor.copy_(own[name])

    def state_dict(self) -> dict:
        return {"decay": self.decay, "updates": self.updates, "shadow": dict(self.shadow)}

    def load_state_dict(self, state: dict) -> None:
        missing = set(self.shadow) ^ set(state["shadow"])
        if missing:
            raise ValueError(f"the saved weight average does not fit this network ({sorted(missing)[:3]}…)")
        self.updates = int(state["updates"])
        for name, tensor in state["shadow"].items():
            self.shadow[name].copy_(tensor)
