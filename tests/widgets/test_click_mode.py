"""Click mode (issue 26, item 3) in a real napari window, the Workspace docked through napari's
plugin path: clicks sent through the canvas (vispy's mouse events, napari's own mapping to
pixels), Ctrl+Z sent through Qt, the click log saved with the correction.

The refiner has random weights (fast, and independent of the shipped checkpoint): what it
answers is arbitrary, but a click always changes the mask at the click (ClickSession honours
clicks), which is what these tests rely on."""
import numpy as np
import pytest
from PIL import Image
from qtpy.QtCore import Qt
from qtpy.QtTest import QTest

from napari_polyp.corrections import CorrectionsDataset
from napari_polyp.inference import Prediction
from napari_polyp.widgets.click_mode import NEGATIVE_COLOR, POSITIVE_COLOR, clicks_layer_name

WAIT_MS = 60_000
H, W = 60, 80
GREEN, RED = (np.array([int(c[i:i + 2], 16) / 255 for i in (1, 3, 5)]) for c in (POSITIVE_COLOR, NEGATIVE_COLOR))


class DiskPredictor:
    """No network: a soft disk in the middle of the image."""

    model_name = "fake"
    checkpoint_sha256 = ""
    tta = False

    def predict(self, image, attention=True):
        h, w = image.shape[:2]
        yy, xx = np.mgrid[:h, :w]
        probability = np.clip(1.2 - np.hypot(yy - h / 2, xx - w / 2) / 12, 0, 1).astype(np.float32)
        return Prediction(probability, {"lscab_spatial": probability}, "fake", "", 0.0)


@pytest.fixture(scope="module")
def runner():
    import models
    from napari_polyp.inference.engine import make_runner

    model = models.create_model("click-refiner", checkpoint=False).eval()
    made = make_runner(model, "click-refiner", 64, engine="torch")
    made.input_size = 64  # a TorchRunner does not say its size
    return made


@pytest.fixture
def folder(tmp_path):
    images = tmp_path / "data" / "images"
    images.mkdir(parents=True)
    rng = np.random.default_rng(5)
    for i in range(2):
        Image.fromarray(rng.integers(0, 255, (H, W, 3), dtype=np.uint8)).save(images / f"im{i}.png")
    return images


def _undo_binding():
    from napari.utils.key_bindings import KeyBinding

    return KeyBinding.from_str("Control-Z")


UNDO = _undo_binding()


def dock(viewer, runner):
    _, workspace = viewer.window.add_plugin_dock_widget("napari-polyp", "Workspace")
    workspace.segment.predictor_factory = lambda *args, **kwargs: DiskPredictor()
    workspace.click_mode.runner_factory = lambda: runner
    return workspace


def press(viewer, key):
    """What napari does on a key press in the canvas (our keys are napari actions)."""
    from napari.utils.key_bindings import KeyBinding

    binding = KeyBinding.from_str(key)
    maps = [viewer.keymap] + [getattr(cls, "class_keymap", {}) for cls in type(viewer).__mro__]
    next(keymap[binding] for keymap in maps if binding in keymap)(viewer)


def canvas_of(viewer):
    return viewer.window._qt_viewer.canvas


def to_canvas(viewer, row, col):
    """Canvas pixels of image pixel (row, col): the inverse of what napari does with a mouse event."""
    mapped = canvas_of(viewer).view.scene.transform.map([col, row, 0, 1])
    return np.asarray(mapped[:2] / mapped[3])


def canvas_click(viewer, row, col, button=1, modifiers=()):
    """A press and a release at one spot, through vispy's canvas events (napari maps them to pixels)."""
    events = canvas_of(viewer)._scene_canvas.events
    pos = to_canvas(viewer, row, col)
    events.mouse_press(pos=pos, button=button, modifiers=modifiers)
    events.mouse_release(pos=pos, button=button, modifiers=modifiers)


