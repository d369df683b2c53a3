"""The headless review queue: items, stems, status, navigation, reference scores, video frames."""
import numpy as np
import pytest
from PIL import Image

from napari_polyp.corrections import CorrectionsDataset
from napari_polyp.corrections.review import ReviewSession, reference_folder_for


def make_folder(root, n=3, with_masks=True):
    images = root / "images"
    images.mkdir(parents=True)
    if with_masks:
        (root / "masks").mkdir()
    for i in range(n):
        Image.fromarray(np.full((16, 20, 3), i * 40, np.uint8)).save(images / f"im{i}.png")
        if with_masks:
            ref = np.zeros((16, 20), np.uint8)
            ref[4:12, 4:12] = 255
            Image.fromarray(ref).save(root / "masks" / f"im{i}.png")
    return images


def square(a, b):
    mask = np.zeros((16, 20), np.uint8)
    mask[a:b, a:b] = 1
    return mask


def test_items_status_progress_and_navigation(tmp_path):
    images = make_folder(tmp_path / "data", with_masks=False)
    session = ReviewSession(images, tmp_path / "ds")
    assert [item.name for item in session.items] == ["im0.png", "im1.png", "im2.png"]
    assert session.reference_dir is None and session.scores_text(0) == ""
    assert session.progress_text() == "0 / 3 reviewed"
    session.save(1, session.image(1), square(4, 12), status="accepted", predicted=square(4, 12), model="m")
    assert session.status(1) == "accepted" and session.progress_text() == "1 / 3 reviewed"
    assert session.next_index(0, only_unreviewed=True) == 2
    assert session.previous_index(2, only_unreviewed=True) == 0
    assert session.visible(only_unreviewed=True) == [0, 2]
    assert session.next_index(2) is None and session.previous_index(0) is None
    fresh = ReviewSession(images, tmp_path / "ds")  # another viewer, later
    assert fresh.status(1) == "accepted"
    np.testing.assert_array_equal(fresh.saved_mask(1), square(4, 12))
    np.testing.assert_array_equal(fresh.saved_prediction(1), square(4, 12))


def test_reference_masks_give_dice_iou_and_running_means(tmp_path):
    images = make_folder(tmp_path / "data")
    assert reference_folder_for(images) == tmp_path / "data" / "masks"
    session = ReviewSession(images, tmp_path / "ds")
    assert session.score(0, prediction=square(4, 12)) == {"prediction": (1.0, 1.0)}
    session.score(1, prediction=square(0, 8))  # 16 of 64 overlap: dice 2*16/128, iou 16/112
    session.save(1, None, square(4, 12), status="corrected", predicted=square(0, 8))
    means = session.running_means()
    assert means["prediction"]["n"] == 2
    assert means["prediction"]["dice"] == pytest.approx((1.0 + 0.25) / 2)
    assert means["prediction"]["iou"] == pytest.approx((1.0 + 16 / 112) / 2)
    assert means["corrected"] == {"dice": 1.0, "iou": 1.0, "n": 1}
    text = session.scores_text(1)
    assert "prediction: Dice 0.250  IoU 0.143" in text and "corrected: Dice 1.000" in text


def test_a_different_image_under_the_same_name_gets_its_own_stem(tmp_path):
    images = make_folder(tmp_path / "data", with_masks=False)
    dataset = CorrectionsDataset(tmp_path / "ds")
    dataset.save(np.zeros((16, 20, 3), np.uint8) + 7, square(1, 3), stem="im0", status="accepted")
    session = ReviewSession(images, dataset)
    assert session.stem(0).startswith("im0-") and session.status(0) == "unreviewed"
    record = session.save(0, None, square(2, 5), status="corrected")
    assert record.stem == session.stem(0)
    assert dataset.get("im0").version == 1  # the other image's item is untouched
    # the same image copied elsewhere is recognised by its sha256
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "im1.png").write_bytes((images / "im1.png").read_bytes())
    ReviewSession(images, dataset).save(1, None, square(2, 5), status="accepted")
    assert ReviewSession(copy, dataset).status(0) == "accepted"


