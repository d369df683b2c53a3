"""Issue 24 in a real napari window, the Workspace docked through napari's plugin path: what a
long session broke. Each test failed before the change it names."""
import json

import numpy as np
import pytest
from PIL import Image
from qtpy.QtCore import Qt

from napari_polyp.inference.prediction import Prediction

WAIT_MS = 60_000
RADIUS = {"ea-dk": 6.0, "microaunet": 11.0, "pefnet": 8.0}  # each network draws its own disk


class DiskPredictor:
    """No network: a soft disk whose radius is the network's (so a mask tells which one made it)."""

    def __init__(self, model_name="fake"):
        self.model_name = model_name
        self.checkpoint_sha256 = "cd" * 32
        self.calls = 0
        self.tta = False

    def predict(self, image, attention=True):
        self.calls += 1
        h, w = image.shape[:2]
        yy, xx = np.mgrid[:h, :w]
        distance = np.hypot(yy - h / 2, xx - w / 2)
        probability = np.clip(1.0 - distance / (2 * RADIUS.get(self.model_name, 7.0)), 0, 1).astype(np.float32)
        return Prediction(probability, {"lscab_spatial": probability}, self.model_name, self.checkpoint_sha256, 0.0)


class Factory:
    def __init__(self):
        self.built = {}

    def __call__(self, model_name, *args, **kwargs):
        return self.built.setdefault(model_name, DiskPredictor(model_name))

    def calls(self, model_name):
        return self.built[model_name].calls if model_name in self.built else 0


def expected_mask(model_name, shape, threshold=0.5):
    image = np.zeros(shape + (3,), np.uint8)
    return (DiskPredictor(model_name).predict(image).probability >= threshold).astype(np.uint8)


