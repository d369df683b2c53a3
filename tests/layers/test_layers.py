"""Prediction layers and re-thresholding (no network involved)."""
import numpy as np
import pytest

from napari_polyp import layers as L


def _ramp(h=32, w=48):
    return np.tile(np.linspace(0, 1, w, dtype=np.float32), (h, 1))


def _meta(model="fake"):
    return {"model": model, "checkpoint_sha256": "ab" * 32}


def test_layers_for_an_image(make_napari_viewer):
    viewer = make_napari_viewer()
    image = viewer.add_image(np.zeros((32, 48, 3), np.uint8), rgb=True, name="img", scale=(2, 2))
    attention = {"spatial": np.full((32, 48), 0.25, np.float32), "low": np.ones((8, 12), np.float32)}
    labels = L.add_prediction_layers(viewer, image, _ramp(), attention, _meta(), 0.5)
    assert labels.name == "img mask" and labels.data.shape == (32, 48) and labels.data.dtype == np.uint8
    np.testing.assert_array_equal(labels.data, (_ramp() >= 0.5).astype(np.uint8))
    assert tuple(labels.scale) == (2, 2)
    for key in ("model", "checkpoint_sha256", "threshold", "time"):
        assert key in labels.metadata
    prob = viewer.layers["img probability"]
    assert not prob.visible and prob.data.shape == (32, 48)
    for name in ("spatial", "low"):
        layer = viewer.layers[f"img: fake: {name} ({name})"]  # unknown maps: the network and the map's own name
        assert layer.data.shape == (32, 48)  # resized to the image
        assert layer.blending == "additive" and not layer.visible  # hidden until asked for
        assert layer.metadata["model"] == "fake" and layer.metadata["threshold"] == 0.5
    low = viewer.layers["img: fake: low (low)"]
    assert low.contrast_limits[1] > low.contrast_limits[0]  # per-map contrast, even for a flat map
    assert low.colorbar.visible
    # a second model with other maps replaces the stale attention layers of a 2D image
    L.add_prediction_layers(viewer, image, _ramp(), {"lscab_spatial": np.zeros((32, 48))}, _meta("microaunet"), 0.5)
    assert [layer.name for layer in L.attention_layers(viewer, image)] == \
        ["img: where MicroAUNet looked (LSCAB spatial attention)"]
    assert viewer.layers["img mask"] is labels and labels.metadata["model"] == "microaunet"


def test_rethreshold_without_edits(make_napari_viewer):
    viewer = make_napari_viewer()
    image = viewer.add_image(np.zeros((32, 48, 3), np.uint8), rgb=True, name="img")
    labels = L.add_prediction_layers(viewer, image, _ramp(), {}, _meta(), 0.5)
    asked = []
    assert L.rethreshold(labels, 0.25, resolve_edits=asked.append) == "updated"
    np.testing.assert_array_equal(labels.data, (_ramp() >= 0.25).astype(np.uint8))
    assert labels.metadata["threshold"] == 0.25 and not asked
    assert L.rethreshold(labels, 0.25) == "unchanged"


@pytest.mark.parametrize("answer", ["keep", "discard", "cancel"])
def test_rethreshold_asks_before_touching_edits(make_napari_viewer, answer):
    viewer = make_napari_viewer()
    image = viewer.add_image(np.zeros((32, 48, 3), np.uint8), rgb=True, name="img")
    labels = L.add_prediction_layers(viewer, image, _ramp(), {}, _meta(), 0.5)
    labels.data[0:4, 0:4] = 1  # painted where the network said background
    labels.data[10, 40] = 0  # erased where it said lesion
    before = labels.data.copy()
    asked = []

    def resolve(found):
        asked.append(found)
        return answer

    outcome = L.rethreshold(labels, 0.8, resolve_edits=resolve)
    assert len(asked) == 1 and asked[0].pixels == 17 and "17" in asked[0].message()
    derived = (_ramp() >= 0.8).astype(np.uint8)
    if answer == "cancel":
        assert outcome == "cancelled"
        np.testing.assert_array_equal(labels.data, before)
        assert labels.metadata["threshold"] == 0.5
    elif answer == "discard":
        np.testing.assert_array_equal(labels.data, derived)
        assert not L.has_manual_edits(labels)
    else:
        assert outcome == "kept-edits"
        assert (labels.data[0:4, 0:4] == 1).all() and labels.data[10, 40] == 0
        untouched = np.ones_like(derived, bool)
        untouched[0:4, 0:4] = False
        untouched[10, 40] = False
        np.testing.assert_array_equal(labels.data[untouched], derived[untouched])
        # the same edits are not asked about again, and survive a threshold that agrees with them
        assert L.rethreshold(labels, 0.6, resolve_edits=resolve) == "kept-edits"
        assert L.rethreshold(labels, 0.0, resolve_edits=resolve) == "kept-edits"
        assert L.rethreshold(labels, 0.9, resolve_edits=resolve) == "kept-edits"
        assert len(asked) == 1
        assert labels.data[10, 40] == 0 and (labels.data[0:4, 0:4] == 1).all()


def test_new_prediction_over_edits_asks(make_napari_viewer):
    viewer = make_napari_viewer()
    image = viewer.add_image(np.zeros((32, 48, 3), np.uint8), rgb=True, name="img")
    labels = L.add_prediction_layers(viewer, image, _ramp(), {}, _meta(), 0.5)
    labels.data[0, 0] = 1
    asked = []
    L.add_prediction_layers(viewer, image, np.zeros((32, 48)), {}, _meta(), 0.5,
                            resolve_edits=lambda found: asked.append(found) or "cancel")
    assert asked and labels.data[0, 0] == 1 and labels.data[0, -1] == 1  # cancel: nothing changed


