"""What a prediction is, and a network served straight from its cached ONNX graph: no torch.

    predictor = served_predictor("dino-keys")   # None unless an earlier run exported its graph
    result = predictor.predict(rgb_uint8_image)  # a Prediction, as from inference.Predictor

Starting the app used to mean importing torch, timm and torchvision (2-4 s of CPU on
the interpreter lock that napari's start-up needs too) and building the network, only
to run the ONNX graph cached from an earlier run. :class:`ServedPredictor` runs that
graph with ONNX Runtime and numpy alone, with the same pre- and post-processing as
:class:`napari_polyp.inference.Predictor` (resizing in :mod:`napari_polyp.inference.resample`,
which matches torch's; ``tests/inference/test_prediction.py`` holds the two predictors to the
same output). Anything else (another engine, a GPU, training) builds the torch network.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Dict, Iterable, Iterator, Optional

import numpy as np

from ..conventions import DEFAULT_THRESHOLD
from ..io.images import as_rgb_uint8
from .resample import resize, resize_map

def binary_mask(probability, threshold: float) -> np.ndarray:
    """The threshold rule, the one definition: foreground where probability >= threshold (uint8 0/1).
    The trainer's metrics (``training/metrics.py``) apply the same rule to tensors."""
    return (np.asarray(probability, np.float32) >= threshold).astype(np.uint8)


# Flip test-time augmentation: the views averaged (axes of an NCHW array each one mirrors).
TTA_FLIPS = ((), (-1,), (-2,))


def tta_fits(card, max_cpu_ms: Optional[float] = None) -> bool:
    """Whether flip TTA is on by default for this network: where all its views still answer
    within the default network's budget on one CPU thread (``models.MAX_DEFAULT_CPU_MS``),
    as the issue that asked for TTA put it: off only where it would break the speed target."""
    if max_cpu_ms is None:
        from models import MAX_DEFAULT_CPU_MS as max_cpu_ms
    return card.cpu_ms * len(TTA_FLIPS) <= max_cpu_ms


@dataclass
class Prediction:
    probability: np.ndarray  # HxW float32 in [0,1]
    attention: Dict[str, np.ndarray] = field(default_factory=dict)  # name -> HxW in [0,1]
    model: str = ""
    checkpoint_sha256: str = ""  # "" when the weights are untrained
    seconds: float = 0.0
    engine: str = ""  # what ran the network: "torch" | "onnxruntime"
    second_opinion: str = ""  # what a second network said of the mask (``second_opinion.checked``); "" unasked
    overruled: bool = False  # the mask is that second network's: it saw none of this one's

    def mask(self, threshold: float = DEFAULT_THRESHOLD) -> np.ndarray:
        return binary_mask(self.probability, threshold)


def network_input(images: np.ndarray, card) -> np.ndarray:
    """BxHxWx3 uint8 -> Bx3xSxS float32, resized (antialiased) and normalised per the card:
    ``inference.preprocess`` in numpy."""
    size = (card.input_size, card.input_size)
    x = np.stack([resize(image, size, antialias=True) for image in images]) / np.float32(255.0)
    x = x.transpose(0, 3, 1, 2)
    if card.normalization == "minmax":
        lo = x.min(axis=(1, 2, 3), keepdims=True)
        hi = x.max(axis=(1, 2, 3), keepdims=True)
        return np.ascontiguousarray((x - lo) / np.maximum(hi - lo, 1e-6), np.float32)
    mean = np.asarray(card.mean, np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(card.std, np.float32).reshape(1, 3, 1, 1)
    return np.ascontiguousarray((x - mean) / std, np.float32)


def _sigmoid(logits: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-logits.astype(np.float32)))).astype(np.float32)


def _to_image_size(maps: np.ndarray, hw) -> np.ndarray:
    """Bx1xhxw -> BxHxW float32 in [0, 1] at the image's size."""
    return np.stack([resize_map(m[0], hw) for m in maps])


