"""The review rules that keep wrong data out of the corrections dataset (issue 24, items 1-3),
Qt-free: an unreadable item is never saved under another image's mask; a prediction belongs to
one network choice; a mask re-derived at a new threshold is the prediction, not an edit."""
import json

import numpy as np
import pytest
from PIL import Image

from napari_polyp.corrections.review import ReviewSession
from napari_polyp.jobs import ModelChoice, predicted
from napari_polyp.errors import UserError
from napari_polyp.inference.prediction import Prediction


def make_folder(root, sizes=((16, 20), (18, 22), (16, 20))):
    images, masks = root / "images", root / "masks"
    images.mkdir(parents=True)
    masks.mkdir()
    for i, (h, w) in enumerate(sizes):
        Image.fromarray(np.full((h, w, 3), 40 + 40 * i, np.uint8)).save(images / f"im{i}.png")
        reference = np.zeros((h, w), np.uint8)
        reference[4:12, 4:12] = 255
        Image.fromarray(reference).save(masks / f"im{i}.png")
    return images


def truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def ramp(h=16, w=20):
    """A probability rising left to right: each threshold gives another mask."""
    return np.tile(np.linspace(0, 1, w, dtype=np.float32), (h, 1))


def prediction_of(choice, probability=None, sha="ab" * 32):
    probability = ramp() if probability is None else probability
    return predicted(Prediction(probability, {}, choice.network, sha), choice)


def manifest(root):
    return [json.loads(line) for line in (root / "manifest.jsonl").read_text().splitlines()]


# -- item 1: an unreadable item ------------------------------------------------------------
def test_an_unreadable_item_is_marked_skipped_and_never_saved(tmp_path):
    images = make_folder(tmp_path / "data")
    truncate(images / "im1.png")
    session = ReviewSession(images, tmp_path / "ds")
    session.image(0)
    with pytest.raises(UserError, match="im1.png"):
        session.image(1)
    assert not session.is_readable(1) and session.table_row(1)["status"] == "unreadable"
    assert "1 unreadable" in session.progress_text()
    assert session.neighbour([0, 1, 2], 0, +1) == 2 and session.neighbour([0, 1, 2], 2, -1) == 0
    assert session.to_predict([0, 1, 2]) == [0, 2]
    previous_mask = np.ones((16, 20), np.uint8)  # what the screen still showed: the previous image's mask
    for status in ("accepted", "corrected", "rejected"):
        with pytest.raises(UserError, match="im1.png cannot be read"):
            session.commit(1, previous_mask, status)
    assert not (tmp_path / "ds" / "manifest.jsonl").exists()


def test_a_mask_of_another_size_is_refused_naming_the_item(tmp_path):
    session = ReviewSession(make_folder(tmp_path / "data"), tmp_path / "ds")
    session.image(0)
    with pytest.raises(UserError, match=r"im1.png is 18×22"):
        session.commit(1, np.zeros((16, 20), np.uint8), "accepted")  # never read: read to check
    record = session.commit(1, np.zeros((18, 22), np.uint8), "accepted")
    assert record.status == "accepted"


# -- item 2: a prediction belongs to one network choice ------------------------------------
def test_a_network_switch_drops_the_old_networks_predictions_and_scores(tmp_path):
    session = ReviewSession(make_folder(tmp_path / "data"), tmp_path / "ds")
    ea_dk, micro = ModelChoice.of("ea-dk", None), ModelChoice.of("microaunet", None)
    session.use_model(ea_dk)
    for i in (0, 2):
        assert session.remember(i, prediction_of(ea_dk))
    assert session.to_predict([0, 1, 2]) == [1]
    assert session.table_row(0)["network"].startswith("ea-dk") and session.table_row(0)["dice"] is not None
    assert session.use_model(micro) == [0, 2]
    assert session.prediction(0) is None and session.to_predict([0, 1, 2]) == [0, 1, 2]
    assert session.table_row(0)["dice"] is None and session.table_row(0)["network"] == ""
    assert session.uncertainty == {}
    assert not session.remember(0, prediction_of(ea_dk))  # a late result of the old network: refused
    assert session.remember(0, prediction_of(micro))
    record = session.commit(0, session.prediction(0).mask(0.5), "accepted", basis=session.prediction(0))
    assert record.model == "microaunet" and record.status == "accepted"
    assert session.table_row(0)["network"] == "microaunet"  # saved items name theirs too