def canvas_drag(viewer, start, end, button=1):
    events = canvas_of(viewer)._scene_canvas.events
    a, b = to_canvas(viewer, *start), to_canvas(viewer, *end)
    events.mouse_press(pos=a, button=button, modifiers=())
    for t in np.linspace(0.2, 1.0, 4):
        events.mouse_move(pos=a + (b - a) * t, button=button, modifiers=(), press_event=None)
    events.mouse_release(pos=b, button=button, modifiers=())


def done(qtbot, mode):
    qtbot.waitUntil(lambda: not mode.busy, timeout=WAIT_MS)


def open_review(qtbot, workspace, folder, tmp_path):
    review = workspace.review
    review.set_dataset(tmp_path / "corrections")
    review.set_source(folder)
    qtbot.waitUntil(lambda: not review.busy and review.labels_layer() is not None, timeout=WAIT_MS)
    return review


def test_click_mode_clicks_undo_and_saves_its_clicks(make_napari_viewer, qtbot, folder, tmp_path, runner):
    viewer = make_napari_viewer()
    workspace = dock(viewer, runner)
    mode = workspace.click_mode
    press(viewer, "K")  # before any image: one message, nothing made
    assert not mode.active and "open an image" in mode.last_error and len(viewer.layers) == 0

    review = open_review(qtbot, workspace, folder, tmp_path)
    labels = viewer.layers["Review mask"]
    press(viewer, "K")
    assert mode.active and workspace.click_panel.toggle_button.isChecked()
    assert viewer.layers.selection.active is labels and labels.mode == "pan_zoom" and not labels.mouse_pan
    start = np.asarray(labels.data).copy()
    assert start[8, 10] == 0 and start[H // 2, W // 2] == 1  # background and lesion, for the clicks below
    np.testing.assert_array_equal(mode.session.mask, start > 0)  # the session starts from the mask shown
    probability = np.asarray(viewer.layers["Review probability"].data, np.float32)
    agree = (probability > 0.5) == (start > 0)
    np.testing.assert_allclose(mode.session.probability[agree], probability[agree])  # ... and the network's map

    # a left click on background the mask left out: a positive click, a green point, the mask grows there
    history = len(labels._undo_history)
    canvas_click(viewer, 8, 10)
    assert mode.busy or mode.last_seconds is not None
    done(qtbot, mode)
    after_first = np.asarray(labels.data).copy()
    assert after_first[8, 10] == 1 and not np.array_equal(after_first, start)
    assert len(labels._undo_history) == history + 1  # one step of the mask layer's own history
    points = viewer.layers[clicks_layer_name("Review mask")]
    np.testing.assert_array_equal(points.data, [[8, 10]])
    np.testing.assert_allclose(points.face_color[0, :3], GREEN, atol=0.01)
    assert mode.session.click_log() == [{"row": 8, "col": 10, "positive": True}]

    # a right click on the lesion: negative, red, the mask shrinks there
    canvas_click(viewer, H // 2, W // 2, button=2)
    done(qtbot, mode)
    after_second = np.asarray(labels.data).copy()
    assert after_second[H // 2, W // 2] == 0 and after_second.sum() < after_first.sum()
    np.testing.assert_allclose(points.face_color[1, :3], RED, atol=0.01)

    # Ctrl+Z through Qt on the canvas: the exact mask before the right click, its point gone
    QTest.keyClick(canvas_of(viewer).native, Qt.Key_Z, Qt.ControlModifier)
    np.testing.assert_array_equal(labels.data, after_first)
    assert len(points.data) == 1 and len(labels._undo_history) == history + 1
    # Alt+click is negative too; Ctrl+Z with the focus in the dock (the item table) undoes it
    canvas_click(viewer, H // 2, W // 2, modifiers=("Alt",))
    done(qtbot, mode)
    assert mode.session.click_log()[-1]["positive"] is False
    QTest.keyClick(review.item_list, Qt.Key_Z, Qt.ControlModifier)
    np.testing.assert_array_equal(labels.data, after_first)
    # the mask layer's own Ctrl+Z binding is ours too in Click mode (napari's keymap path)
    labels.keymap[UNDO](labels)
    np.testing.assert_array_equal(labels.data, start)
    assert len(points.data) == 0 and len(labels._undo_history) == history
    labels.keymap[UNDO](labels)  # nothing left: a message, nothing changes
    assert mode.last_error.startswith("nothing to undo")
    np.testing.assert_array_equal(labels.data, start)

    # outside the image: one message, the mask unchanged
    canvas_click(viewer, H + 20, W + 30)
    assert not mode.busy and "outside the image" in mode.last_error
    np.testing.assert_array_equal(labels.data, start)

    # a drag draws a box: a positive click at its centre, the box hidden after
    canvas_drag(viewer, (4, 4), (20, 26))
    done(qtbot, mode)
    assert mode.session.click_log() == [{"row": 12, "col": 15, "positive": True}]
    assert np.asarray(labels.data)[12, 15] == 1
    assert not viewer.layers["Review mask click box"].visible
    canvas_click(viewer, 50, 70, button=2)
    done(qtbot, mode)

    # saved with the correction, read back from the store; the next item starts afresh
    log = mode.click_log()
    assert [c["positive"] for c in log] == [True, False]
    record = review.save("corrected")
    assert record.clicks == log
    assert CorrectionsDataset(tmp_path / "corrections").get(record.stem).clicks == log
    qtbot.waitUntil(lambda: review.current == 1 and not review.busy, timeout=WAIT_MS)  # auto-next
    assert mode.session is None and mode.click_log() is None and len(points.data) == 0
    assert mode.active  # still in Click mode on the next item's mask
    canvas_click(viewer, 5, 5)
    done(qtbot, mode)
    assert mode.click_log() == [{"row": 5, "col": 5, "positive": True}]
    press(viewer, "K")  # leaves: the mask pans again in pan/zoom, or has its tool back
    assert not mode.active and labels.mouse_pan == (labels.mode == "pan_zoom")
    assert UNDO not in labels.keymap  # napari's own Ctrl+Z on the mask again


def test_leaving_and_the_mask_layers_own_undo_are_followed(make_napari_viewer, qtbot, folder, tmp_path, runner):
    viewer = make_napari_viewer()
    workspace = dock(viewer, runner)
    mode = workspace.click_mode
    open_review(qtbot, workspace, folder, tmp_path)
    labels = viewer.layers["Review mask"]
    labels.mode = "paint"
    workspace.click_panel.toggle_button.click()  # the button enters
    assert mode.active and labels.mode == "pan_zoom"
    start = np.asarray(labels.data).copy()
    mode.click(8, 10)
    done(qtbot, mode)
    mode.click(50, 70)
    done(qtbot, mode)
    viewer.layers.selection.active = viewer.layers["Review"]  # another layer: the mode is left
    assert not mode.active and not workspace.click_panel.toggle_button.isChecked()
    assert labels.mode == "paint"  # the annotator's tool is back
    labels.undo()  # the mask layer's own Ctrl+Z takes the last click back ...
    workspace.click_panel.toggle_button.click()
    mode.click(8, 60, positive=False)
    done(qtbot, mode)
    assert [c["col"] for c in mode.click_log()] == [10, 60]  # ... and the session followed it
    labels.mode = "fill"  # another tool of the mask: the mode is left, that tool stays
    assert not mode.active and labels.mode == "fill"
    labels.data_setitem((np.array([0]), np.array([0])), 1)  # a hand edit between clicks
    mode.enter()
    mode.click(40, 10)
    done(qtbot, mode)
    assert np.asarray(labels.data)[0, 0] == 1  # goes on from the mask as edited
    assert [c["col"] for c in mode.click_log()] == [10, 60, 10]  # the earlier clicks stay in the log
    assert mode.undo() and not mode.undo() and "since the mask was last changed" in mode.last_error
    assert not np.array_equal(labels.data, start)


def test_a_threshold_move_that_discards_the_edits_takes_the_clicks_with_it(make_napari_viewer, qtbot, folder,
                                                                            tmp_path, runner):
    """The mask is the network's own again: the clicks' points go and the item is saved without
    them (a record said clicks=[...] of a mask they were not in)."""
    from napari_polyp import layers as L

    viewer = make_napari_viewer()
    workspace = dock(viewer, runner)
    mode = workspace.click_mode
    review = open_review(qtbot, workspace, folder, tmp_path)
    workspace.segment.image_combo.setCurrentText("Review")  # Segment's threshold acts on this mask
    press(viewer, "K")
    mode.click(8, 10)
    done(qtbot, mode)
    points = viewer.layers[clicks_layer_name("Review mask")]
    assert len(points.data) == 1
    workspace.segment.ask_edits = lambda _found: L.DISCARD
    workspace.segment.threshold_spin.setValue(0.4)
    assert len(points.data) == 0 and mode.click_log() is None and "start afresh" in mode.message
    mode.click(8, 12)
    done(qtbot, mode)
    workspace.segment.ask_edits = lambda _found: L.KEEP
    workspace.segment.threshold_spin.setValue(0.45)  # kept: the click's work stays, so does the click
    assert len(points.data) == 1 and mode.click_log() == [{"row": 8, "col": 12, "positive": True}]
    workspace.segment.ask_edits = lambda _found: L.DISCARD
    labels = viewer.layers["Review mask"]
    labels.data_setitem((np.array([0]), np.array([0])), 1)  # one more edit: asked again, discarded
    workspace.segment.threshold_spin.setValue(0.5)
    assert len(points.data) == 0 and mode.click_log() is None
    record = review.save("accepted")
    assert record.clicks == [] and record.pixels_changed == 0


def test_click_mode_on_an_image_without_a_mask(make_napari_viewer, qtbot, runner):
    viewer = make_napari_viewer()
    workspace = dock(viewer, runner)
    mode = workspace.click_mode
    image = np.random.default_rng(2).integers(0, 255, (H, W, 3), dtype=np.uint8)
    viewer.add_image(image, name="photo", rgb=True)
    workspace.segment.image_combo.setCurrentText("photo")
    assert mode.enter()
    labels = viewer.layers["photo mask"]  # an empty mask to click on
    assert not np.any(labels.data) and viewer.layers.selection.active is labels
    mode.click(30, 40)
    done(qtbot, mode)
    assert np.asarray(labels.data)[30, 40] == 1
    assert mode.click_log() is None  # not a Review item: nothing to save it with
    viewer.layers.remove("photo")  # the image closed: the mode is left, the mask pans again
    assert not mode.active and mode.session is None
    assert labels.mouse_pan and mode._on_drag not in labels.mouse_drag_callbacks and UNDO not in labels.keymap
    assert not mode.click(3, 3) and "open an image" in mode.last_error


def test_the_shipped_refiner_stands_in_until_a_click_needs_it(monkeypatch, runner):
    """Without a runner factory a session gets a stand-in that loads the shipped refiner on first
    use (in the worker, or ahead when Click mode is entered), whatever kind of runner it is."""
    from napari_polyp.corrections.clicks import ClickSession
    from napari_polyp.widgets import click_mode

    loads = []
    monkeypatch.setattr(click_mode, "shipped_refiner", lambda: loads.append(1) or runner)
    stand_in = click_mode._ShippedRefiner()
    assert not loads and not hasattr(stand_in, "run")  # a TorchRunner: called, not run
    session = ClickSession(np.zeros((H, W, 3), np.uint8), runner=stand_in)
    assert session.click(10, 10)[10, 10] and loads

