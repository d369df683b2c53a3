import numpy as np
import pytest
import torch

from napari_polyp.training.metrics import MeanScores, per_image_scores


def _scores(pred, truth):
    out = per_image_scores(np.asarray(pred, np.float32)[None], np.asarray(truth, np.uint8)[None])
    return {k: float(v[0]) for k, v in out.items()}


def test_exact_values_on_a_hand_made_pair():
    truth = np.zeros((4, 4), np.uint8)
    truth[:2, :2] = 1  # 4 true pixels
    pred = np.zeros((4, 4), np.float32)
    pred[:2, :3] = 0.9  # 6 predicted, 4 of them right
    pred[3, 3] = 0.49  # below the 0.5 threshold: background
    s = _scores(pred, truth)
    assert s["dice"] == pytest.approx(2 * 4 / (6 + 4))
    assert s["iou"] == pytest.approx(4 / 6)
    assert s["precision"] == pytest.approx(4 / 6)
    assert s["recall"] == pytest.approx(1.0)


def test_threshold_is_inclusive_at_one_half():
    s = _scores([[0.5, 0.0]], [[1, 0]])
    assert s == {"dice": 1.0, "iou": 1.0, "precision": 1.0, "recall": 1.0}


def test_empty_cases():
    empty, full = np.zeros((3, 3)), np.ones((3, 3))
    assert _scores(empty, empty) == {"dice": 1.0, "iou": 1.0, "precision": 1.0, "recall": 1.0}
    assert _scores(empty, full) == {"dice": 0.0, "iou": 0.0, "precision": 1.0, "recall": 0.0}
    assert _scores(full, empty) == {"dice": 0.0, "iou": 0.0, "precision": 0.0, "recall": 1.0}


def test_mean_is_over_images_not_pixels():
    truth = torch.zeros(2, 1, 2, 2)
    truth[0, 0, 0, 0] = 1  # image 0: one true pixel, found
    truth[1] = 1  # image 1: four true pixels, none found
    pred = torch.zeros(2, 1, 2, 2)
    pred[0, 0, 0, 0] = 1
    scores = MeanScores()
    scores.update(pred, truth)
    result = scores.result()
    assert result["n"] == 2
    assert result["dice"] == pytest.approx(0.5)  # (1 + 0) / 2; pooled pixels would give 2/5
    assert result["recall"] == pytest.approx(0.5)
    assert result["precision"] == pytest.approx(1.0)  # image 1 predicted nothing: 0 false positives


def test_shape_mismatch_is_refused():
    with pytest.raises(ValueError):
        per_image_scores(torch.zeros(1, 4, 4), torch.zeros(1, 4, 5))
