"""The Segment dock widget in a real napari viewer (pytest-xvfb)."""
import threading
import time

import numpy as np
import pytest

import models
from napari_polyp import layers as L
from napari_polyp.inference import Prediction, Predictor
from napari_polyp.widgets.segment import RANDOM_WEIGHTS, SegmentWidget

WAIT_MS = 120_000


class Counting:
    """Wraps a predictor and counts network calls."""

    def __init__(self, inner):
        self.inner = inner
        self.calls = 0
        self.model_name = inner.model_name
        self.checkpoint_sha256 = inner.checkpoint_sha256

    def predict(self, image):
        self.calls += 1
        return self.inner.predict(image)


class FakePredictor:
    """No network: a ramp probability; optionally slow, to test Cancel."""

    def __init__(self, model_name, delay=0.0):
        self.model_name = model_name
        self.checkpoint_sha256 = ""
        self.delay = delay
        self.calls = 0
        self.lock = threading.Lock()

    def predict(self, image):
        with self.lock:
            self.calls += 1
        time.sleep(self.delay)
        h, w = image.shape[:2]
        ramp = np.tile(np.linspace(0, 1, w, dtype=np.float32), (h, 1))
        if self.model_name != "fake-a":  # a vertical ramp: the two fakes agree on two quadrants
            ramp = np.tile(np.linspace(0, 1, h, dtype=np.float32)[:, None], (1, w))
        return Prediction(ramp, {"fake_map": ramp}, self.model_name, "", 0.0)


@pytest.fixture
def rgb64():
    rng = np.random.default_rng(0)
    image = rng.integers(60, 120, (64, 64, 3), dtype=np.uint8)
    image[20:44, 18:46] = (200, 120, 110)
    return image


def _widget(viewer, qtbot, **kwargs):
    widget = SegmentWidget(viewer, **kwargs)
    viewer.window.add_dock_widget(widget, name="Segment")
    return widget


def _wait(qtbot, widget):
    qtbot.waitUntil(lambda: not widget.busy, timeout=WAIT_MS)


def _random_weights(widget, model):
    widget.model_combo.setCurrentText(model)
    widget.checkpoint_combo.setCurrentText(RANDOM_WEIGHTS)


@pytest.mark.parametrize("model", models.list_models())
def test_runs_each_network(make_napari_viewer, qtbot, rgb64, model):
    viewer = make_napari_viewer()
    viewer.add_image(rgb64, name="img")
    made = []

    def factory(name, checkpoint, device):
        made.append((name, checkpoint, device))
        return Counting(Predictor(name, checkpoint=checkpoint, device=device))

    widget = _widget(viewer, qtbot, predictor_factory=factory)
    _random_weights(widget, model)
    assert not widget.warning_label.isHidden() and "untrained" in widget.warning_label.text()
    assert models.get_card(model).title.split(":")[0] in widget.card_label.text()
    widget.device_combo.setCurrentText("cpu")
    widget.run_button.click()
    _wait(qtbot, widget)
    assert widget.last_error is None
    assert made == [(model, False, "cpu")]
    labels = viewer.layers["img mask"]
    assert labels.data.shape == (64, 64) and set(np.unique(labels.data)) <= {0, 1}
    prob = viewer.layers["img probability"]
    assert prob.data.shape == (64, 64) and not prob.visible and 0 <= prob.data.min() <= prob.data.max() <= 1
    from napari_polyp.display import attention_layer_name

    for map_name in models.get_card(model).attention_maps:
        layer = viewer.layers[attention_layer_name("img", model, map_name)]
        assert layer.data.shape == (64, 64) and layer.blending == "additive" and not layer.visible
    for layer in (labels, prob):
        assert layer.metadata["model"] == model
        assert layer.metadata["checkpoint_sha256"] == ""  # random weights
        assert layer.metadata["threshold"] == 0.5 and layer.metadata["time"]
    assert widget.last_latency_s is not None and widget.progress.value() == 1


