"""A review keeps its predictions in bounded memory: the last KEEP_WHOLE whole, the older ones
compressed (enough for the table at any threshold), predicted again when opened."""
import numpy as np

from napari_polyp.corrections._kept_predictions import KEEP_WHOLE, LEVELS, KeptPredictions
from napari_polyp.corrections.review import CLEAN_KEPT, ReviewSession
from napari_polyp.inference.prediction import Prediction
from napari_polyp.jobs import ModelChoice, predicted

from .test_review_rules import ramp


def make_folder(root, n):
    """``n`` 16×20 images with a reference square each."""
    from PIL import Image

    images, masks = root / "images", root / "masks"
    images.mkdir(parents=True)
    masks.mkdir()
    for i in range(n):
        Image.fromarray(np.full((16, 20, 3), (10 * i) % 256, np.uint8)).save(images / f"im{i:02d}.png")
        reference = np.zeros((16, 20), np.uint8)
        reference[4:12, 4:12] = 255
        Image.fromarray(reference).save(masks / f"im{i:02d}.png")
    return images


def big_prediction(choice, seed=0, size=(531, 595), maps=5):
    """As heavy as EA-DK's on a Kvasir-SEG image: a probability and five attention maps."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size[0], :size[1]]
    probability = 1 / (1 + np.exp(-(60 - np.hypot(yy - 250, xx - 300)) / 8))  # a soft disc
    attention = {f"map{i}": rng.random(size, dtype=np.float32) for i in range(maps)}
    return predicted(Prediction(probability.astype(np.float32), attention, choice.network, "ab" * 32), choice)


def test_memory_stays_bounded_however_many_items_are_predicted():
    choice = ModelChoice.of("ea-dk", None)
    kept = KeptPredictions()
    one = big_prediction(choice)
    per_item = one.probability.nbytes + sum(a.nbytes for a in one.attention.values())
    for index in range(KEEP_WHOLE + 200):
        kept.put(index, one)
    assert kept.nbytes() < (KEEP_WHOLE + 1) * per_item  # 216 items: about the whole ones alone
    assert all(index in kept for index in range(KEEP_WHOLE + 200))
    assert kept.whole(0) is None and kept.whole(KEEP_WHOLE + 199) is one  # the last ones whole


def test_a_compressed_prediction_gives_the_same_mask_at_any_threshold_within_one_level():
    choice = ModelChoice.of("ea-dk", None)
    one = big_prediction(choice)
    kept = KeptPredictions(keep_whole=1)
    kept.put(0, one)
    kept.put(1, big_prediction(choice, seed=1))  # item 0 is compressed now
    assert kept.whole(0) is None and kept.provenance(0) == one.provenance
    back = kept.probability(0)
    assert np.abs(back - one.probability).max() <= 0.5 / LEVELS + 1e-6
    for threshold in (0.3, 0.5, 0.7):
        differs = kept.mask(0, threshold) != one.mask(threshold)
        near = np.abs(one.probability - threshold) <= 0.5 / LEVELS + 1e-6
        assert not np.any(differs & ~near)  # only pixels within a level of the threshold may move


def test_predicting_again_makes_it_whole_and_dropping_forgets_it():
    choice = ModelChoice.of("ea-dk", None)
    kept = KeptPredictions(keep_whole=2)
    for index in range(4):
        kept.put(index, big_prediction(choice, size=(8, 8)))
    again = big_prediction(choice, seed=9, size=(8, 8))
    kept.put(0, again)
    assert kept.whole(0) is again and kept.whole(2) is None and 2 in kept
    kept.drop(2)
    assert 2 not in kept and kept.probability(2) is None
    other = ModelChoice.of("microaunet", None)
    kept.put(5, big_prediction(other, size=(8, 8)))
    assert sorted(kept.drop_where(lambda p: p.choice != other)) == [0, 1, 3]
    assert kept.indices() == [5]


def test_a_session_opens_an_old_item_by_predicting_it_again_and_scores_it_meanwhile(tmp_path):
    """The table keeps the Dice of every predicted item at a new threshold; an item predicted
    before the last KEEP_WHOLE is not predicted again by Run on all, and opens by predicting."""
    images = make_folder(tmp_path / "data", KEEP_WHOLE + 3)
    session = ReviewSession(images, tmp_path / "ds")
    choice = ModelChoice.of("ea-dk", None)
    session.use_model(choice)
    for index in range(len(session.items)):
        assert session.remember(index, predicted(Prediction(ramp(), {}, "ea-dk", "ab" * 32), choice))
    assert session.prediction(0) is None and session.was_predicted(0)  # kept compressed
    assert session.prediction(KEEP_WHOLE + 2) is not None
    assert session.to_predict(range(len(session.items))) == []  # all predicted: Run on all has nothing to do
    assert session.network_of(0).startswith("ea-dk")
    at_half = session.table_row(0)["dice"]
    assert sorted(session.use_threshold(0.8)) == list(range(len(session.items)))
    assert session.table_row(0)["dice"] != at_half  # the compressed item follows the threshold too
    session.forget(0)
    assert not session.was_predicted(0) and session.to_predict([0]) == [0]


def test_only_the_last_items_shown_keep_their_clean_mask(tmp_path):
    images = make_folder(tmp_path / "data", CLEAN_KEPT + 4)
    session = ReviewSession(images, tmp_path / "ds")
    for index in range(len(session.items)):
        session.mark_clean(index, np.zeros((16, 20), np.uint8))
    edited = np.ones((16, 20), np.uint8)
    assert session.is_dirty(len(session.items) - 1, edited)  # the open item: its edit is seen
    assert not session.is_dirty(0, edited)  # long gone: opening it again marks it clean again
    session.mark_clean(0, np.zeros((16, 20), np.uint8))
    assert session.is_dirty(0, edited)
