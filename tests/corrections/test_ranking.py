"""The review queue's uncertainty score: half-confident before confident, disagreement counts."""
import numpy as np
import pytest

from napari_polyp.corrections import ranking


def _disc(shape=(64, 64), center=(32, 32), radius=16):
    rows, cols = np.ogrid[:shape[0], :shape[1]]
    return (rows - center[0]) ** 2 + (cols - center[1]) ** 2 <= radius ** 2


def test_a_half_confident_prediction_ranks_above_a_confident_one():
    confident = np.where(_disc(), 0.99, 0.01)
    confident[_disc(radius=17) & ~_disc(radius=15)] = 0.5  # a sharp mask still has an undecided rim
    half = np.where(_disc(), 0.6, 0.05)
    scores = {"confident": ranking.uncertainty(confident), "half": ranking.uncertainty(half)}
    assert ranking.most_uncertain_first(scores) == ["half", "confident"]
    # inside the band alone the two look alike: the rim is as undecided as the half-confident disc
    assert scores["confident"].band_entropy > 0.9 * scores["half"].band_entropy


def test_entropy_parts():
    assert ranking.binary_entropy(np.array([0.0, 0.5, 1.0])) == pytest.approx([0, 1, 0], abs=1e-9)
    flat = ranking.uncertainty(np.full((8, 8), 0.5))
    assert flat.entropy == pytest.approx(1.0) and flat.band_fraction == 1.0 and flat.disagreement is None
    assert ranking.uncertainty(np.zeros((8, 8))).score == 0.0


def test_disagreement_between_two_networks_raises_the_score():
    a = np.where(_disc(), 0.95, 0.02)
    same = ranking.uncertainty(a, a)
    other = ranking.uncertainty(a, np.where(_disc(center=(20, 44)), 0.95, 0.02))
    assert same.disagreement == pytest.approx(0.0) and 0 < other.disagreement < 1
    assert ranking.most_uncertain_first({"same": same, "other": other}) == ["other", "same"]
    with pytest.raises(ValueError, match="differ in size"):
        ranking.uncertainty(a, np.zeros((3, 3)))


def test_ties_and_plain_numbers_keep_a_stable_order():
    assert ranking.most_uncertain_first({"b": 0.2, "a": 0.2, "c": 0.9, "d": float("nan")}) == ["c", "a", "b", "d"]