@pytest.fixture
def folder(tmp_path):
    """DIR/images: a.png 40×44, b_truncated.jpg (cut short), c.png 48×52, d.png 36×40; DIR/masks."""
    images, masks = tmp_path / "data" / "images", tmp_path / "data" / "masks"
    images.mkdir(parents=True)
    masks.mkdir()
    rng = np.random.default_rng(3)
    for name, (h, w) in (("a.png", (40, 44)), ("b_truncated.jpg", (42, 46)), ("c.png", (48, 52)),
                         ("d.png", (36, 40))):
        Image.fromarray(rng.integers(30, 200, (h, w, 3), dtype=np.uint8)).save(images / name)
        reference = np.zeros((h, w), np.uint8)
        reference[h // 2 - 6:h // 2 + 6, w // 2 - 6:w // 2 + 6] = 255
        Image.fromarray(reference).save(masks / (name.rsplit(".", 1)[0] + ".png"))
    data = (images / "b_truncated.jpg").read_bytes()
    (images / "b_truncated.jpg").write_bytes(data[: len(data) // 2])
    return images


def dock(viewer, factory):
    _, workspace = viewer.window.add_plugin_dock_widget("napari-polyp", "Workspace")
    workspace.segment.predictor_factory = factory
    workspace.segment.tta_check.setChecked(False)
    workspace.segment._tta_set_by_user = True  # as after a click: a network switch leaves it off
    workspace.segment.second_check.setChecked(False)  # the second opinion too (its own test below)
    workspace.segment._second_set_by_user = True
    return workspace


def press(viewer, key):
    """What napari does on a key press in the canvas (our keys are napari actions)."""
    from napari.utils.key_bindings import KeyBinding

    binding = KeyBinding.from_str(key)
    maps = [viewer.keymap] + [getattr(cls, "class_keymap", {}) for cls in type(viewer).__mro__]
    next(keymap[binding] for keymap in maps if binding in keymap)(viewer)


def idle(qtbot, review):
    qtbot.wait(10)  # the deferred handling of a network change
    qtbot.waitUntil(lambda: not review.busy and review._batch is None and review.labels_layer() is not None,
                    timeout=WAIT_MS)


def records(root):
    path = root / "manifest.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def start(viewer, folder, tmp_path, factory=None):
    factory = factory or Factory()
    workspace = dock(viewer, factory)
    review = workspace.review
    review.set_dataset(tmp_path / "corrections")
    review.set_source(folder)
    return workspace, review, factory


def open_and_edit(viewer, qtbot, folder, tmp_path, pixels):
    """Review of ``folder`` with ``pixels`` pixels of the first item's mask painted: (review, the mask as edited)."""
    _, review, _ = start(viewer, folder, tmp_path)
    idle(qtbot, review)
    labels = review.labels_layer()
    labels.data_setitem((np.arange(pixels), np.arange(pixels)), np.ones(pixels, np.uint8))
    return review, np.array(labels.data)


def row_texts(review, index):
    row = review.item_list.row_of(index)
    return [review.item_list.item(row, c).text() for c in range(review.item_list.columnCount())]


# -- item 1 ------------------------------------------------------------------------------------
def test_an_unreadable_item_is_skipped_marked_and_never_saved(make_napari_viewer, qtbot, folder, tmp_path):
    viewer = make_napari_viewer()
    workspace, review, _ = start(viewer, folder, tmp_path)
    idle(qtbot, review)
    assert review.current == 0
    press(viewer, "N")  # b_truncated.jpg cannot be read: N goes on to c.png
    idle(qtbot, review)
    assert review.current == 2 and review.image_layer().data.shape[:2] == (48, 52)
    assert "unreadable" in row_texts(review, 1)[1] and "1 unreadable" in review.progress_label.text()
    assert "skipped b_truncated.jpg: cannot be read" in review.item_label.text()
    assert review.open_item(1) is False and review.current == 2  # a click on its row: nothing changes
    assert review.item_label.text().startswith("3 / 4: c.png")
    press(viewer, "Shift-N")  # back, past it again
    idle(qtbot, review)
    assert review.current == 0
    for _ in range(3):
        press(viewer, "A")
        idle(qtbot, review)
    saved = records(tmp_path / "corrections")
    assert [r["stem"] for r in saved] == ["a", "c", "d"]
    for record in saved:  # every mask has its own image's size
        mask = np.asarray(Image.open(tmp_path / "corrections" / record["mask"]))
        image = np.asarray(Image.open(folder / Path_name(record["source_path"])))
        assert mask.shape == image.shape[:2]


def test_an_item_the_look_ahead_found_unreadable_is_marked_and_said_when_passed(make_napari_viewer, qtbot, folder,
                                                                                 tmp_path):
    """While a.png is open the look-ahead reads b_truncated.jpg and fails: its row says so at once,
    and Next, passing it over, says which file it skipped (it went by in silence)."""
    viewer = make_napari_viewer()
    workspace, review, _ = start(viewer, folder, tmp_path)
    idle(qtbot, review)
    qtbot.waitUntil(lambda: review._look_ahead is None and not review.session.is_readable(1), timeout=WAIT_MS)
    assert "unreadable" in row_texts(review, 1)[1] and "1 unreadable" in review.progress_label.text()
    press(viewer, "N")
    idle(qtbot, review)
    assert review.current == 2 and "skipped b_truncated.jpg: cannot be read" in review.item_label.text()


def Path_name(path):  # noqa: N802 -- a tiny helper for the line above
    from pathlib import Path

    return Path(path).name


# -- item 2 ------------------------------------------------------------------------------------
def test_a_network_switch_predicts_again_and_saves_the_new_networks_mask(make_napari_viewer, qtbot, folder,
                                                                         tmp_path):
    viewer = make_napari_viewer()
    workspace, review, factory = start(viewer, folder, tmp_path)
    segment = workspace.segment
    segment.model_combo.setCurrentText("ea-dk")
    idle(qtbot, review)
    review.run_on_all()
    idle(qtbot, review)
    assert row_texts(review, 2)[2] == "ea-dk"
    first_dice = row_texts(review, 2)[3]
    segment.model_combo.setCurrentText("microaunet")
    idle(qtbot, review)  # the open item follows the Model tab at once
    assert review.mask_origin().startswith("microaunet") and "microaunet" in review.item_label.text()
    np.testing.assert_array_equal(review.labels_layer().data, expected_mask("microaunet", (40, 44)))
    assert row_texts(review, 2)[2] == "" and row_texts(review, 2)[3] == ""  # EA-DK's Dice is gone
    review.run_on_all()  # not "every unreviewed item is predicted already"
    idle(qtbot, review)
    assert factory.calls("microaunet") == 3 and row_texts(review, 2)[2] == "microaunet"
    assert row_texts(review, 2)[3] != first_dice
    press(viewer, "N")
    idle(qtbot, review)
    assert review.current == 2
    np.testing.assert_array_equal(review.labels_layer().data, expected_mask("microaunet", (48, 52)))
    press(viewer, "A")
    record = records(tmp_path / "corrections")[-1]
    assert record["stem"] == "c" and record["model"] == "microaunet" and record["status"] == "accepted"
    saved = np.asarray(Image.open(tmp_path / "corrections" / record["mask"])) > 0
    np.testing.assert_array_equal(saved, expected_mask("microaunet", (48, 52)) > 0)
    assert row_texts(review, 2)[2] == "microaunet"  # a saved item names its network too


def test_tta_is_part_of_what_a_prediction_belongs_to(make_napari_viewer, qtbot, folder, tmp_path):
    viewer = make_napari_viewer()
    workspace, review, factory = start(viewer, folder, tmp_path)
    idle(qtbot, review)
    assert "+TTA" not in review.mask_origin()
    workspace.segment.tta_check.setChecked(True)
    idle(qtbot, review)
    assert review.mask_origin().endswith("+TTA")
    press(viewer, "A")
    assert records(tmp_path / "corrections")[-1]["status"] == "accepted"


class ElsewherePredictor(DiskPredictor):
    """The checking network's fake: a disk in the image's top-left corner, nowhere near the others'."""

    def predict(self, image, attention=True):
        self.calls += 1
        h, w = image.shape[:2]
        yy, xx = np.mgrid[:h, :w]
        probability = np.clip(1.0 - np.hypot(yy - 8, xx - 8) / 12, 0, 1).astype(np.float32)
        return Prediction(probability, {}, self.model_name, self.checkpoint_sha256, 0.0)


def test_review_follows_the_second_opinion_of_the_model_tab(make_napari_viewer, qtbot, folder, tmp_path):
    import models

    second = models.second_opinion_for("ea-dk")
    factory = Factory()
    factory.built[second] = ElsewherePredictor(second)
    viewer = make_napari_viewer()
    workspace, review, _ = start(viewer, folder, tmp_path, factory)
    workspace.segment.model_combo.setCurrentText("ea-dk")
    idle(qtbot, review)
    np.testing.assert_array_equal(np.asarray(review.labels_layer().data), expected_mask("ea-dk", (40, 44)))
    assert factory.calls(second) == 0  # off: the checking network never ran
    workspace.segment.second_check.setChecked(True)
    idle(qtbot, review)
    assert review.mask_origin().endswith(f"checked by {second}")
    assert f"{second} overruled ea-dk" in review.status_label.text() and factory.calls(second) >= 1
    np.testing.assert_array_equal(np.asarray(review.labels_layer().data) > 0,
                                  factory.built[second].predict(np.zeros((40, 44, 3), np.uint8)).probability >= 0.5)


# -- item 3 ------------------------------------------------------------------------------------
def test_accept_after_a_threshold_move_is_accepted_not_corrected(make_napari_viewer, qtbot, folder, tmp_path):
    viewer = make_napari_viewer()
    workspace, review, _ = start(viewer, folder, tmp_path)
    idle(qtbot, review)
    dice_before = row_texts(review, 0)[3]
    workspace.segment.threshold_spin.setValue(0.7)
    mask = np.asarray(review.labels_layer().data)
    np.testing.assert_array_equal(mask, expected_mask(review.model_name(), (40, 44), 0.7))
    assert row_texts(review, 0)[3] != dice_before  # the table's Dice follows the threshold
    assert not review.is_dirty()  # leaving would not ask about edits
    press(viewer, "A")
    record = records(tmp_path / "corrections")[-1]
    assert record["status"] == "accepted" and record["pixels_changed"] == 0 and record["threshold"] == 0.7


def test_threshold_move_on_a_video_frame_free_image_from_the_model_tab(make_napari_viewer, qtbot, folder,
                                                                        tmp_path):
    """Segment's image choice on the Review image: Segment re-derives the mask; Accept is still accepted."""
    viewer = make_napari_viewer()
    workspace, review, _ = start(viewer, folder, tmp_path)
    idle(qtbot, review)
    workspace.segment.image_combo.setCurrentText("Review")
    workspace.segment.threshold_spin.setValue(0.3)
    press(viewer, "A")
    record = records(tmp_path / "corrections")[-1]
    assert record["status"] == "accepted" and record["pixels_changed"] == 0 and record["threshold"] == 0.3


def test_a_cancelled_threshold_move_leaves_review_at_the_masks_threshold(make_napari_viewer, qtbot, folder,
                                                                         tmp_path):
    """Segment asks about the edits, the answer is Cancel: the control goes back, and Review says so
    (it had said "mask re-derived at 0.20" and kept 0.20 for the table)."""
    from napari_polyp import layers as L

    viewer = make_napari_viewer()
    workspace, review, _ = start(viewer, folder, tmp_path)
    idle(qtbot, review)
    workspace.segment.image_combo.setCurrentText("Review")
    workspace.segment.ask_edits = lambda _found: L.CANCEL
    labels = review.labels_layer()
    labels.data_setitem((np.arange(4), np.arange(4)), np.ones(4, np.uint8))
    edited = np.array(labels.data)
    workspace.segment.threshold_spin.setValue(0.2)
    assert workspace.segment.threshold() == 0.5
    assert "unchanged" in review.status_label.text() and review.session.threshold == 0.5
    np.testing.assert_array_equal(review.labels_layer().data, edited)


# -- item 4 ------------------------------------------------------------------------------------
def test_clean_up_after_strokes_and_refine_acts_on_the_mask(make_napari_viewer, qtbot, folder, tmp_path):
    viewer = make_napari_viewer()
    workspace, review, _ = start(viewer, folder, tmp_path)
    idle(qtbot, review)
    workspace.draw_strokes()
    strokes = review.strokes_layer()
    strokes.data_setitem((np.array([20, 20]), np.array([22, 23])), np.array([1, 1], np.uint8))
    strokes.data_setitem((np.array([2, 2]), np.array([2, 3])), np.array([2, 2], np.uint8))
    review.refine()
    assert viewer.layers.selection.active.name == "Review strokes"
    cleanup = workspace.cleanup
    assert cleanup.labels_layer().name == "Review mask" and "Review mask" in cleanup.status_label.text()
    mask = review.labels_layer()
    mask.data_setitem((np.array([1, 1]), np.array([1, 2])), np.array([1, 1], np.uint8))  # a speck to remove
    reference_before = np.array(viewer.layers["Review reference"].data)
    before = np.array(mask.data)
    assert cleanup.run_action("Keep largest") == 2
    assert np.count_nonzero(np.asarray(mask.data) != before) == 2
    assert "Review mask" in cleanup.status_label.text()
    cleanup.undo()
    np.testing.assert_array_equal(mask.data, before)  # Undo acts on the mask too
    assert reference_before.shape == viewer.layers["Review reference"].data.shape


# -- item 7 ------------------------------------------------------------------------------------
def test_keys_work_after_a_click_in_the_table_or_a_drop_down(make_napari_viewer, qtbot, folder, tmp_path):
    from qtpy.QtWidgets import QApplication

    viewer = make_napari_viewer(show=True)
    workspace, review, _ = start(viewer, folder, tmp_path)
    idle(qtbot, review)
    window = viewer.window._qt_window
    window.activateWindow()
    QApplication.setActiveWindow(window)

    def key_into(widget, key, modifier=Qt.NoModifier):
        widget.setFocus()
        qtbot.waitUntil(lambda: QApplication.focusWidget() is widget, timeout=5000)
        qtbot.keyClick(widget, key, modifier)

    table = review.item_list
    table.selectRow(table.row_of(0))
    key_into(table, Qt.Key_A)  # the table's letter search used to take it
    idle(qtbot, review)
    assert [r["stem"] for r in records(tmp_path / "corrections")] == ["a"] and review.current == 2
    key_into(review.order_combo, Qt.Key_N)  # a drop-down
    idle(qtbot, review)
    assert review.current == 3 and review.order_combo.currentText() == "folder order"
    key_into(table, Qt.Key_PageUp)
    idle(qtbot, review)
    assert review.current == 2
    key_into(workspace.segment.model_combo, Qt.Key_R, Qt.ShiftModifier)  # reject, from the Model tab's drop-down
    idle(qtbot, review)
    assert records(tmp_path / "corrections")[-1]["status"] == "rejected"
    before = len(records(tmp_path / "corrections"))
    key_into(review.note_edit, Qt.Key_A)  # text: a letter, not a key
    assert review.note_edit.text() == "a" and len(records(tmp_path / "corrections")) == before
    key_into(workspace.segment.threshold_spin, Qt.Key_A)
    assert len(records(tmp_path / "corrections")) == before


# -- item 8 ------------------------------------------------------------------------------------
@pytest.mark.parametrize("screen, least_canvas", [((1366, 768), 520), ((1024, 768), 500)])
def test_the_window_fits_the_screen_and_no_tab_is_cut(make_napari_viewer, qtbot, screen, least_canvas):
    from qtpy.QtCore import QRect

    from napari_polyp.app import fit_window

    viewer = make_napari_viewer(show=True)
    long_name = "cju0qkwl35piu0993l0dewei2"  # a Kvasir-SEG file name: a label cannot wrap inside it
    viewer.add_image(np.zeros((300, 400, 3), np.uint8), name=long_name, rgb=True)
    dock_widget, workspace = viewer.window.add_plugin_dock_widget("napari-polyp", "Workspace")
    workspace.segment.task_question.ask(long_name, {})  # "What does NAME show? [Colonoscopy] [Dermoscopy]"
    fit_window(viewer, dock_widget, QRect(0, 0, *screen))
    qtbot.wait(200)
    window = viewer.window._qt_window
    assert window.width() <= screen[0] and window.height() <= screen[1]
    status = window.statusBar()
    assert status.mapTo(window, status.rect().bottomLeft()).y() < screen[1]  # the status bar is on screen
    canvas = viewer.window._qt_viewer.canvas.native
    assert canvas.isVisible() and canvas.width() >= least_canvas  # 207 px at 1024×768 before
    assert dock_widget.isVisible() and not dock_widget.visibleRegion().isEmpty()
    for index in range(workspace.tabs.count()):
        workspace.tabs.setCurrentIndex(index)
        qtbot.wait(20)
        page = workspace.tabs.widget(index)
        content = page.widget() if hasattr(page, "setWidgetResizable") else page
        assert content.minimumSizeHint().width() <= page.width(), workspace.tabs.tabText(index)
        assert content.width() <= page.width()  # no part of the tab hidden to the right
    # a fine-tune's result: a long checkpoint file name (it cannot wrap) and the claim's words
    workspace.finetune._show_result({
        "claim": True, "before": {"dice": 0.8842, "n": 7}, "after": {"dice": 0.8948, "n": 7},
        "validation": {"gain": {"mean": 0.011, "low": -0.019, "high": 0.041, "n": 7, "level": 0.95, "groups": 0}},
        "checkpoint": "/home/u/.cache/napari-polyp/checkpoints/ea-dk-finetuned-20261208-024952-473981-14604.pt",
        "preferred": False, "reason": "its gain is not shown", "model": "ea-dk"})
    qtbot.wait(20)
    for index in range(workspace.tabs.count()):
        page = workspace.tabs.widget(index)
        content = page.widget() if hasattr(page, "setWidgetResizable") else page
        assert content.minimumSizeHint().width() <= page.width(), workspace.tabs.tabText(index)
    assert workspace.finetune.status_label.wordWrap() and workspace.finetune.data_label.wordWrap()
    assert workspace.review.item_label.wordWrap() and workspace.review.status_label.wordWrap()


# -- item 9 ------------------------------------------------------------------------------------
def test_fine_tune_follows_the_model_tab_and_its_data_line_is_never_stale(make_napari_viewer, qtbot, folder,
                                                                           tmp_path):
    viewer = make_napari_viewer()
    workspace, review, _ = start(viewer, folder, tmp_path)
    finetune, segment = workspace.finetune, workspace.segment
    idle(qtbot, review)
    assert finetune.data_label.text().startswith("⚠")  # nothing saved yet
    press(viewer, "A")
    assert finetune.data_label.text() == "1 accepted/corrected items"  # not the old error
    segment.model_combo.setCurrentText("microaunet")
    assert finetune.job()["model"] == "microaunet" and "microaunet" in finetune.follows_label.text()
    assert finetune.job()["checkpoint"] == (segment.checkpoint() or None)
    assert not finetune.model_combo.isVisible()  # one network choice, the Model tab's


# -- item 13: the small ones ---------------------------------------------------------------------
class SlowPredictor(DiskPredictor):
    def predict(self, image, attention=True):
        import time

        time.sleep(0.5)
        return super().predict(image, attention)


def test_the_status_does_not_say_running_after_the_image_is_deleted_mid_run(make_napari_viewer, qtbot, folder,
                                                                            tmp_path):
    viewer = make_napari_viewer()
    workspace, review, _ = start(viewer, folder, tmp_path, factory=lambda *a, **k: SlowPredictor())
    assert review.busy and review.status_label.text().startswith("running")
    viewer.layers.remove("Review")
    qtbot.waitUntil(lambda: not review.busy, timeout=WAIT_MS)
    assert not review.status_label.text().startswith("running")


def test_a_video_gets_a_frame_axis_live_starts_at_frame_0_and_tta_is_off_for_all_frames(make_napari_viewer):
    viewer = make_napari_viewer()
    _, segment = viewer.window.add_plugin_dock_widget("napari-polyp", "Segment")
    segment.model_combo.setCurrentText("microaunet")  # a network TTA fits for
    assert segment.tta_check.isChecked()
    viewer.add_image(np.zeros((6, 20, 24, 3), np.uint8), rgb=True, name="clip")
    assert viewer.dims.axis_labels[0] == "frame"
    segment.image_combo.setCurrentText("clip")
    segment.scope_combo.setCurrentText("all frames")
    assert not segment.tta_check.isChecked()  # 3× the time over a whole video
    segment.scope_combo.setCurrentText("current frame")
    assert segment.tta_check.isChecked()
    viewer.dims.set_point(0, 4)
    started = {}
    segment._start = lambda function, job, **kwargs: started.update(job)
    segment.start_live()
    assert started["first"] == 0


# -- item 10 -----------------------------------------------------------------------------------
def test_an_image_from_disk_is_asked_about_once_per_folder(make_napari_viewer, qtbot, tmp_path, monkeypatch):
    from napari_polyp.widgets import _common

    monkeypatch.setattr(_common, "_TASK_ANSWERS", {})
    warnings = []
    monkeypatch.setattr("napari.utils.notifications.show_warning", warnings.append)
    skin = tmp_path / "skin"
    skin.mkdir()
    for name in ("a.png", "b.png"):
        Image.fromarray(np.full((40, 44, 3), 150, np.uint8)).save(skin / name)
    viewer = make_napari_viewer()
    workspace = dock(viewer, Factory())
    segment = workspace.segment
    viewer.open(str(skin / "a.png"), plugin="napari-polyp")
    segment.model_combo.setCurrentText("ea-dk")
    segment.run()
    assert not segment.task_question.isHidden() and "a" in segment.task_question.label.text()
    assert warnings == []  # nothing known, nothing claimed
    qtbot.waitUntil(lambda: not segment.busy, timeout=WAIT_MS)
    segment.task_question.buttons["skin"].click()
    assert segment.task_question.isHidden() and segment.model_combo.currentText() == "eam-net"
    qtbot.waitUntil(lambda: not segment.busy and viewer.layers["a mask"].metadata.get("model") == "eam-net",
                    timeout=WAIT_MS)  # the answer's network ran on the image: ea-dk's mask is not left
    viewer.open(str(skin / "b.png"), plugin="napari-polyp")  # the same folder: not asked again
    segment.image_combo.setCurrentText("b")
    segment.model_combo.setCurrentText("ea-dk")
    segment.run()
    assert segment.task_question.isHidden() and len(warnings) == 1 and "dermoscopy" in warnings[0]


# -- item 6 (until crashes are gone for good) ----------------------------------------------------
def test_an_edited_mask_survives_a_crash_as_a_draft(make_napari_viewer, qtbot, folder, tmp_path):
    review, edited = open_and_edit(make_napari_viewer(), qtbot, folder, tmp_path, pixels=5)
    assert review._draft_timer.isActive()  # written a few seconds after the edit
    assert review.write_draft()
    drafts = tmp_path / "corrections" / "drafts"
    assert [p.name for p in drafts.iterdir()] == ["a.png"]

    # the window is gone without a save (a crash); the next session offers the draft back
    other = make_napari_viewer()
    workspace2, review2, _ = start(other, folder, tmp_path)
    idle(qtbot, review2)
    assert not review2.draft_offer.isHidden() and "5 pixels" in review2.draft_offer.label.text()
    review2.draft_offer.buttons["Restore"].click()
    np.testing.assert_array_equal(review2.labels_layer().data, edited)
    assert review2.is_dirty()
    review2.save("accepted")
    assert records(tmp_path / "corrections")[-1]["status"] == "corrected"
    assert not (drafts / "a.png").exists()  # saved: the draft is gone


def test_a_save_cut_short_before_its_record_is_offered_back_not_overwritten(make_napari_viewer, qtbot, folder,
                                                                            tmp_path):
    """The manifest's last line torn (a save killed while writing it): the item's mask file is in
    masks/ with no record. Review offers it back, and accepting the network's mask keeps it."""
    review, corrected = open_and_edit(make_napari_viewer(), qtbot, folder, tmp_path, pixels=7)
    review.save("corrected")
    manifest = tmp_path / "corrections" / "manifest.jsonl"
    manifest.write_bytes(manifest.read_bytes()[:-30])

    other = make_napari_viewer()
    _, review2, _ = start(other, folder, tmp_path)
    idle(qtbot, review2)
    assert not review2.draft_offer.isHidden() and "cut short" in review2.draft_offer.label.text()
    assert "masks/a.png" in review2.draft_offer.label.text()
    review2.draft_offer.buttons["Discard"].click()  # the network's mask is wanted after all
    review2.save("accepted")
    kept = list((tmp_path / "corrections" / "history" / "a").glob("unconfirmed-*.png"))
    assert len(kept) == 1 and np.array_equal(np.asarray(Image.open(kept[0])) > 0, corrected > 0)

    third = make_napari_viewer()
    _, review3, _ = start(third, folder, tmp_path)
    idle(qtbot, review3)
    assert review3.draft_offer.isHidden()  # the record holds the file now: nothing to offer


def test_a_late_result_of_a_folder_left_is_not_shown_on_the_next_folder(make_napari_viewer, qtbot, folder,
                                                                         tmp_path):
    """A network still running on the folder left (its first run takes seconds) answers after the
    next folder's item has opened and started its own run: that answer is not the new item's."""
    import threading

    release, first = threading.Event(), threading.Event()

    class HeldOnce(Factory):
        def __call__(self, model_name, *args, **kwargs):
            predictor = super().__call__(model_name, *args, **kwargs)
            if model_name != "microaunet":
                return predictor
            plain = predictor.predict

            def predict(image, attention=True):
                if not first.is_set():  # the first call (the folder left) waits
                    first.set()
                    release.wait(30)
                return plain(image, attention)

            predictor.predict = predict
            return predictor

    other = tmp_path / "other"
    other.mkdir()
    Image.fromarray(np.full((70, 90, 3), 120, np.uint8)).save(other / "z.png")
    viewer = make_napari_viewer()
    workspace, review, _ = start(viewer, folder, tmp_path, HeldOnce())
    idle(qtbot, review)
    workspace.segment.model_combo.setCurrentText("microaunet")  # Review predicts the open item again
    qtbot.waitUntil(first.is_set, timeout=WAIT_MS)
    assert review.set_source(other)
    qtbot.waitUntil(lambda: review.labels_layer() is not None and review.labels_layer().data.shape == (70, 90),
                    timeout=WAIT_MS)
    release.set()
    qtbot.wait(300)
    qtbot.waitUntil(lambda: not review.busy, timeout=WAIT_MS)
    assert review.labels_layer().data.shape == (70, 90) and "⚠" not in review.status_label.text()
    assert review.session.prediction(0).probability.shape == (70, 90)


def test_a_second_network_on_the_same_image_is_not_reported_as_cancelled(make_napari_viewer, qtbot):
    """Its run replaces the first network's maps: that removal is the run's own, not the user's."""
    viewer = make_napari_viewer()
    _, segment = viewer.window.add_plugin_dock_widget("napari-polyp", "Segment")
    segment.predictor_factory = Factory()
    viewer.add_image(np.full((40, 44, 3), 120, np.uint8), name="img", rgb=True)
    for model in ("ea-dk", "microaunet"):
        segment.model_combo.setCurrentText(model)
        segment.run()
        qtbot.waitUntil(lambda: not segment.busy, timeout=WAIT_MS)
        assert segment.status_label.text().startswith("done"), segment.status_label.text()
    assert viewer.layers["img mask"].metadata["model"] == "microaunet"