class PredictorBase:
    """What every predictor offers around its ``_predict_rgb`` (BxHxWx3 uint8 of one size ->
    list of Prediction; ``attention=False`` leaves the maps out): the built network
    (:class:`napari_polyp.inference.Predictor`) and the served one (:class:`ServedPredictor`).
    Images are converted to 8-bit RGB here, once, whichever method a caller enters by."""

    model_name: str
    card: object
    checkpoint_sha256: str
    engine: str

    @property
    def trained(self) -> bool:
        return bool(self.checkpoint_sha256)

    def predict_batch(self, images, attention: bool = True) -> list:
        """Images of one size (a BxHxWxC array or a list of images; any dtype) -> list of Prediction."""
        if isinstance(images, np.ndarray) and images.ndim != 4:
            raise ValueError(f"predict_batch takes a BxHxWxC array or a list of images, not shape {images.shape}")
        return self._predict_rgb(np.stack([as_rgb_uint8(image) for image in images]), attention)

    def predict(self, image: np.ndarray, attention: bool = True) -> Prediction:
        return self._predict_rgb(as_rgb_uint8(image)[None], attention)[0]

    def _predict_rgb(self, images: np.ndarray, attention: bool) -> list:
        """BxHxWx3 uint8 -> list of Prediction: the network's part, per engine."""
        raise NotImplementedError

    def warm_up(self) -> None:
        """One run on a blank image: a session's first call allocates its buffers, and the
        user's first Run should not be the one paying for that."""
        size = self.card.input_size
        self.predict(np.zeros((size, size, 3), np.uint8))

    def predict_frames(self, frames: Iterable[np.ndarray]) -> Iterator[Prediction]:
        """One prediction per frame, lazily (a video never sits whole in memory)."""
        for frame in frames:
            yield self.predict(frame)

    def _predictions(self, probs: np.ndarray, maps: Dict[str, np.ndarray], started: float) -> list:
        seconds = (time.perf_counter() - started) / len(probs)
        return [Prediction(probs[i], {k: v[i] for k, v in maps.items()}, self.model_name, self.checkpoint_sha256,
                           seconds, self.engine) for i in range(len(probs))]


class ServedPredictor(PredictorBase):
    """:class:`napari_polyp.inference.Predictor`'s interface over a cached ONNX graph alone."""

    engine = "onnxruntime"
    engine_note = ""

    def __init__(self, model_name: str, card, runner, checkpoint_sha256: str, checkpoint_path: str,
                 tta: bool = False):
        self.model_name, self.card, self.runner, self.tta = model_name, card, runner, tta
        self.checkpoint_sha256, self.checkpoint_path = checkpoint_sha256, checkpoint_path

    def _probability(self, x: np.ndarray, logits: np.ndarray) -> np.ndarray:
        if not self.tta:
            return _sigmoid(logits)
        total = _sigmoid(logits)
        for axes in TTA_FLIPS[1:]:
            total += np.flip(_sigmoid(self.runner.run(np.flip(x, axes))["logits"]), axes)
        return total / len(TTA_FLIPS)

    def _predict_rgb(self, images: np.ndarray, attention: bool) -> list:
        start = time.perf_counter()
        x = network_input(images, self.card)
        out = self.runner.run(x)
        hw = images.shape[1:3]
        probs = _to_image_size(self._probability(x, out["logits"]), hw)
        maps = {name: _to_image_size(amap, hw) for name, amap in out["attention"].items()} if attention else {}
        return self._predictions(probs, maps, start)


def served_predictor(model_name: str, checkpoint=None, threads: Optional[int] = None,
                     tta: bool = False) -> Optional[ServedPredictor]:
    """``model_name`` with its default checkpoint (or ``checkpoint``, a path) straight from the
    graph an earlier run exported (``engine.served_runner``); None when there is none."""
    import models

    from .engine import served_runner

    path = models.default_checkpoint(model_name) if checkpoint in (None, True) else checkpoint
    if not path:
        return None  # random weights: nothing worth serving
    try:
        header = models.peek_header(path)
    except models.CheckpointError:
        return None
    card = models.card_with_checkpoint(models.base_card(model_name), str(path), header)
    runner = served_runner(model_name, path, card.input_size, threads)
    if runner is None or header.get("sha256") != runner.key.get("weights_sha256"):
        return None
    return ServedPredictor(model_name, card, runner, header.get("sha256", ""), str(path), tta=tta)


def served_if_on_cpu(model_name: str, checkpoint, device: str = "auto", engine: Optional[str] = None,
                     threads: Optional[int] = None, tta: bool = False) -> Optional[ServedPredictor]:
    """:func:`served_predictor`, when the network would run in ONNX Runtime on this CPU anyway
    (a GPU, the torch engine and random weights always build the torch network). The Segment
    widget and ``napari-polyp predict`` ask this first."""
    from .engine import runs_on_cpu_onnxruntime

    if not checkpoint or not runs_on_cpu_onnxruntime(device, engine):
        return None
    return served_predictor(model_name, checkpoint, threads=threads, tta=tta)

