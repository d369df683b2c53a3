"""The click refiner's network on arrays: its runner, its input, a click.

Below :mod:`napari_polyp.corrections.clicks` (the click session) and :mod:`napari_polyp.video`
(propagation refines carried masks with it, no clicks), which both use it; numpy, and the
network through ONNX Runtime or torch (:mod:`napari_polyp.inference.engine`), imported when it runs.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import numpy as np

from ..errors import UserError
from .resample import resize

REFINER = "click-refiner"
CROP_MARGIN = 0.4  # the crop is the box of mask and clicks, grown by this share of its side on each side
FULL_IMAGE_SHARE = 0.6  # a crop covering more of the image than this is the whole image
MIN_CROP = 48  # px: a crop is never smaller (a tiny object still gets context)


@dataclass(frozen=True)
class Click:
    row: int
    col: int
    positive: bool

    def to_dict(self) -> dict:
        return {"row": self.row, "col": self.col, "positive": self.positive}


_RUNNERS: Dict[tuple, object] = {}


def refiner_runner(checkpoint=None, engine: Optional[str] = None, threads: Optional[int] = None):
    """The refiner's runner (ONNX Runtime from its verified cached graph when it can, else
    torch), kept for the next session. A checkpoint of another architecture is refused by name."""
    import models

    path = checkpoint if checkpoint is not None else models.default_checkpoint(REFINER)
    if path is None:
        raise UserError("the click refiner has no checkpoint (none shipped or preferred): "
                        "train one with `napari-polyp train-clicks`")
    size = models.get_card(REFINER).input_size if checkpoint is None else None
    key = (str(path), engine, threads)
    if key not in _RUNNERS:
        _RUNNERS[key] = _build_runner(path, size, engine, threads)
    return _RUNNERS[key]


def _build_runner(path, size, engine, threads):
    import models
    from .engine import default_engine, make_runner, served_runner

    engine = engine or default_engine()
    if engine in ("auto", "onnxruntime") and size is not None:
        served = served_runner(REFINER, path, size, threads)
        if served is not None:
            return served
    model = models.create_model(REFINER, checkpoint=path)  # CheckpointError names another architecture
    size = int((model.checkpoint_header or {}).get("training", {}).get("size") or models.base_card(REFINER).input_size)
    runner = make_runner(model.eval(), REFINER, size, engine or "auto", threads=threads)
    runner.input_size = size
    return runner


def click_discs(clicks: List[Click], hw, scale: Tuple[float, float], radius: float) -> np.ndarray:
    """2xHxW float32 discs at the network's size: positive clicks in channel 0, negative in 1.
    ``scale``: (rows, cols) factor from the crop to the network input."""
    h, w = hw
    maps = np.zeros((2, h, w), np.float32)
    ys, xs = np.ogrid[:h, :w]
    for c in clicks:
        # the click's pixel centre, mapped like the image's pixels (half-pixel centres)
        r = (c.row + 0.5) * scale[0] - 0.5
        q = (c.col + 0.5) * scale[1] - 0.5
        maps[0 if c.positive else 1][(ys - r) ** 2 + (xs - q) ** 2 <= radius ** 2] = 1.0
    return maps


def refiner_input(image: np.ndarray, probability: np.ndarray, clicks: List[Click], size: int) -> np.ndarray:
    """1x6xSxS float32: the image (antialiased, normalised per the refiner's card), the current
    probability and the click discs, all at the network's square input size."""
    import models
    from models.click_refiner import CLICK_RADIUS
    from .prediction import network_input

    card = models.base_card(REFINER)
    card = card if card.input_size == size else _with_size(card, size)
    x = network_input(image[None], card)
    h, w = probability.shape
    mask = resize(probability, (size, size), antialias=True)[None, None]
    discs = click_discs(clicks, (size, size), (size / h, size / w), CLICK_RADIUS)[None]
    return np.ascontiguousarray(np.concatenate([x, mask, discs], axis=1), np.float32)


def _with_size(card, size: int):
    import dataclasses

    return dataclasses.replace(card, input_size=size)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-np.clip(x, -60, 60)))).astype(np.float32)


def torch_tensor(x: np.ndarray):
    import torch

    return torch.from_numpy(x)