def test_threshold_change_makes_no_network_call(make_napari_viewer, qtbot, rgb64):
    viewer = make_napari_viewer()
    viewer.add_image(rgb64, name="img")
    predictors = []

    def factory(name, checkpoint, device):
        predictors.append(Counting(Predictor(name, checkpoint=checkpoint, device=device)))
        return predictors[-1]

    widget = _widget(viewer, qtbot, predictor_factory=factory)
    _random_weights(widget, models.list_models()[0])
    widget.run()
    _wait(qtbot, widget)
    [counting] = predictors
    assert counting.calls == 1
    labels = viewer.layers["img mask"]
    probability = np.asarray(viewer.layers["img probability"].data)
    for value in (0.1, 0.3, 0.7, 0.9):
        widget.threshold_spin.setValue(value)
        np.testing.assert_array_equal(labels.data, (probability >= value).astype(np.uint8))
        assert labels.metadata["threshold"] == pytest.approx(value)
    widget.threshold_slider.setValue(42)
    assert widget.threshold() == pytest.approx(0.42)
    np.testing.assert_array_equal(labels.data, (probability >= 0.42).astype(np.uint8))
    assert counting.calls == 1 and len(predictors) == 1
    widget.run()  # the Predictor is cached per (model, checkpoint, device)
    _wait(qtbot, widget)
    assert counting.calls == 2 and len(predictors) == 1


def test_threshold_asks_before_dropping_edits(make_napari_viewer, qtbot, rgb64):
    viewer = make_napari_viewer()
    viewer.add_image(rgb64, name="img")
    answers, asked = ["cancel", "keep"], []

    def ask(found):
        asked.append(found)
        return answers.pop(0)

    widget = _widget(viewer, qtbot, predictor_factory=lambda *a: FakePredictor("fake-a"), ask_edits=ask)
    widget.run()
    _wait(qtbot, widget)
    labels = viewer.layers["img mask"]
    labels.data[0:5, 0:5] = 1
    widget.threshold_spin.setValue(0.8)
    assert len(asked) == 1 and widget.threshold() == pytest.approx(0.5)  # cancelled: control restored
    assert (labels.data[0:5, 0:5] == 1).all()
    widget.threshold_spin.setValue(0.8)
    assert len(asked) == 2 and (labels.data[0:5, 0:5] == 1).all()
    assert labels.data[40, 20] == 0 and labels.data[40, 60] == 1  # the rest re-derived at 0.8


def test_cancel_stops_a_multi_frame_run(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((12, 32, 32, 3), np.uint8), name="clip", rgb=True)
    fake = FakePredictor("fake-a", delay=0.25)
    widget = _widget(viewer, qtbot, predictor_factory=lambda *a: fake)
    assert widget.scope_combo.isEnabled()
    widget.scope_combo.setCurrentText("all frames")
    widget.run()
    qtbot.waitUntil(lambda: widget._frames_done >= 2, timeout=WAIT_MS)
    assert viewer.layers["clip mask"].data.shape == (12, 32, 32)
    calls_at_cancel = fake.calls
    widget.cancel_button.click()
    _wait(qtbot, widget)
    assert fake.calls <= calls_at_cancel + 1  # stops within one frame
    assert fake.calls < 12
    assert "cancelled" in widget.status_label.text()
    labels = viewer.layers["clip mask"]
    assert labels.data[0].any() and not labels.data[-1].any()


def test_current_frame_scope(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((5, 32, 32, 3), np.uint8), name="clip", rgb=True)
    widget = _widget(viewer, qtbot, predictor_factory=lambda *a: FakePredictor("fake-a"))
    viewer.dims.set_current_step(0, 3)
    widget.run()
    _wait(qtbot, widget)
    labels = viewer.layers["clip mask"]
    assert [bool(labels.data[t].any()) for t in range(5)] == [False, False, False, True, False]
    assert labels.metadata["predicted_frames"] == [3]


