"""Review on a video in a real napari window, the Workspace docked through napari's plugin path:
fix frame 0, Propagate ▶, Accept range writes a record per frame with its provenance."""
import functools
import json

import numpy as np

from napari_polyp.video import propagate

from .test_workspace_trust import Factory, dock, idle, press

FRAMES = 10


def test_fix_frame_0_propagate_and_accept_the_range(make_napari_viewer, qtbot, tmp_path, moving_disc):
    viewer = make_napari_viewer()
    workspace = dock(viewer, Factory())
    review = workspace.review
    review.propagate_fn = functools.partial(propagate, refine=False)  # the flow alone: no refiner to load
    review.set_dataset(tmp_path / "corrections")
    review.set_source(moving_disc.write(tmp_path, FRAMES))
    idle(qtbot, review)
    assert review.video_row.isVisibleTo(review) and review.current == 0
    assert not review.propagate(+1)  # frame 0 is not a key yet
    assert "not a key" in review.last_error

    review.labels_layer().data = moving_disc.disc(0).astype(np.uint8)  # the annotator fixes frame 0 ...
    review.advance_check.setChecked(False)
    press(viewer, "A")  # ... and saves it: a key
    idle(qtbot, review)
    assert review.video_review.is_key(0)
    review.span_spin.setValue(6)
    review.propagate_button.click()
    qtbot.waitUntil(lambda: review._propagation is None, timeout=60_000)
    assert review.last_error is None or "not a key" in review.last_error
    assert "propagated to 6 frame(s)" in review.status_label.text()
    row = review.item_list.row_of(3)
    assert review.item_list.item(row, 1).text() == "↝ key 0"
    assert review.item_list.item(row, 1).toolTip() == "propagated from key 0"
    assert review.item_list.item(row, 2).text() == "carried"  # no network made it; its doubt beside
    assert 0.0 <= float(review.item_list.item(row, 5).text()) <= 1.0
    review.order_combo.setCurrentText("most uncertain first")
    assert set(review.order()[:6]) == {1, 2, 3, 4, 5, 6}  # the carried frames, most doubted first
    review.order_combo.setCurrentText("folder order")

    review.open_item(4)  # a propagated frame shows its carried mask, not the network's
    idle(qtbot, review)
    shown = review.labels_layer().data > 0
    assert 2 * (shown & moving_disc.disc(4)).sum() / (shown.sum() + moving_disc.disc(4).sum()) > 0.85
    review.open_item(0)
    idle(qtbot, review)
    review.accept_range_button.click()
    lines = [json.loads(line) for line in (tmp_path / "corrections" / "manifest.jsonl").read_text().splitlines()]
    carried = [r for r in lines if "propagated_from" in r]
    assert [r["frame"] for r in carried] == [1, 2, 3, 4, 5, 6]
    assert all(r["status"] == "accepted" and r["propagated_from"] == 0 and r["model"] == "propagation"
               for r in carried)
    assert "accepted 6 carried frame(s) next to key frame 0" in review.status_label.text()
    assert review.item_list.item(review.item_list.row_of(5), 1).text() == "✓ key 0"
    assert review.item_list.item(review.item_list.row_of(0), 1).text() == "◆ key"


def test_accept_range_stops_before_a_frame_carried_past_a_jump_and_says_so(make_napari_viewer, qtbot, tmp_path,
                                                                          moving_disc):
    from napari_polyp.video import Doubt

    def jumps_at_4(frames, key_masks, **kwargs):  # the flow explains no step from frame 4 on
        result = propagate(frames, key_masks, refine=False, **kwargs)
        result.confidence[4:] = [0.0] * (len(result) - 4)
        result.doubts.append(Doubt(0, "forward", 4, "a jump"))
        return result

    viewer = make_napari_viewer()
    review = dock(viewer, Factory()).review
    review.propagate_fn = jumps_at_4
    review.set_dataset(tmp_path / "corrections")
    review.set_source(moving_disc.write(tmp_path, 8))
    idle(qtbot, review)
    review.labels_layer().data = moving_disc.disc(0).astype(np.uint8)
    review.advance_check.setChecked(False)
    press(viewer, "A")
    idle(qtbot, review)
    review.propagate_button.click()
    qtbot.waitUntil(lambda: review._propagation is None, timeout=60_000)
    assert review.status_label.text() == ("propagated to 7 frame(s); ↝? carried past a jump: frames 4–7: "
                                          "check them (N), then Accept range")
    assert "carried on past frame 4" in review.status_label.toolTip()  # the whole of why
    assert review.item_list.item(review.item_list.row_of(4), 1).text() == "↝? key 0"
    assert review.item_list.item(review.item_list.row_of(3), 1).text() == "↝ key 0"
    review.open_item(5)
    idle(qtbot, review)
    assert "past a jump" in review.status_label.text()
    review.open_item(0)
    idle(qtbot, review)
    review.accept_range_button.click()
    lines = [json.loads(line) for line in (tmp_path / "corrections" / "manifest.jsonl").read_text().splitlines()]
    assert [r["frame"] for r in lines if "propagated_from" in r] == [1, 2, 3]
    assert "frame 4 was carried past a jump" in review.status_label.text()