@pytest.mark.parametrize("change", [dict(tta=True), dict(checkpoint="other")])
def test_tta_or_checkpoint_is_part_of_the_choice(tmp_path, change):
    (tmp_path / "other").write_bytes(b"weights")
    change = {k: (str(tmp_path / v) if k == "checkpoint" else v) for k, v in change.items()}
    session = ReviewSession(make_folder(tmp_path / "data"), tmp_path / "ds")
    plain = ModelChoice.of("ea-dk", None)
    session.use_model(plain)
    session.remember(0, prediction_of(plain))
    assert session.use_model(ModelChoice.of("ea-dk", **{"checkpoint": None, **change})) == [0]


def test_a_checkpoint_rewritten_in_place_is_another_choice(tmp_path):
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"one")
    before = ModelChoice.of("ea-dk", weights)
    weights.write_bytes(b"fine-tuned")
    assert ModelChoice.of("ea-dk", weights) != before


# -- item 3: a threshold move is not an edit -----------------------------------------------
def test_accept_after_a_threshold_move_is_accepted_with_nothing_changed(tmp_path):
    session = ReviewSession(make_folder(tmp_path / "data"), tmp_path / "ds")
    choice = ModelChoice.of("ea-dk", None)
    session.use_model(choice)
    session.remember(0, prediction_of(choice))
    dice_at_half = session.table_row(0)["dice"]
    assert session.use_threshold(0.8) == [0]
    assert session.table_row(0)["dice"] != dice_at_half  # the table follows the threshold
    shown = session.prediction(0).mask(0.8)  # what the screen shows after the move
    record = session.commit(0, shown, "accepted", basis=session.prediction(0), threshold=0.8)
    assert record.status == "accepted" and record.pixels_changed == 0 and record.threshold == 0.8
    line = manifest(tmp_path / "ds")[-1]
    assert line["status"] == "accepted" and line["pixels_changed"] == 0 and line["model"] == "ea-dk"


def test_an_edit_after_a_threshold_move_is_still_a_correction(tmp_path):
    session = ReviewSession(make_folder(tmp_path / "data"), tmp_path / "ds")
    choice = ModelChoice.of("ea-dk", None)
    session.use_model(choice)
    session.remember(0, prediction_of(choice))
    session.use_threshold(0.8)
    edited = session.prediction(0).mask(0.8)
    edited[0, :3] = 1 - edited[0, :3]
    record = session.commit(0, edited, "accepted", basis=session.prediction(0))
    assert record.status == "corrected" and record.pixels_changed == 3


def test_reopened_saved_mask_keeps_its_record_provenance(tmp_path):
    session = ReviewSession(make_folder(tmp_path / "data"), tmp_path / "ds")
    choice = ModelChoice.of("ea-dk", None)
    session.use_model(choice)
    session.remember(0, prediction_of(choice))
    session.commit(0, session.prediction(0).mask(0.5), "accepted", basis=session.prediction(0))
    session.use_model(ModelChoice.of("microaunet", None))  # another network later: the saved item is untouched
    again = session.commit(0, session.saved_mask(0), "accepted")
    assert again.status == "accepted" and again.model == "ea-dk" and again.threshold == 0.5


def test_worst_dice_first_sorts_rejected_items_by_their_dice(tmp_path):
    session = ReviewSession(make_folder(tmp_path / "data", sizes=((16, 20),) * 3), tmp_path / "ds")
    square = np.zeros((16, 20), np.uint8)
    square[4:12, 4:12] = 1
    session.score(0, prediction=square)  # Dice 1
    session.score(1, prediction=np.roll(square, 4, axis=1))  # 0.5
    session.save(2, None, np.zeros((16, 20), np.uint8), status="rejected", predicted=np.zeros((16, 20), np.uint8))
    session.score(2, prediction=np.zeros((16, 20), np.uint8))  # Dice 0: the worst, rejected or not
    assert session.worst_first() == [2, 1, 0]
