"""The workspace docked through napari's plugin path in a real viewer (pytest-xvfb):
keyboard review of a folder, the item table and its CSV, a 1366×768 screenshot."""
import csv
import json

import numpy as np
import pytest
from PIL import Image

from napari_polyp.inference import Prediction

WAIT_MS = 60_000


class DiskPredictor:
    """No network: a soft disk whose size depends on the image (so Dice differs per item)."""

    def __init__(self):
        self.model_name = "fake"
        self.checkpoint_sha256 = ""
        self.calls = 0

    def predict(self, image):
        self.calls += 1
        h, w = image.shape[:2]
        yy, xx = np.mgrid[:h, :w]
        radius = 6 + float(image[..., 0].mean()) / 25
        distance = np.hypot(yy - h / 2, xx - w / 2)
        probability = np.clip(1.2 - distance / radius, 0, 1).astype(np.float32)
        return Prediction(probability, {"lscab_spatial": probability}, "fake", "", 0.0)


@pytest.fixture
def folder(tmp_path):
    """DIR/images with 5 small images of two sizes, DIR/masks with their references."""
    images, masks = tmp_path / "data" / "images", tmp_path / "data" / "masks"
    images.mkdir(parents=True)
    masks.mkdir()
    rng = np.random.default_rng(1)
    for i in range(5):
        h, w = (48, 56) if i % 2 else (40, 40)
        image = rng.integers(40 + 20 * i, 90 + 20 * i, (h, w, 3), dtype=np.uint8)
        Image.fromarray(image).save(images / f"im{i}.png")
        reference = np.zeros((h, w), np.uint8)
        reference[h // 2 - 8:h // 2 + 8, w // 2 - 8:w // 2 + 8] = 255
        Image.fromarray(reference).save(masks / f"im{i}.png")
    return images


def dock(viewer, predictor):
    _, workspace = viewer.window.add_plugin_dock_widget("napari-polyp", "Workspace")
    workspace.segment.predictor_factory = lambda *args, **kwargs: predictor
    return workspace


def press(viewer, key):
    """What napari does on a key press in the canvas (our keys are napari actions)."""
    from napari.utils.key_bindings import KeyBinding

    binding = KeyBinding.from_str(key)
    maps = [viewer.keymap] + [getattr(cls, "class_keymap", {}) for cls in type(viewer).__mro__]
    next(keymap[binding] for keymap in maps if binding in keymap)(viewer)


def idle(qtbot, review):
    qtbot.waitUntil(lambda: not review.busy and review.labels_layer() is not None, timeout=WAIT_MS)


def test_keyboard_review_of_five_items_writes_five_records(make_napari_viewer, qtbot, folder, tmp_path):
    viewer = make_napari_viewer()
    predictor = DiskPredictor()
    workspace = dock(viewer, predictor)
    review = workspace.review
    assert review.model_name() == workspace.segment.model_combo.currentText()  # one model picker
    assert review.set_dataset(tmp_path / "corrections") is False and review.set_source(folder)
    assert review.item_list.rowCount() == 5 and "0 / 5 reviewed" == review.progress_label.text()
    for key in ("A", "A", "C", "Shift-R", "A"):
        idle(qtbot, review)
        if key == "C":  # a correction: paint a square first
            labels = review.labels_layer()
            labels.data_setitem((np.arange(3), np.arange(3)), np.ones(3, np.uint8))
        press(viewer, key)
    lines = (tmp_path / "corrections" / "manifest.jsonl").read_text().splitlines()
    statuses = [json.loads(line)["status"] for line in lines]
    assert statuses == ["accepted", "accepted", "corrected", "rejected", "accepted"]
    networks = 2 if workspace.segment.second_opinion() else 1  # the fake answers for the checking network too
    assert review.progress_label.text() == "5 / 5 reviewed" and predictor.calls == 5 * networks
    assert workspace.finetune.data_edit.text() == str(tmp_path / "corrections")  # Train follows Review
    press(viewer, "Shift-N")  # back to a saved item (through the dock's viewer proxy): its saved mask
    assert review.current == 3 and not review.busy
    np.testing.assert_array_equal(review.labels_layer().data, review.session.saved_mask(3))
    press(viewer, "Shift-N")
    assert review.current == 2 and review.labels_layer().data[:3, :3].trace() == 3  # the painted pixels

    # the table: Dice of every item, worst first, CSV; the rejected item is not a 0 in the means
    review.order_combo.setCurrentText("worst Dice first")
    rows = [(review.item_list.item(r, 1).text(), review.item_list.item(r, 3).text()) for r in range(5)]
    scored = [float(dice) for _status, dice in rows]
    assert scored == sorted(scored)  # by Dice, the rejected item's too
    network = review.item_list.item(0, 2).text()
    assert network == workspace.segment.model_combo.currentText()  # the table names the network, saved items too
    out = review.export_table(tmp_path / "table.csv")
    rows = list(csv.DictReader(open(out)))
    assert [r["status"] for r in rows] == statuses and all(r["dice"] for r in rows)
    assert review.session.running_means()["prediction"]["n"] == 4


def test_keys_previous_next_toggle_and_threshold_rederives(make_napari_viewer, qtbot, folder, tmp_path):
    viewer = make_napari_viewer()
    workspace = dock(viewer, DiskPredictor())
    review = workspace.review
    review.set_dataset(tmp_path / "c")
    review.set_source(folder)
    idle(qtbot, review)
    press(viewer, "N")
    idle(qtbot, review)
    assert review.current == 1
    press(viewer, "PageUp")
    idle(qtbot, review)
    assert review.current == 0
    before = int(review.labels_layer().data.sum())
    workspace.segment.threshold_spin.setValue(0.9)  # the one threshold: the mask follows at once
    assert 0 < int(review.labels_layer().data.sum()) < before
    press(viewer, "H")
    assert not review.labels_layer().visible
    press(viewer, "G")
    assert not viewer.layers["Review reference"].visible
    assert "accept" in review.keys_label.text() and "A" in review.status_buttons["accepted"].toolTip()


def test_h_without_a_review_item_shows_and_hides_the_model_tabs_mask(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    workspace = dock(viewer, DiskPredictor())
    press(viewer, "H")  # nothing anywhere: one message
    assert "no mask to show or hide" in workspace.review.last_error
    viewer.add_image(np.full((40, 40, 3), 90, np.uint8), name="loose", rgb=True)
    workspace.segment.image_combo.setCurrentText("loose")
    workspace.segment.run()
    qtbot.waitUntil(lambda: not workspace.segment.busy, timeout=WAIT_MS)
    press(viewer, "H")
    assert not viewer.layers["loose mask"].visible
    press(viewer, "H")
    assert viewer.layers["loose mask"].visible


def test_a_source_datasets_root_is_refused_with_a_message(make_napari_viewer, folder):
    viewer = make_napari_viewer()
    review = dock(viewer, DiskPredictor()).review
    review.set_source(folder)
    assert review.set_dataset(folder.parent) is False
    assert "choose a separate, new folder" in review.last_error
    assert sorted(p.name for p in folder.iterdir()) == [f"im{i}.png" for i in range(5)]


def test_workspace_screenshot_at_1366x768(make_napari_viewer, qtbot, folder, tmp_path):
    """Image, cyan mask, reference TP/FP/FN and the Accept button, on a laptop-sized window."""
    viewer = make_napari_viewer(show=True)
    workspace = dock(viewer, DiskPredictor())
    window = viewer.window._qt_window
    window.showNormal()
    window.resize(1366, 768)
    review = workspace.review
    review.set_dataset(tmp_path / "c")
    review.set_source(folder)
    idle(qtbot, review)
    qtbot.wait(300)
    accept = review.status_buttons["accepted"]
    assert accept.isVisible()
    bottom = accept.mapTo(window, accept.rect().bottomLeft()).y()
    assert 0 < bottom <= window.height() <= 768 + 40  # the Accept button is on screen
    assert "Review reference" in viewer.layers and viewer.layers["Review reference"].visible
    shot = viewer.screenshot(path=str(tmp_path / "ws.png"), canvas_only=False, flash=False)
    assert shot.shape[1] <= 1366 + 20 and shot.shape[0] <= 768 + 40
    assert float(shot[..., :3].astype(float).var()) > 50.0
    canvas = viewer.screenshot(canvas_only=True, flash=False)[..., :3].reshape(-1, 3).astype(int)
    cyan = (canvas[:, 2] > 150) & (canvas[:, 1] > 150) & (canvas[:, 0] < 120)
    assert cyan.sum() > 20  # the mask is drawn in its contrasting colour


def test_two_networks_maps_side_by_side_and_figure(make_napari_viewer, qtbot, folder, tmp_path):
    viewer = make_napari_viewer()
    workspace = dock(viewer, DiskPredictor())
    review = workspace.review
    review.set_dataset(tmp_path / "c")
    review.set_source(folder)
    idle(qtbot, review)
    maps = workspace.map_layers()
    assert len(maps) == 1 and not maps[0].visible  # hidden by default
    assert workspace.keep_maps() == 1
    workspace.segment.model_combo.setCurrentText("eam-net")
    press(viewer, "R")  # run the other network on the same item
    idle(qtbot, review)
    names = sorted(layer.name for layer in workspace.map_layers())
    assert len(names) == 2 and names[0].startswith("Review: where EAM-Net looked") and names[1].startswith("kept: ")
    workspace.maps_check.setChecked(True)  # one map over the image, with its colour bar: never 8 at once
    shown = [layer for layer in workspace.map_layers() if layer.visible]
    assert len(shown) == 1 and shown[0].name.startswith("Review: where EAM-Net") and shown[0].colorbar.visible
    assert not any(layer.colorbar.visible for layer in workspace.map_layers() if not layer.visible)
    zoom = viewer.camera.zoom
    workspace.side_by_side(True)
    assert viewer.grid.enabled and all(layer.visible for layer in workspace.map_layers())
    assert all(layer.colorbar.visible and layer.name_overlay.visible for layer in workspace.map_layers())
    assert review.image_layer().name_overlay.visible  # each panel titled
    assert viewer.camera.zoom != zoom  # re-fitted to the grid
    assert not review.labels_layer().visible
    workspace.side_by_side(False)
    assert not viewer.grid.enabled and review.labels_layer().visible
    assert [layer.name for layer in workspace.map_layers() if layer.visible] == [shown[0].name]
    workspace.maps_check.setChecked(False)
    out = workspace.export_figure(tmp_path / "figure.png")
    figure = np.asarray(Image.open(out))
    h, w = review.image_layer().data.shape[:2]
    workspace.grid_check.setChecked(True)
    viewer.layers.select_all()
    viewer.layers.remove_selected()  # delete all: the grid ends with its maps
    assert not viewer.grid.enabled and not workspace.grid_check.isChecked()
    # a titled grid, 3 panels a row: image | mask | map, then the kept map; each with room for a colour bar
    assert figure.shape == (2 * (h + 22) + 8, 3 * (w + 51) + 2 * 8, 3)


def test_export_buttons_write_or_say_why(make_napari_viewer, qtbot, folder, tmp_path):
    viewer = make_napari_viewer()
    workspace = dock(viewer, DiskPredictor())
    assert workspace.export("coco", tmp_path / "x.json") is None and "Review tab" in workspace.last_error
    review = workspace.review
    review.set_dataset(tmp_path / "c")
    review.set_source(folder)
    idle(qtbot, review)
    review.save("accepted")
    assert workspace.export("coco", tmp_path / "x.json")["format"] == "coco"
    assert (tmp_path / "x.json").is_file()
    assert workspace.export("nnunet", tmp_path / "nn") is not None


def test_a_segment_mask_can_be_saved_into_the_corrections(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer()
    workspace = dock(viewer, DiskPredictor())
    viewer.add_image(np.full((40, 40, 3), 90, np.uint8), name="loose", rgb=True)
    workspace.segment.image_combo.setCurrentText("loose")
    assert workspace.save_segment_mask() is None  # no corrections folder yet: a message
    workspace.review.set_dataset(tmp_path / "corrections")
    workspace.segment.run()
    qtbot.waitUntil(lambda: not workspace.segment.busy, timeout=WAIT_MS)
    mask = viewer.layers["loose mask"]
    assert workspace.save_segment_mask().status == "accepted"  # the network's own mask is no correction
    mask.data_setitem((np.array([0]), np.array([0])), np.array([1], np.uint8))
    workspace.save_mask_button.click()  # as a user saves it: Qt passes the button's checked state
    assert "not saved" not in workspace.segment.status_label.text()
    from napari_polyp.corrections import CorrectionsDataset

    record = CorrectionsDataset(tmp_path / "corrections").get("loose")
    assert record.stem == "loose" and record.status == "corrected" and record.pixels_changed == 1
    assert (tmp_path / "corrections" / "masks" / "loose.png").is_file()