def test_errors_become_notifications(make_napari_viewer, qtbot, rgb64, tmp_path):
    viewer = make_napari_viewer()
    viewer.add_image(rgb64, name="img")
    widget = _widget(viewer, qtbot)
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"not a checkpoint")
    widget.model_combo.setCurrentText(models.list_models()[0])
    widget.add_checkpoint_path(bad)
    assert "checkpoint problem" in widget.card_label.text() and not widget.warning_label.isHidden()
    widget.run()
    _wait(qtbot, widget)
    assert widget.last_error and "broken.pt" in widget.last_error and "not a readable" in widget.last_error
    assert "img mask" not in viewer.layers and widget.run_button.isEnabled()
    # another network's checkpoint: the card does not show its figures under this network's name
    first, other = "ea-dk", "microaunet"  # microaunet: a small network to save
    widget.model_combo.setCurrentText(first)
    foreign = tmp_path / "foreign.pt"
    models.save_checkpoint(models.create_model(other, checkpoint=False), foreign, architecture=other,
                           metrics={"dice": 0.123})
    widget.add_checkpoint_path(foreign)
    assert widget.model_combo.currentText() == first and "0.123" not in widget.card_label.text()
    assert f"holds a '{other}' checkpoint, not '{first}'" in widget.card_label.text()


def test_compare_adds_a_disagreement_layer(make_napari_viewer, qtbot, rgb64):
    viewer = make_napari_viewer()
    viewer.add_image(rgb64, name="img")
    widget = _widget(viewer, qtbot, predictor_factory=lambda name, *a: FakePredictor(
        "fake-a" if name == widget.model_combo.currentText() else "fake-b"))
    names = models.list_models()
    widget.model_combo.setCurrentText(names[0])
    widget.compare_combo.setCurrentText(names[-1])
    widget.compare()
    _wait(qtbot, widget)
    layer = viewer.layers["img disagreement"]
    assert layer.data.shape == (64, 64) and set(np.unique(layer.data)) == {0, 1, 2}
    assert "Dice" in widget.compare_label.text()
    assert "img |pA-pB|" in viewer.layers
    assert layer.visible
    widget.model_combo.setCurrentText(names[1])  # another network run: that comparison is not of its mask
    widget.run()
    _wait(qtbot, widget)
    assert not layer.visible
    # a network with its own default checkpoint: nothing to compare, said so
    widget.compare_combo.setCurrentText(names[0])
    widget.checkpoint_combo.setCurrentIndex(0)
    if str(widget.checkpoint()) == str(models.default_checkpoint(names[0])):
        widget.compare()
        assert not widget.busy and "choose another network" in widget.last_error


def test_screenshot_shows_image_mask_and_attention(make_napari_viewer, qtbot, tmp_path):
    from napari_polyp.io.samples import colonoscopy_sample

    viewer = make_napari_viewer(show=True)
    (image, meta, _), _ground_truth = colonoscopy_sample()
    viewer.add_image(image, **meta)
    widget = _widget(viewer, qtbot)
    name = "microaunet" if "microaunet" in models.list_models() else models.list_models()[0]
    _random_weights(widget, name)
    widget.threshold_spin.setValue(0.5)
    widget.run()
    _wait(qtbot, widget)
    assert widget.last_error is None
    from napari_polyp.layers import attention_layers

    maps = attention_layers(viewer, viewer.layers[meta["name"]])
    assert maps and all(name.lower() in layer.name.lower() or "MicroAUNet" in layer.name for layer in maps)
    maps[0].visible = True  # hidden by default: shown here so the shot has all three
    labels = viewer.layers[f"{meta['name']} mask"]
    labels.data[:40, :40] = 1  # make sure some mask is drawn whatever the random weights say
    labels.refresh()
    path = tmp_path / "viewer.png"
    shot = viewer.screenshot(path=str(path), canvas_only=True, flash=False)
    assert path.is_file() and path.stat().st_size > 1000
    assert shot.ndim == 3 and float(shot[..., :3].astype(float).var()) > 50.0
    import imageio.v3 as iio

    saved = iio.imread(path)
    assert float(saved[..., :3].astype(float).var()) > 50.0


def test_docked_through_the_manifest(make_napari_viewer, qtbot, rgb64):
    # napari gives plugin widgets a proxy viewer whose layers are new proxies on each access:
    # the mask must still be found and re-thresholded through it.
    viewer = make_napari_viewer()
    viewer.add_image(rgb64, name="img")
    _, widget = viewer.window.add_plugin_dock_widget("napari-polyp", "Segment")
    fake = FakePredictor("fake-a")
    widget.predictor_factory = lambda *a: fake
    widget.run()
    _wait(qtbot, widget)
    assert widget.mask_layer() is not None
    calls = fake.calls  # (the fake answers for the second opinion's network too)
    widget.threshold_spin.setValue(0.75)
    labels = viewer.layers["img mask"]
    assert labels.data[0, 47] == 0 and labels.data[0, 48] == 1 and fake.calls == calls  # no network run


