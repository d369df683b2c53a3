"""Dice, IoU, precision and recall from pixel counts: the one definition shared by
training/evaluation (:mod:`napari_polyp.training.metrics`, torch batches) and the
Review widget's scores (:mod:`napari_polyp.corrections.metrics`, numpy masks).

Kept free of torch (and of the training package) so corrections stay light.

With P the predicted and T the true foreground of one image:

    dice = 2|P∩T| / (|P|+|T|)     iou = |P∩T| / |P∪T|
    precision = |P∩T| / |P|       recall = |P∩T| / |T|

and 0/0 = 1 (torchmetrics' ``zero_division=1``): both empty scores 1 everywhere;
P empty, T not: dice = iou = recall = 0, precision = 1; T empty, P not:
dice = iou = precision = 0, recall = 1.
"""
from __future__ import annotations

from typing import Dict

def _ratio(num, den):
    # 0/0 = 1. Here a zero denominator always has a zero numerator (tp is at most
    # |P|, |T| and |P∪T|), so adding (den == 0) to both gives exactly 1/1 there and
    # num/den elsewhere -- for Python numbers, numpy arrays and torch tensors alike.
    empty = den == 0
    return (num + empty) / (den + empty)


def scores_from_counts(tp, pred_sum, true_sum) -> Dict[str, object]:
    """``tp`` = |P∩T|, ``pred_sum`` = |P|, ``true_sum`` = |T| (numbers, arrays or
    tensors of per-image counts) -> {"dice", "iou", "precision", "recall"} of the same kind."""
    return {
        "dice": _ratio(2 * tp, pred_sum + true_sum),
        "iou": _ratio(tp, pred_sum + true_sum - tp),
        "precision": _ratio(tp, pred_sum),
        "recall": _ratio(tp, true_sum),
    }
