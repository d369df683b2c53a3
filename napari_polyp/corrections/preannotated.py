"""A pre-annotated video in Review: the masks ``napari-polyp predict`` stored for it, served as
the frames' predictions, nothing recomputed.

    pre = PreAnnotations("masks/clip.zarr")   # the store; pre.video_path is the video it was made of
    pre.prediction(7)                          # a Predicted of frame 7, or None (frame not written)

:class:`napari_polyp.corrections.review.ReviewSession` opens one when its source is a mask store
(a ``.zarr`` folder written by ``predict``): its items are the video's frames, and a frame's
prediction is the stored one until R (Run) asks the chosen network instead. Its provenance is the
store's (network, checkpoint sha256, TTA), labelled "(pre-annotated)", so a save records the
network that made the mask, whatever network is chosen in the app.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..conventions import DEFAULT_THRESHOLD
from ..io.mask_store import MaskStore
from ..jobs import ModelChoice, Predicted, Provenance


@dataclass(frozen=True)
class PreAnnotationChoice(ModelChoice):
    """The network a store's masks were made with. Never equal to a choice made in the app (a
    dataclass compares its class too), so choosing another network never drops them."""

    store: str = ""
    text: str = ""  # the store's own words for it (MaskStore.network_label)

    def label(self) -> str:
        return self.text


def consistent_probability(probability: np.ndarray, mask: np.ndarray, threshold: float) -> np.ndarray:
    """The stored probability (uint8 steps of 1/255) nudged by less than 1/255 where its rounding
    crossed the threshold, so that ``probability >= threshold`` is the stored mask exactly."""
    probability = np.array(probability, np.float32, copy=True)
    below = np.nextafter(np.float32(threshold), np.float32(0.0))
    on = mask > 0
    probability[on & (probability < threshold)] = np.float32(threshold)
    probability[~on & (probability >= threshold)] = below
    return probability


class PreAnnotations:
    """The masks of one video from its store (see the module docstring)."""

    def __init__(self, path):
        self.store = MaskStore.open(path)
        attrs = self.store.attrs
        self.threshold = float(attrs.get("threshold", DEFAULT_THRESHOLD))
        self.checkpoint_sha256 = str(attrs.get("checkpoint_sha256") or "")
        self.choice = PreAnnotationChoice(str(attrs.get("model") or "unknown network"),
                                          str(attrs.get("checkpoint") or ""), "", bool(attrs.get("tta")),
                                          store=str(self.store.path), text=self.store.network_label())
        self.video_path = self.store.video_path()
        self._written = set(self.store.written())  # read once: Review only reads the store

    def covers(self, frame: int) -> bool:
        """Whether the run wrote frame ``frame`` (no chunk is read)."""
        return int(frame) in self._written

    def check_video(self, frames) -> None:
        """The store must be this video's: as many frames, of the same size."""
        self.store.check_video(frames, self.video_path)

    def prediction(self, frame: int) -> Optional[Predicted]:
        """Frame ``frame``'s stored prediction (its probability when the store keeps them, else its
        mask as 0/1), or None when the run did not write that frame."""
        if not self.covers(frame):
            return None
        mask = self.store.read(frame)
        probability = self.store.read_probability(frame)
        probability = mask.astype(np.float32) if probability is None else \
            consistent_probability(probability, mask, self.threshold)
        return Predicted(probability, {}, Provenance(self.choice, self.checkpoint_sha256, str(self.video_path)))