def test_threshold_moved_during_a_run_applies_to_every_frame(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((4, 32, 32, 3), np.uint8), name="clip", rgb=True)
    fake = FakePredictor("fake-a", delay=0.2)
    widget = _widget(viewer, qtbot, predictor_factory=lambda *a: fake)
    widget.scope_combo.setCurrentText("all frames")
    widget.run()
    qtbot.waitUntil(lambda: widget._frames_done >= 1, timeout=WAIT_MS)
    widget.threshold_spin.setValue(0.8)
    _wait(qtbot, widget)
    labels = viewer.layers["clip mask"]
    expected = (np.linspace(0, 1, 32) >= 0.8).astype(np.uint8)
    for t in range(4):
        np.testing.assert_array_equal(labels.data[t][0], expected)
    assert fake.calls == 4


def test_task_choice_selects_a_fitting_network_and_a_mismatch_warns(make_napari_viewer, qtbot, monkeypatch):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-polyp", "dermoscopy")
    _, widget = viewer.window.add_plugin_dock_widget("napari-polyp", "Segment")
    dermoscopy = next(layer for layer in viewer.layers if layer.name.startswith("dermoscopy") and layer.rgb)
    widget.image_combo.setCurrentText(dermoscopy.name)
    assert widget.task_combo.currentText() == "dermoscopy"  # the sample says what it shows
    assert widget.model_combo.currentText() == models.default_model("skin")
    widget.task_combo.setCurrentText("colonoscopy")
    assert widget.model_combo.currentText() == models.default_model("polyp")
    warnings = []
    monkeypatch.setattr("napari.utils.notifications.show_warning", warnings.append)
    monkeypatch.setattr(widget, "_start", lambda *a, **k: None)  # the warning is what is tested, not the run
    widget.run()
    assert len(warnings) == 1 and f"{dermoscopy.name} shows dermoscopy" in warnings[0] and models.default_model("skin") in warnings[0]


def test_tta_checkbox_reaches_the_predictor(make_napari_viewer, qtbot, rgb64):
    viewer = make_napari_viewer()
    viewer.add_image(rgb64, name="img")
    _, widget = viewer.window.add_plugin_dock_widget("napari-polyp", "Segment")
    widget.model_combo.setCurrentText("microaunet")
    widget.tta_check.setChecked(True)
    widget.run()
    qtbot.waitUntil(lambda: not widget.busy, timeout=WAIT_MS)
    args = ("microaunet", widget.checkpoint(), widget.device_combo.currentText())
    with_tta = widget.predictor(*args, tta=True)
    assert with_tta.tta is True
    widget.tta_check.setChecked(False)
    widget.run()
    qtbot.waitUntil(lambda: not widget.busy, timeout=WAIT_MS)
    # TTA is part of the predictor's key: set once when built, never flipped under another run
    assert with_tta.tta is True and widget.predictor(*args, tta=False).tta is False


def test_tta_defaults_follow_the_network_until_the_user_sets_it(make_napari_viewer, qtbot, monkeypatch):
    fast = {"microaunet"}  # pretend only MicroAUNet keeps all three views within the budget
    monkeypatch.setattr("napari_polyp.widgets.segment.tta_fits", lambda card: card.name in fast)
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("napari-polyp", "Segment")
    widget.model_combo.setCurrentText("microaunet")
    assert widget.tta_check.isChecked()
    widget.model_combo.setCurrentText("dino-keys")
    assert not widget.tta_check.isChecked()
    widget.tta_check.click()  # the user's choice
    assert widget.tta_check.isChecked()
    widget.model_combo.setCurrentText("microaunet")
    widget.model_combo.setCurrentText("dino-keys")
    assert widget.tta_check.isChecked()  # kept over the network's default


