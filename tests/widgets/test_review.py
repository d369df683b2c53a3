"""The review flow end to end in a real viewer: open a folder of 3 images, predict,
paint a change, save, go next, reopen: the saved mask, status and note come back."""
import json

import numpy as np
import pytest
from PIL import Image

from napari_polyp.corrections import CorrectionsDataset
from napari_polyp.widgets.review import REFERENCE_LAYER, ReviewWidget


@pytest.fixture
def image_folder(tmp_path):
    """DIR/images with 3 images and DIR/masks with their reference masks."""
    rng = np.random.default_rng(0)
    (tmp_path / "data" / "images").mkdir(parents=True)
    (tmp_path / "data" / "masks").mkdir()
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (64, 72, 3), dtype=np.uint8)).save(
            tmp_path / "data" / "images" / f"img{i}.png")
        reference = np.zeros((64, 72), np.uint8)
        reference[10:40, 20:50] = 255
        Image.fromarray(reference).save(tmp_path / "data" / "masks" / f"img{i}.png")
    return tmp_path / "data" / "images"


def make_widget(viewer, answers=None):
    asked = []

    def ask_unsaved(name):
        asked.append(name)
        return answers.pop(0) if answers else "discard"

    widget = ReviewWidget(viewer, ask_unsaved=ask_unsaved)
    widget.model_combo.setCurrentText("microaunet")
    widget.select_random_weights()  # tiny random-weight network: fast, no weights needed
    widget.asked = asked
    return widget


def wait_idle(qtbot, widget):
    qtbot.waitUntil(lambda: not widget.busy and widget.labels_layer() is not None, timeout=120_000)
    assert widget.last_error is None, widget.last_error


def press(viewer, key):
    """What napari does on a key press in the canvas: the viewer's bindings, then its class's
    (where napari's actions, ours included, are bound)."""
    from napari.utils.key_bindings import KeyBinding

    binding = KeyBinding.from_str(key)
    maps = [viewer.keymap] + [getattr(cls, "class_keymap", {}) for cls in type(viewer).__mro__]
    next(keymap[binding] for keymap in maps if binding in keymap)(viewer)


def test_review_flow_predict_paint_save_next_reopen(make_napari_viewer, qtbot, image_folder, tmp_path,
                                                    monkeypatch):
    monkeypatch.setenv("NAPARI_POLYP_REVIEWER", "tester")
    viewer = make_napari_viewer()
    widget = make_widget(viewer)
    dataset_dir = tmp_path / "corrections"
    assert not widget.set_dataset(dataset_dir)  # waits for the source
    assert widget.set_source(image_folder)
    assert widget.item_list.rowCount() == 3
    assert widget.progress_label.text() == "0 / 3 reviewed"
    assert widget.session.reference_dir == image_folder.parent / "masks"
    wait_idle(qtbot, widget)
    assert widget.current == 0
    labels = widget.labels_layer()
    assert labels.data.shape == (64, 72)
    assert labels.metadata["model"] == "microaunet" and labels.metadata["threshold"] == 0.5
    assert REFERENCE_LAYER in viewer.layers
    assert "prediction: Dice" in widget.scores_label.text()
    predicted = np.array(labels.data, copy=True)

    # paint a change into the mask, with a note
    painted = predicted.copy()
    painted[5:25, 5:25] = 1
    painted[40:60, 40:70] = 0
    labels.data_setitem(np.nonzero(painted != predicted), painted[painted != predicted])
    assert widget.is_dirty()
    widget.note_edit.setText("fixed the rim")
    record = widget.save("accepted")  # an edited mask is saved as a correction
    assert record.status == "corrected" and record.version == 1
    assert record.pixels_changed == int(np.count_nonzero(painted != predicted)) > 0
    assert widget.progress_label.text() == "1 / 3 reviewed"
    assert "corrected" in widget.item_list.item(0, 1).text()

    # "next after saving" moved on and ran the network on image 1
    wait_idle(qtbot, widget)
    assert widget.current == 1
    assert "Dice" in widget.scores_label.text() and "n=1" in widget.scores_label.text()

    # back (PageUp): the saved mask, status and note come back, no network run
    press(viewer, "PageUp")
    assert widget.current == 0 and not widget.busy
    np.testing.assert_array_equal(widget.labels_layer().data, painted)
    assert widget.note_edit.text() == "fixed the rim"
    assert "corrected" in widget.item_label.text()
    assert not widget.is_dirty()

    # on disk: the documented layout with provenance
    line = json.loads((dataset_dir / "manifest.jsonl").read_text().splitlines()[-1])
    assert line["stem"] == "img0" and line["status"] == "corrected" and line["reviewer"] == "tester"
    assert line["model"] == "microaunet" and line["threshold"] == 0.5 and line["checkpoint_sha256"] == ""
    assert line["source_path"] == str(image_folder / "img0.png") and line["note"] == "fixed the rim"
    saved = np.asarray(Image.open(dataset_dir / "masks" / "img0.png"))
    np.testing.assert_array_equal(saved, painted * 255)
    np.testing.assert_array_equal(CorrectionsDataset(dataset_dir).load_prediction("img0"), predicted)

    # a new session (another day) shows the same: status, progress, saved mask
    widget2 = make_widget(make_napari_viewer())
    widget2.set_dataset(dataset_dir)
    widget2.set_source(image_folder)
    assert widget2.progress_label.text() == "1 / 3 reviewed"
    assert widget2.current == 0 and not widget2.busy
    np.testing.assert_array_equal(widget2.labels_layer().data, painted)


