"""Segment's fast path in a real napari viewer (pytest-xvfb), docked as users get it: ONNX
Runtime from the engine setting, output layers re-used across images, whole-video runs in
batches, and Live playing a video written here."""
import numpy as np
import pytest

from napari_polyp.display import MASK_RGB, outline
from napari_polyp.io.video import write_video
from napari_polyp.widgets.segment import RANDOM_WEIGHTS

WAIT_MS = 120_000


def _segment(viewer, engine="onnxruntime"):
    _, widget = viewer.window.add_plugin_dock_widget("napari-polyp", "Segment")
    widget.model_combo.setCurrentText("microaunet")
    widget.checkpoint_combo.setCurrentText(RANDOM_WEIGHTS)
    widget.device_combo.setCurrentText("cpu")
    widget.engine_combo.setCurrentText(engine)
    widget.threads_spin.setValue(1)
    return widget


def _run(qtbot, widget):
    widget.run_button.click()
    qtbot.waitUntil(lambda: not widget.busy, timeout=WAIT_MS)
    assert widget.last_error is None


def _image(h, w, seed):
    rng = np.random.default_rng(seed)
    image = rng.integers(40, 120, (h, w, 3), dtype=np.uint8)
    image[h // 4: h // 2, w // 4: w // 2] = (210, 120, 110)
    return image


def test_output_layers_are_reused_across_images(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    layer = viewer.add_image(_image(64, 64, 0), name="frame")
    widget = _segment(viewer)
    _run(qtbot, widget)
    outputs = [lay for lay in viewer.layers if lay is not layer]
    count = len(viewer.layers)
    assert widget.mask_layer().metadata["engine"] == "onnxruntime"

    layer.data = _image(72, 96, 1)  # another image in the same layer, of another size
    _run(qtbot, widget)
    assert len(viewer.layers) == count
    assert all(any(o is lay for lay in viewer.layers) for o in outputs)  # the same layer objects
    assert viewer.layers["frame mask"].data.shape == (72, 96)

    viewer.layers.remove(layer)  # the next file takes the closed image's place, under its outputs
    viewer.layers.insert(0, __import__("napari").layers.Image(_image(48, 40, 2), name="next"))
    widget.image_combo.setCurrentText("next")
    _run(qtbot, widget)
    assert len(viewer.layers) == count
    mask = viewer.layers["next mask"]
    assert mask.data.shape == (48, 40) and mask.metadata["image_layer"] == "next"
    assert viewer.layers["next probability"].data.shape == (48, 40)
    assert "frame mask" not in viewer.layers


def test_a_hand_edited_mask_of_a_closed_image_is_kept(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    layer = viewer.add_image(_image(64, 64, 0), name="first")
    widget = _segment(viewer, engine="torch")
    _run(qtbot, widget)
    edited = viewer.layers["first mask"]
    edited.data[:5, :5] = 1 - edited.data[:5, :5]  # the user's brush
    viewer.layers.remove(layer)
    viewer.layers.insert(0, __import__("napari").layers.Image(_image(64, 64, 3), name="second"))
    widget.image_combo.setCurrentText("second")
    _run(qtbot, widget)
    assert "first mask" in viewer.layers and "second mask" in viewer.layers


def test_whole_video_runs_in_batches(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    frames = np.stack([_image(32, 48, t) for t in range(9)])
    viewer.add_image(frames, name="clip", rgb=True)
    widget = _segment(viewer)
    widget.scope_combo.setCurrentText("all frames")
    _run(qtbot, widget)
    labels = viewer.layers["clip mask"]
    assert labels.metadata["predicted_frames"] == list(range(9)) and widget.progress.value() == 9
    single = widget.predictor("microaunet", False, "cpu", **widget.engine_options()).predict(frames[7])
    np.testing.assert_array_equal(labels.data[7], single.mask(0.5))  # batching changes nothing


@pytest.fixture
def short_video(tmp_path):
    """100 frames (4 s at 25 fps) of a bright square moving right."""
    def frame(t):
        image = np.full((48, 64, 3), 40, np.uint8)
        image[16:32, t % 48: t % 48 + 16] = (230, 140, 120)
        return image

    return write_video(tmp_path / "clip.mp4", (frame(t) for t in range(100)), fps=25)


def test_live_mode_starts_advances_and_stops(make_napari_viewer, qtbot, short_video):
    viewer = make_napari_viewer()
    [video] = viewer.open(str(short_video), plugin="napari-polyp")
    widget = _segment(viewer)
    assert widget.live_button.isEnabled()
    viewer.dims.set_current_step(0, 5)  # Live plays from the first frame wherever the slider is
    widget.live_button.click()
    assert widget.busy and not widget.run_button.isEnabled()
    qtbot.waitUntil(lambda: widget.live_stats is not None and widget.live_stats.shown >= 3, timeout=WAIT_MS)
    view = viewer.layers["clip live view"]  # plays in place of the video, which is hidden meanwhile
    assert view.rgb and view.data.shape == (48, 64, 3) and not video.visible
    mask = widget.live_stats.mask
    outlined = (view.data == MASK_RGB).all(axis=-1)
    assert outlined.any() and (outlined <= mask).all() and outlined.sum() < mask.sum()  # the mask's outline
    shown = widget.live_stats.frame
    assert shown >= 2 and int(round(viewer.dims.point[0])) == shown  # napari's frame slider follows playback
    assert "clip live view" not in [widget.image_combo.itemText(i) for i in range(widget.image_combo.count())]
    assert viewer.layers.selection.active is video  # the user's selection, not the layers Live made

    widget.live_button.click()  # stop
    qtbot.waitUntil(lambda: not widget.busy, timeout=WAIT_MS)
    stopped_at = widget.live_stats.frame
    assert stopped_at < 99 and "live stopped (MicroAUNet)" in widget.status_label.text()
    assert not widget.live_button.isChecked() and widget.run_button.isEnabled()
    # the video is back at the last frame shown, with that frame's outline over it
    assert video.visible and not viewer.layers["clip live view"].visible  # kept hidden for the next Live
    assert int(round(viewer.dims.point[0])) == stopped_at
    np.testing.assert_array_equal(viewer.layers["clip live"].data, outline(widget.live_stats.mask))
    qtbot.wait(200)
    assert widget.live_stats.frame == stopped_at  # nothing runs once stopped
    stats = widget.live_stats
    assert stats.shown + stats.dropped == stats.frame + 1  # every frame from 0 on: shown or skipped
    # that outline is of one frame: it goes when the slider leaves it (it stood on every frame)
    assert viewer.layers["clip live"].visible
    viewer.dims.set_current_step(0, 0 if stopped_at else 1)
    assert not viewer.layers["clip live"].visible


def test_live_plays_the_live_network_when_the_chosen_one_is_too_slow(make_napari_viewer):
    import models

    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("napari-polyp", "Segment")
    slow = next(n for n in models.list_models() if models.get_card(n).task == "polyp"
                and not models.keeps_up_live(models.get_card(n)))
    widget.model_combo.setCurrentText(slow)
    network, checkpoint, why = widget._live_network()
    assert network == models.live_model("polyp") and checkpoint is None  # its default checkpoint
    assert models.get_card(slow).display_name in why and "too slow" in why
    widget.model_combo.setCurrentText(network)
    assert widget._live_network() == (network, widget.checkpoint(), "")  # a network that keeps up is played


def test_live_needs_a_video(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    viewer.add_image(_image(32, 32, 0), name="still")
    widget = _segment(viewer)
    assert not widget.live_button.isEnabled()
    widget.start_live()
    assert "Live plays a video" in widget.last_error and not widget.busy
