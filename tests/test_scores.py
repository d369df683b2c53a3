"""napari_polyp.scores is the one Dice/IoU definition: training (torch) and corrections (numpy) agree."""
import subprocess
import sys

import numpy as np
import pytest

from napari_polyp.corrections.metrics import dice_iou
from napari_polyp.scores import scores_from_counts


def test_counts_and_empty_cases():
    assert scores_from_counts(4, 6, 4) == pytest.approx({"dice": 0.8, "iou": 4 / 6, "precision": 4 / 6, "recall": 1})
    assert scores_from_counts(0, 0, 0) == {"dice": 1.0, "iou": 1.0, "precision": 1.0, "recall": 1.0}
    assert scores_from_counts(0, 0, 5) == {"dice": 0.0, "iou": 0.0, "precision": 1.0, "recall": 0.0}
    assert scores_from_counts(0, 5, 0) == {"dice": 0.0, "iou": 0.0, "precision": 0.0, "recall": 1.0}


def test_corrections_and_training_give_the_same_scores():
    torch = pytest.importorskip("torch")
    from napari_polyp.training.metrics import per_image_scores

    rng = np.random.default_rng(0)
    preds = rng.random((8, 12, 10)) > rng.random((8, 1, 1))
    truths = rng.random((8, 12, 10)) > rng.random((8, 1, 1))
    preds[0], truths[0] = False, False  # both empty
    preds[1] = False  # nothing found
    truths[2] = False  # nothing to find
    batch = per_image_scores(torch.from_numpy(preds.astype(np.float32)), torch.from_numpy(truths.astype(np.uint8)))
    for i in range(len(preds)):
        assert dice_iou(preds[i], truths[i]) == (float(batch["dice"][i]), float(batch["iou"][i]))


def test_corrections_scores_need_no_torch():
    code = "import sys, napari_polyp.corrections.review; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