def test_next_previous_keys_filter_unsaved_edits_and_reject(make_napari_viewer, qtbot, image_folder, tmp_path):
    viewer = make_napari_viewer()
    widget = make_widget(viewer, answers=["cancel", "save"])
    widget.set_dataset(tmp_path / "ds")
    widget.set_source(image_folder)
    wait_idle(qtbot, widget)

    press(viewer, "PageDown")  # next
    wait_idle(qtbot, widget)
    assert widget.current == 1

    # an unsaved edit: "cancel" stays on the item, "save" saves it as corrected then moves on
    labels = widget.labels_layer()
    labels.data_setitem((np.array([0, 1]), np.array([0, 0])), 1 - labels.data[0:2, 0])
    assert not widget.next() and widget.current == 1
    assert widget.next() and widget.current == 2
    assert widget.asked == ["img1.png", "img1.png"]
    assert widget.session.status(1) == "corrected"
    wait_idle(qtbot, widget)

    record = widget.save("rejected")
    assert record.status == "rejected" and widget.current == 2  # no next item to go to
    assert widget.progress_label.text() == "2 / 3 reviewed"

    widget.unreviewed_check.setChecked(True)
    assert [widget.item_list.item(r, 0).text() for r in range(widget.item_list.rowCount())] == ["img0.png"]
    assert widget.previous()  # skips reviewed items
    wait_idle(qtbot, widget)
    assert widget.current == 0
    widget.save("accepted")
    assert widget.session.status(0) == "accepted"
    assert widget.progress_label.text() == "3 / 3 reviewed"
    assert widget.item_list.rowCount() == 0


def test_the_previous_mask_is_locked_while_the_next_item_is_predicted(make_napari_viewer, qtbot, image_folder,
                                                                      tmp_path):
    """Moving on, the mask layer still holds the item before until the network answers: a stroke
    there would be lost when the prediction lands, so it is hidden and not editable meanwhile,
    and comes back with the annotator's tool."""
    viewer = make_napari_viewer()
    widget = make_widget(viewer)
    widget.set_dataset(tmp_path / "corrections")
    widget.set_source(image_folder)
    wait_idle(qtbot, widget)
    labels = widget.labels_layer()
    labels.mode = "paint"
    assert widget.open_item(1, confirm=False) and widget.busy
    held = widget.labels_layer()
    assert not held.editable and not held.visible
    wait_idle(qtbot, widget)
    shown = widget.labels_layer()
    assert shown.editable and shown.visible and shown.mode == "paint"


def test_a_source_that_cannot_be_opened_leaves_the_open_review_as_it_was(make_napari_viewer, qtbot, image_folder,
                                                                         tmp_path):
    """A truncated video chosen over an open review: one message, and the review on screen keeps
    its table, image, folders and saving (before, the old table stayed under the new path and
    Accept said to choose a corrections folder)."""
    viewer = make_napari_viewer()
    widget = make_widget(viewer)
    widget.set_dataset(tmp_path / "corrections")
    widget.set_source(image_folder)
    wait_idle(qtbot, widget)
    broken = tmp_path / "clip.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 64)  # a video cut off after its header
    assert not widget.set_source(broken)
    assert "clip.mp4" in widget.last_error
    assert "the review of images stays open" in widget.status_label.text()
    assert widget.source_path == image_folder and widget.source_edit.text() == str(image_folder)
    assert widget.item_list.rowCount() == 3 and widget.current == 0
    record = widget.save("accepted")
    assert record is not None and record.stem == "img0"


def test_an_item_whose_prediction_was_kept_compressed_is_predicted_again_when_opened(make_napari_viewer, qtbot,
                                                                                        image_folder, tmp_path):
    """Only the last predictions are kept whole (corrections/_kept_predictions.py): going back past
    them opens the item by predicting it again, even with "predict on open" off, never with the
    message that it was not predicted."""
    viewer = make_napari_viewer()
    widget = make_widget(viewer)
    widget.set_dataset(tmp_path / "corrections")
    widget.set_source(image_folder)
    widget.session._predictions.keep_whole = 1
    wait_idle(qtbot, widget)
    first = np.array(widget.labels_layer().data, copy=True)
    for _ in range(2):
        widget.next()
        wait_idle(qtbot, widget)
    assert widget.current == 2 and widget.session.prediction(0) is None and widget.session.was_predicted(0)
    widget.auto_check.setChecked(False)
    widget.previous()
    widget.previous()
    wait_idle(qtbot, widget)
    assert widget.current == 0 and "not predicted" not in widget.status_label.text()
    assert widget.session.prediction(0) is not None  # whole again, maps and all
    assert widget.labels_layer().data.shape == first.shape  # (random weights: not the same mask twice)


def test_the_next_item_is_predicted_while_this_one_is_worked_on(make_napari_viewer, qtbot, image_folder, tmp_path):
    """Look-ahead: once the open item's mask is shown, the item Next would open is predicted in
    the background, so that Next shows its mask without running the network; not with "predict" off."""
    viewer = make_napari_viewer()
    widget = make_widget(viewer)
    widget.set_dataset(tmp_path / "corrections")
    widget.set_source(image_folder)
    wait_idle(qtbot, widget)
    qtbot.waitUntil(lambda: widget._look_ahead is None and widget.session.was_predicted(1), timeout=120_000)
    assert not widget.session.was_predicted(2)  # one item ahead, no more
    widget.next()
    assert widget.current == 1 and not widget.busy  # shown at once: no network run for it
    assert widget.labels_layer().data.shape == (64, 72)
    qtbot.waitUntil(lambda: widget._look_ahead is None and widget.session.was_predicted(2), timeout=120_000)

    widget.auto_check.setChecked(False)
    widget.session.forget(2)
    widget.previous()
    wait_idle(qtbot, widget)
    assert widget._look_ahead is None and not widget.session.was_predicted(2)
