"""Segmentation metrics as the papers report them: the MEAN over images of
per-image Dice, IoU, precision and recall, with the prediction thresholded at ``conventions.DEFAULT_THRESHOLD`` (0.5).

Per image, with P the predicted foreground and T the true foreground (pixel sets):

    dice = 2|P∩T| / (|P|+|T|)     iou = |P∩T| / |P∪T|
    precision = |P∩T| / |P|       recall = |P∩T| / |T|

Empty cases (defined so that an image without a lesion is scored fairly):
- P and T both empty: the prediction is perfect -> dice = iou = precision = recall = 1.
- P empty, T not: nothing was found -> dice = iou = recall = 0; precision = 1
  (no predicted pixel is wrong: 0 false positives).
- T empty, P not: everything predicted is a false positive -> dice = iou = precision = 0;
  recall = 1 (there was nothing to miss).
These follow the usual "0/0 = 1" convention of torchmetrics' ``zero_division=1``.
The formulas live in :mod:`napari_polyp.scores` (shared with the Review widget's scores).
"""
from __future__ import annotations

from typing import Dict, Iterable

import numpy as np
import torch

from ..conventions import DEFAULT_THRESHOLD
from ..scores import scores_from_counts

METRIC_NAMES = ("dice", "iou", "precision", "recall")


def per_image_scores(pred, target, threshold: float = DEFAULT_THRESHOLD) -> Dict[str, torch.Tensor]:
    """pred: probabilities (or a binary mask) [B,...]; target: {0,1} [B,...].
    Returns {name: [B] tensor}. A prediction counts as foreground when >= threshold."""
    pred = torch.as_tensor(np.asarray(pred) if not torch.is_tensor(pred) else pred)
    target = torch.as_tensor(np.asarray(target) if not torch.is_tensor(target) else target)
    p = (pred.float() >= threshold).flatten(1).double()
    t = (target.float() >= 0.5).flatten(1).double()
    if p.shape != t.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ per image")
    return scores_from_counts((p * t).sum(1), p.sum(1), t.sum(1))


class MeanScores:
    """Accumulates per-image scores over batches; ``result()`` gives the means and n."""

    def __init__(self):
        self.values = {name: [] for name in METRIC_NAMES}

    def update(self, pred, target, threshold: float = DEFAULT_THRESHOLD) -> None:
        for name, value in per_image_scores(pred, target, threshold).items():
            self.values[name].extend(value.tolist())

    def extend(self, scores: Iterable[Dict[str, float]]) -> None:
        for score in scores:
            for name in METRIC_NAMES:
                self.values[name].append(float(score[name]))

    @property
    def n(self) -> int:
        return len(self.values["dice"])

    def result(self) -> Dict[str, float]:
        out = {"n": self.n}
        for name, values in self.values.items():
            out[name] = float(np.mean(values)) if values else float("nan")
        return out
