"""Headless inference: the same code behind the Segment widget, the CLI and the tests.

    predictor = Predictor("microaunet")            # default checkpoint, best device
    result = predictor.predict(rgb_uint8_image)    # HxWx3
    result.probability                             # HxW float32 in [0,1]
    result.attention["lscab_spatial"]              # HxW float32 in [0,1]
    result.mask(0.5)                               # HxW uint8 {0,1}

Pre- and post-processing follow the model card: resize to the network's native
square input, normalise (ImageNet mean/std, or per-image min-max), and map the
outputs back to the image's own size. The network itself runs in the engine
chosen by ``engine`` (see :mod:`napari_polyp.inference.engine`): "auto" is ONNX Runtime on
the CPU, torch on a GPU.
"""
from __future__ import annotations

import time
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F

import models
from models import ModelCard

from .engine import make_runner
from .prediction import TTA_FLIPS, PredictorBase


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for, but PyTorch sees no CUDA GPU here")
    return torch.device(device)


def preprocess(images: np.ndarray, card: ModelCard) -> torch.Tensor:
    """[B]xHxWx3 uint8 -> Bx3xSxS float tensor, resized and normalised per the card."""
    batch = images[None] if images.ndim == 3 else images
    batch = np.ascontiguousarray(batch)
    if not batch.flags.writeable:  # a read-only frame (a decoded video, a memory map): torch warns on it
        batch = batch.copy()
    x = torch.from_numpy(batch).permute(0, 3, 1, 2).float().div_(255.0)
    size = (card.input_size, card.input_size)
    if tuple(x.shape[-2:]) != size:
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
    return normalise(x, card)


def normalise(x: torch.Tensor, card: ModelCard) -> torch.Tensor:
    """Bx3xHxW in [0, 1] -> the card's normalisation (ImageNet mean/std, or per-image min-max),
    on ``x``'s own device (training's on-device augmentation uses it too)."""
    if card.normalization == "minmax":
        lo = x.amin(dim=(1, 2, 3), keepdim=True)
        hi = x.amax(dim=(1, 2, 3), keepdim=True)
        return (x - lo) / (hi - lo).clamp_min(1e-6)
    mean = x.new_tensor(card.mean).view(1, 3, 1, 1)
    std = x.new_tensor(card.std).view(1, 3, 1, 1)
    return (x - mean) / std


def _to_image_size(t: torch.Tensor, hw) -> np.ndarray:
    """Bx1xhxw -> BxHxW float32 numpy at the image's own size."""
    t = F.interpolate(t.float(), size=tuple(hw), mode="bilinear", align_corners=False)
    return t[:, 0].clamp_(0.0, 1.0).cpu().numpy()


def probability_with_flips(model: Callable, x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Mean probability over the image and its horizontal and vertical mirror images, each
    mirrored back (3 network passes; ``logits`` is the plain pass already made). Polyps and
    skin lesions have no preferred orientation, so every view is an equally valid input."""
    total = torch.sigmoid(logits.float())
    for dims in TTA_FLIPS[1:]:
        total += torch.sigmoid(model(torch.flip(x, dims))["logits"].float()).flip(dims)
    return total / len(TTA_FLIPS)


class Predictor(PredictorBase):
    """A network ready for inference, with its card's pre/post-processing.

    ``engine``: "auto" | "torch" | "onnxruntime" (see :mod:`napari_polyp.inference.engine`; None: "auto"
    unless ``$NAPARI_POLYP_ENGINE`` says otherwise);
    ``threads``: CPU threads of the engine (default: ONNX Runtime uses the physical
    cores, torch keeps its own setting). ``self.engine`` says which one runs, and
    ``self.engine_note`` why it is not the one asked for ("" when it is).
    """

    def __init__(self, model_name: str, checkpoint=None, device: str = "auto",
                 pretrained_backbone: bool = False, model: Optional[torch.nn.Module] = None,
                 tta: bool = False, engine: Optional[str] = None, threads: Optional[int] = None):
        self.device = resolve_device(device)
        self.tta = tta  # flip test-time augmentation: see probability_with_flips
        if model is None:
            model = models.create_model(model_name, pretrained_backbone=pretrained_backbone, checkpoint=checkpoint)
        self.model = model.eval().to(self.device)
        self.model_name = model_name
        header = getattr(model, "checkpoint_header", None) or {}
        self.checkpoint_sha256 = header.get("sha256", "")
        self.checkpoint_path = getattr(model, "checkpoint_path", None)
        self.card = models.card_with_checkpoint(models.base_card(model_name), self.checkpoint_path, header or None)
        if threads and self.device.type == "cpu":
            torch.set_num_threads(int(threads))
        self.runner = make_runner(self.model, model_name, self.card.input_size, engine, self.device, threads)

    @property
    def engine(self) -> str:
        return self.runner.engine

    @property
    def engine_note(self) -> str:
        return self.runner.note

    @torch.inference_mode()
    def _predict_rgb(self, images: np.ndarray, attention: bool) -> list:
        """BxHxWx3 uint8 (all of one size) -> list of Prediction; ``attention=False`` leaves the maps
        out (not resized to the image: Live video shows only the mask)."""
        start = time.perf_counter()
        x = preprocess(images, self.card).to(self.device)
        out = self.runner(x)
        hw = images.shape[1:3]
        prob = probability_with_flips(self.runner, x, out["logits"]) if self.tta else torch.sigmoid(out["logits"])
        probs = _to_image_size(prob, hw)
        maps = {name: _to_image_size(amap, hw) for name, amap in out["attention"].items()} if attention else {}
        return self._predictions(probs, maps, start)