def test_video_layers_are_frame_stacked(make_napari_viewer):
    viewer = make_napari_viewer()
    video = viewer.add_image(np.zeros((6, 32, 48, 3), np.uint8), rgb=True, name="clip")
    labels = L.add_prediction_layers(viewer, video, _ramp(), {"a": _ramp()}, _meta(), 0.5, frame=2)
    assert labels.data.shape == (6, 32, 48)
    assert labels.data[2].any() and not labels.data[[0, 1, 3, 4, 5]].any()  # other frames: 0
    prob = viewer.layers["clip probability"]
    assert prob.data.shape == (6, 32, 48) and isinstance(prob.data, L.FrameStack)
    assert not np.asarray(prob.data[0]).any() and np.asarray(prob.data[2]).max() == pytest.approx(1.0)
    L.add_prediction_layers(viewer, video, 1 - _ramp(), {"a": _ramp()}, _meta(), 0.5, frame=4)
    assert labels.metadata["predicted_frames"] == [2, 4]
    assert L.rethreshold(labels, 0.9) == "updated"
    np.testing.assert_array_equal(labels.data[2], (_ramp() >= 0.9).astype(np.uint8))
    np.testing.assert_array_equal(labels.data[4], ((1 - _ramp()) >= 0.9).astype(np.uint8))
    with pytest.raises(ValueError, match="frame"):
        L.add_prediction_layers(viewer, video, _ramp(), {}, _meta(), 0.5)
    viewer.dims.set_current_step(0, 4)
    assert L.current_frame(viewer, video) == 4


def test_disagreement_layer(make_napari_viewer):
    viewer = make_napari_viewer()
    image = viewer.add_image(np.zeros((32, 48, 3), np.uint8), rgb=True, name="img")
    a, b = _ramp(), _ramp()
    b[:8] = a[:8, ::-1]  # the two "networks" disagree on the first rows only
    layer = L.add_disagreement_layer(viewer, image, a, b, 0.5, "net-a", "net-b")
    assert set(np.unique(layer.data)) == {0, 1, 2}
    assert ((layer.data == 1) == ((a >= 0.5) & (b < 0.5))).all()
    assert layer.metadata["model_a"] == "net-a" and 0 <= layer.metadata["dice_a_vs_b"] <= 1
    assert viewer.layers["img |pA-pB|"].data.max() == pytest.approx(1.0)


def test_video_attention_of_another_network_goes(make_napari_viewer):
    """On a video the previous network's maps used to stay beside the new one's, unnamed."""
    viewer = make_napari_viewer()
    video = viewer.add_image(np.zeros((3, 32, 48, 3), np.uint8), rgb=True, name="vid")
    L.add_prediction_layers(viewer, video, _ramp(), {"lscab_spatial": _ramp()}, _meta("microaunet"), 0.5, frame=0)
    L.add_prediction_layers(viewer, video, _ramp(), {"lscab_spatial": _ramp()}, _meta("microaunet"), 0.5, frame=1)
    assert len(L.attention_layers(viewer, video)) == 1  # the same network's frames share one layer
    L.add_prediction_layers(viewer, video, _ramp(), {"cmam_spatial": _ramp(), "eab_max": _ramp()},
                            _meta("eam-net"), 0.5, frame=0)
    names = sorted(layer.name for layer in L.attention_layers(viewer, video))
    assert names == ["vid: edges EAM-Net weighed (EAB edge attention, max)",
                     "vid: where EAM-Net looked (CMAM spatial attention)"]
    assert all(viewer.layers[n].data.shape == (3, 32, 48) for n in names)


def test_a_long_4k_videos_mask_costs_only_the_frames_written(make_napari_viewer):
    """10 minutes of 4K at 25 fps as a dense uint8 (T, H, W) array is 116 GiB; the mask stack
    holds the frames written, compressed, and napari reads and paints it like an array."""
    import tracemalloc

    frames, hw = 15_000, (2160, 3840)
    tracemalloc.start()
    stack = L.label_planes(hw, frames)
    probability = np.zeros(hw, np.float32)
    probability[1000:1400, 1800:2300] = 0.9
    stack[7] = (probability >= 0.5).astype(np.uint8)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert stack.shape == (frames,) + hw and peak < 200 * 2 ** 20  # one frame's worth, not 116 GiB
    assert stack[7].sum() == 400 * 500 and stack[8].sum() == 0
    viewer = make_napari_viewer()
    labels = viewer.add_labels(stack, name="mask")
    rows, cols = np.array([1010, 1011]), np.array([100, 101])
    labels.data_setitem((np.array([7, 7]), rows, cols), 1)  # how napari's brush writes: fancy indices
    assert stack[7][1010, 100] == 1 and stack[7].sum() == 400 * 500 + 2
    labels.undo()
    assert stack[7].sum() == 400 * 500


def test_a_videos_mask_layer_is_the_lazy_stack_and_rethresholds_per_frame(make_napari_viewer):
    viewer = make_napari_viewer()
    video = viewer.add_image(np.zeros((6, 32, 48, 3), np.uint8), rgb=True, name="clip")
    labels = L.add_prediction_layers(viewer, video, _ramp(), {}, _meta(), 0.5, frame=2)
    assert not isinstance(labels.data, np.ndarray) and labels.data.shape == (6, 32, 48)
    np.testing.assert_array_equal(labels.data[2], (_ramp() >= 0.5).astype(np.uint8))
    assert labels.data[3].sum() == 0
    assert L.rethreshold(labels, 0.75) == "updated"
    np.testing.assert_array_equal(labels.data[2], (_ramp() >= 0.75).astype(np.uint8))