def test_cancel_says_nothing_was_filled(make_napari_viewer, qtbot, tmp_path, moving_disc):
    import time

    def slow(frames, key_masks, progress=None, **kwargs):  # a frame every 0.2 s: time to press Cancel
        def tick(done, total):
            time.sleep(0.2)
            progress(done, total)
        return propagate(frames, key_masks, refine=False, progress=tick, **kwargs)

    viewer = make_napari_viewer()
    review = dock(viewer, Factory()).review
    review.propagate_fn = slow
    review.set_dataset(tmp_path / "corrections")
    review.set_source(moving_disc.write(tmp_path, FRAMES))
    idle(qtbot, review)
    review.labels_layer().data = moving_disc.disc(0).astype(np.uint8)
    press(viewer, "A")  # saved, a key; "next after saving" opens frame 1
    idle(qtbot, review)
    assert review.current == 1
    review.propagate_button.click()  # from the key behind the open frame
    assert review.status_label.text().startswith("propagating from key frame 0")
    review.cancel_all_button.click()
    qtbot.waitUntil(lambda: review._propagation is None, timeout=60_000)
    assert review.status_label.text() == "propagation cancelled: no frame filled"
    assert review.video_review.propagated(1) is None


def test_the_story_after_saving_a_key_moves_on(make_napari_viewer, qtbot, tmp_path, moving_disc):
    """Saving frame 0 opens frame 1 with the network's mask: Propagate ▶ there carries key 0,
    frame 1 then shows its carried mask (A saves that, not the network's), ◀ from the next frame
    after a later key carries that key back, Accept range on a carried frame takes its stretch,
    and an empty key is refused once, before any job."""
    viewer = make_napari_viewer()
    review = dock(viewer, Factory()).review
    review.propagate_fn = functools.partial(propagate, refine=False)
    review.set_dataset(tmp_path / "corrections")
    review.set_source(moving_disc.write(tmp_path, FRAMES))
    idle(qtbot, review)
    review.labels_layer().data = moving_disc.disc(0).astype(np.uint8)
    press(viewer, "A")
    idle(qtbot, review)
    assert review.current == 1
    review.span_spin.setValue(4)
    review.propagate_button.click()
    qtbot.waitUntil(lambda: review._propagation is None, timeout=60_000)
    idle(qtbot, review)
    shown = review.labels_layer().data > 0
    np.testing.assert_array_equal(shown, review.video_review.propagated(1).mask(0.5) > 0)

    assert review.accept_range() == 4  # on carried frame 1: its stretch from key 0
    assert "accepted 4 carried frame(s) next to key frame 0" in review.status_label.text()
    assert [review.video_review.state(f) for f in (1, 4)] == ["accepted from key 0"] * 2

    review.open_item(6)
    idle(qtbot, review)
    review.labels_layer().data = moving_disc.disc(6).astype(np.uint8)
    press(viewer, "A")  # key 6; opens frame 7
    idle(qtbot, review)
    assert review.current == 7
    review.span_spin.setValue(25)
    review.propagate_back_button.click()  # no key after frame 7: from key 6, backward
    qtbot.waitUntil(lambda: review._propagation is None, timeout=60_000)
    assert review.video_review.state(5) == "propagated from key 6"

    review.open_item(8)
    idle(qtbot, review)
    review.labels_layer().data = np.zeros_like(review.labels_layer().data)
    review.advance_check.setChecked(False)
    press(viewer, "C")  # the lesion out of view: an empty key
    idle(qtbot, review)
    assert not review.propagate(+1)
    assert "frame 8 is saved with an empty mask" in review.last_error and review._propagation is None