@pytest.mark.parametrize("delete", ["image", "mask"])
def test_deleting_a_layer_mid_run_cancels_safely(make_napari_viewer, qtbot, rgb64, delete):
    """Compare, then Run another network and delete a layer while it runs (was a segfault
    under software OpenGL): the run stops, nothing is drawn into or beside a removed layer."""
    viewer = make_napari_viewer(show=True)
    viewer.add_image(rgb64, name="img")
    viewer.add_image(rgb64[::-1].copy(), name="other")
    _, widget = viewer.window.add_plugin_dock_widget("napari-polyp", "Segment")
    widget.image_combo.setCurrentText("img")
    fakes = {"fake-a": FakePredictor("fake-a"), "fake-b": FakePredictor("fake-b", delay=0.4)}
    widget.predictor_factory = lambda name, *a, **k: fakes["fake-a" if name == widget.model_combo.currentText()
                                                             else "fake-b"]
    widget.compare()
    _wait(qtbot, widget)
    assert "img disagreement" in viewer.layers
    widget.predictor_factory = lambda *a, **k: fakes["fake-b"]
    widget.model_combo.setCurrentIndex((widget.model_combo.currentIndex() + 1) % widget.model_combo.count())
    widget.image_combo.setCurrentText("img")
    widget.run()
    assert widget.busy
    qtbot.waitUntil(lambda: fakes["fake-b"].calls >= 2, timeout=WAIT_MS)
    viewer.layers.remove("img mask" if delete == "mask" and "img mask" in viewer.layers else "img")
    _wait(qtbot, widget)
    qtbot.wait(200)
    assert "closed during the run" in widget.status_label.text()
    assert widget.last_error is None
    if delete == "image":
        assert "img mask" not in viewer.layers or viewer.layers["img mask"].metadata.get("image_layer") == "img"
    assert widget.image_combo.currentText() in ("other", "img")
    viewer.screenshot(canvas_only=True, flash=False)  # the canvas still draws


def test_second_opinion_is_offered_where_a_network_checks_the_chosen_one(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("napari-polyp", "Segment")
    widget.model_combo.setCurrentText("ea-dk")
    second = models.second_opinion_for("ea-dk")
    assert widget.second_check.isEnabled() and second in widget.second_check.text()
    assert widget.second_check.isChecked()  # EA-DK with TTA and DINO-keys answer within the budget
    assert widget.second_opinion() == second
    widget.model_combo.setCurrentText(second)  # no network checks the checking network
    assert not widget.second_check.isEnabled() and widget.second_opinion() == ""
    widget.model_combo.setCurrentText("ea-dk")
    widget.second_check.click()  # the user's choice stays
    widget.model_combo.setCurrentText("pefnet")
    assert not widget.second_check.isChecked() and widget.second_opinion() == ""


def test_run_with_the_second_opinion_says_what_it_said(make_napari_viewer, qtbot, rgb64):
    viewer = make_napari_viewer()
    image_layer = viewer.add_image(rgb64, name="img")
    _, widget = viewer.window.add_plugin_dock_widget("napari-polyp", "Segment")
    widget.model_combo.setCurrentText("ea-dk")
    assert widget.second_opinion()
    widget.run()
    qtbot.waitUntil(lambda: not widget.busy, timeout=WAIT_MS)
    assert widget.last_error is None
    meta = viewer.layers[L.layer_names(image_layer.name)["mask"]].metadata
    said = meta["second_opinion"]
    assert said.startswith(widget.second_opinion()) and said in widget.status_label.text()


def test_a_second_opinion_that_cannot_load_is_one_message_naming_the_way_out(make_napari_viewer, qtbot, rgb64):
    viewer = make_napari_viewer()
    viewer.add_image(rgb64, name="img")
    second = models.second_opinion_for("ea-dk")

    def factory(name, checkpoint, device, **options):
        if name == second:
            raise OSError(f"{second}'s backbone file is missing")
        return FakePredictor("fake-a")

    widget = _widget(viewer, qtbot, predictor_factory=factory)
    widget.model_combo.setCurrentText("ea-dk")
    assert widget.second_opinion() == second
    widget.run()
    _wait(qtbot, widget)
    assert "could not be loaded" in widget.last_error and "untick the check" in widget.last_error
    assert "Traceback" not in widget.last_error and "img mask" not in viewer.layers
    widget.second_check.click()  # the way out the message names
    widget.run()
    _wait(qtbot, widget)
    assert widget.last_error is None and "img mask" in viewer.layers
