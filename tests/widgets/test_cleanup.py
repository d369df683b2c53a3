"""Clean-up buttons on a real viewer: exact results, current frame only, undoable."""
import numpy as np

from napari_polyp.corrections import cleanup
from napari_polyp.widgets.cleanup import CleanupWidget


def blob_with_hole_and_speck():
    mask = np.zeros((24, 24), np.uint8)
    mask[4:14, 4:14] = 1
    mask[8, 8] = 0  # a hole
    mask[20, 20] = 1  # a speck
    return mask


def test_each_button_gives_the_pure_function_result_and_undo_restores(make_napari_viewer):
    viewer = make_napari_viewer()
    original = blob_with_hole_and_speck()
    layer = viewer.add_labels(original.copy(), name="m")
    widget = CleanupWidget(viewer)
    widget.min_size_spin.setValue(5)
    widget.radius_spin.setValue(1)
    expected = {
        "Fill holes": cleanup.fill_holes(original),
        "Remove small objects": cleanup.remove_small_objects(original, 5),
        "Keep largest": cleanup.keep_largest_component(original),
        "Smooth": cleanup.smooth(original, 1),
        "Grow 1 px": cleanup.grow(original),
        "Shrink 1 px": cleanup.shrink(original),
    }
    for name, result in expected.items():
        changed = widget.run_action(name)
        np.testing.assert_array_equal(layer.data, result, err_msg=name)
        assert changed == int(np.count_nonzero(result != original))
        widget.undo()
        np.testing.assert_array_equal(layer.data, original, err_msg=f"undo {name}")
    widget.redo()  # redo the last one (shrink)
    np.testing.assert_array_equal(layer.data, expected["Shrink 1 px"])
    layer.undo()  # the layer's own undo (what Ctrl+Z does) takes it back too
    np.testing.assert_array_equal(layer.data, original)


def test_actions_touch_only_the_current_frame_of_a_stack(make_napari_viewer):
    viewer = make_napari_viewer()
    frames = np.stack([blob_with_hole_and_speck()] * 3)
    layer = viewer.add_labels(frames.copy(), name="video mask")
    widget = CleanupWidget(viewer)
    viewer.dims.set_current_step(0, 1)
    widget.run_action("Fill holes")
    np.testing.assert_array_equal(layer.data[1], cleanup.fill_holes(frames[1]))
    np.testing.assert_array_equal(layer.data[0], frames[0])
    np.testing.assert_array_equal(layer.data[2], frames[2])
    assert "frame 1" in widget.status_label.text()
    widget.undo()
    np.testing.assert_array_equal(layer.data, frames)


def test_without_a_labels_layer_the_buttons_are_disabled(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((8, 8)))
    widget = CleanupWidget(viewer)
    assert not widget.buttons["Fill holes"].isEnabled()
    assert widget.run_action("Fill holes") is None
    viewer.add_labels(np.zeros((8, 8), np.uint8))
    assert widget.buttons["Fill holes"].isEnabled()
    assert widget.run_action("Fill holes") == 0  # nothing to change, nothing recorded


def test_a_selected_stroke_layer_is_not_what_clean_up_changes(make_napari_viewer):
    viewer = make_napari_viewer()
    mask = viewer.add_labels(blob_with_hole_and_speck(), name="mask")
    strokes = viewer.add_labels(np.zeros((24, 24), np.uint8), name="strokes",
                                metadata={"napari_polyp_role": "strokes"})
    viewer.layers.selection.active = strokes  # refine leaves the strokes selected, for more painting
    widget = CleanupWidget(viewer)
    assert widget.labels_layer() is mask and "mask" in widget.status_label.text()
    assert widget.run_action("Fill holes") == 1
    assert mask.data[8, 8] == 1 and not strokes.data.any()
