"""Dice and IoU of one mask against a reference, in numpy (no torch needed).

The formulas are :func:`napari_polyp.scores.scores_from_counts`, the ones training
and evaluation use; foreground here = nonzero (label masks), and an empty
prediction of an empty reference scores 1 (nothing to find, nothing wrong).
"""
from __future__ import annotations

from typing import Dict, Iterable, Tuple

import numpy as np

from ..scores import scores_from_counts


def dice_iou(mask: np.ndarray, reference: np.ndarray) -> Tuple[float, float]:
    mask, reference = np.asarray(mask) != 0, np.asarray(reference) != 0
    if mask.shape != reference.shape:
        raise ValueError(f"mask {mask.shape} and reference {reference.shape} differ in shape")
    scores = scores_from_counts(int(np.count_nonzero(mask & reference)), int(np.count_nonzero(mask)),
                                int(np.count_nonzero(reference)))
    return scores["dice"], scores["iou"]


def mean_scores(scores: Iterable[Tuple[float, float]]) -> Dict[str, float]:
    """Running mean of (dice, iou) pairs -> {"dice", "iou", "n"}."""
    values = [s for s in scores if s is not None]
    if not values:
        return {"dice": float("nan"), "iou": float("nan"), "n": 0}
    array = np.asarray(values, dtype=np.float64)
    return {"dice": float(array[:, 0].mean()), "iou": float(array[:, 1].mean()), "n": len(values)}