def test_video_frames_are_items(tmp_path):
    av = pytest.importorskip("av")
    path = tmp_path / "clip.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=5)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for i in range(3):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), 60 * i, np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    session = ReviewSession(path, tmp_path / "ds")
    assert [item.name for item in session.items] == ["frame 0", "frame 1", "frame 2"]
    assert session.image(2).shape == (32, 32, 3)
    mask = np.zeros((32, 32), np.uint8)
    mask[3:9, 3:9] = 1
    record = session.save(1, session.image(1), mask, status="corrected")
    assert record.stem == "clip_000001" and record.extra["frame"] == 1 and record.image.endswith(".png")
    again = ReviewSession(path, tmp_path / "ds")
    assert [again.status(i) for i in range(3)] == ["unreviewed", "corrected", "unreviewed"]
    np.testing.assert_array_equal(again.saved_mask(1), mask)


def test_a_source_datasets_own_root_is_refused(tmp_path):
    from napari_polyp.errors import UserError

    images = make_folder(tmp_path / "data")
    for target in (tmp_path / "data", images):
        with pytest.raises(UserError, match="choose a separate, new folder"):
            ReviewSession(images, target)
    assert not (images / "im0.png.tmp").exists() and sorted(p.name for p in images.iterdir()) == \
        ["im0.png", "im1.png", "im2.png"]
    ReviewSession(images, tmp_path / "data" / "corrections")  # a new folder beside is fine


def test_workflow_rules_dirty_state_and_accept_with_edits(tmp_path):
    session = ReviewSession(make_folder(tmp_path / "data"), tmp_path / "ds")
    predicted = square(4, 12)
    assert not session.is_dirty(0, predicted)  # nothing shown yet
    session.mark_clean(0, predicted)
    assert not session.is_dirty(0, predicted.copy())
    edited = predicted.copy()
    edited[0, 0] = 1
    assert session.is_dirty(0, edited)
    assert session.status_for("accepted", edited, predicted) == "corrected"
    assert session.status_for("accepted", predicted, predicted) == "accepted"
    assert session.status_for("corrected", predicted, predicted) == "accepted"  # C on an unedited mask
    assert session.status_for("corrected", edited, predicted) == "corrected"
    assert session.status_for("rejected", edited, predicted) == "rejected"
    assert session.status_for("accepted", edited, None) == "accepted"  # nothing to compare with


def test_table_worst_first_csv_and_rejected_not_counted(tmp_path):
    import csv

    session = ReviewSession(make_folder(tmp_path / "data"), tmp_path / "ds")
    session.score(0, prediction=square(4, 12))  # Dice 1
    session.score(1, prediction=square(0, 8))  # Dice 0.25
    session.save(2, None, np.zeros((16, 20), np.uint8), status="rejected", predicted=np.zeros((16, 20), np.uint8))
    assert session.worst_first() == [2, 1, 0]  # by Dice whatever the status: the empty prediction is the worst
    assert session.running_means()["prediction"]["n"] == 2  # the rejected item is left out, not a 0
    assert session.table_row(2)["status"] == "rejected" and session.table_row(2)["pixels_changed"] == 0
    rows = list(csv.DictReader(open(session.write_table_csv(tmp_path / "t.csv"))))
    assert [r["item"] for r in rows] == ["im0.png", "im1.png", "im2.png"]
    assert float(rows[1]["dice"]) == pytest.approx(0.25) and rows[0]["pixels_changed"] == ""


def test_most_uncertain_first_puts_half_confident_unreviewed_items_first(tmp_path):
    session = ReviewSession(make_folder(tmp_path / "data"), tmp_path / "ds")
    confident = np.zeros((16, 20), np.float32)
    half = np.full((16, 20), 0.5, np.float32)
    session.note_prediction(0, confident)
    session.note_prediction(1, half)
    session.note_prediction(2, half)
    session.save(2, None, square(4, 12), status="accepted")
    assert session.most_uncertain_first([0, 1, 2]) == [1, 0, 2]
