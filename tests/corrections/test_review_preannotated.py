"""A pre-annotated video (a mask store written by `predict`) in Review, the reader and the app:
its stored masks are the frames' predictions, nothing is recomputed."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from napari_polyp.cli import main
from napari_polyp.corrections.preannotated import consistent_probability
from napari_polyp.corrections.review import ReviewSession
from napari_polyp.jobs import ModelChoice
from napari_polyp.errors import UserError
from napari_polyp.io.mask_store import MaskStore
from napari_polyp.io.video import write_video

REPO = Path(__file__).resolve().parents[2]


def _frames(count, height=48, width=64):
    yy, xx = np.mgrid[:height, :width]
    frames = []
    for t in range(count):
        frame = np.full((height, width, 3), 90, np.uint8)
        frame[(yy - 24) ** 2 + (xx - 14 - 2 * t) ** 2 < 100] = (220, 110, 120)
        frames.append(frame)
    return frames


@pytest.fixture(scope="module")
def made_once(tmp_path_factory):
    """clip.mp4 (8 frames) and masks/clip.zarr from `predict --probability` (frames 0-5 only: the
    store of a run that was stopped), made once for the module."""
    root = tmp_path_factory.mktemp("pre-annotated")
    video = write_video(root / "clip.mp4", _frames(8), fps=10)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("NAPARI_POLYP_HOME", str(root / "home"))
        env.setenv("NAPARI_POLYP_ENGINE", "torch")
        assert main(["predict", "--model", "microaunet", str(video), "--out", str(root / "masks"),
                     "--probability", "--quiet", "--json"]) == 0
    store = root / "masks" / "clip.zarr"
    for frame in (6, 7):  # as if the run had not reached them
        for array in ("mask", "probability"):
            MaskStore.open(store).frame_file(frame, array).unlink()
    return video, store


@pytest.fixture
def pre_annotated(made_once, tmp_path):
    """A copy of the module's video and store for one test (store and video side by side)."""
    import zarr

    video, store = made_once
    shutil.copy(video, tmp_path / video.name)
    (tmp_path / "masks").mkdir()
    shutil.copytree(store, tmp_path / "masks" / store.name)
    group = zarr.open_group(str(tmp_path / "masks" / store.name), mode="r+")
    group.attrs["napari_polyp"] = {**group.attrs["napari_polyp"], "source": str(tmp_path / video.name)}
    return tmp_path / video.name, tmp_path / "masks" / store.name


def test_review_walks_the_stored_masks_without_running_a_network(tmp_path, pre_annotated):
    video, store_path = pre_annotated
    store = MaskStore.open(store_path)
    session = ReviewSession(store_path, tmp_path / "corrections")
    session.use_model(ModelChoice.of("ea-dk", None, tta=True))  # the app's choice is another network
    assert len(session) == 8 and session.items[3].frame == 3 and session.items[3].source_path == video
    kept = session.prediction(3)
    assert kept is not None and np.array_equal(kept.mask(0.5), store.read(3))  # exactly the stored mask
    assert kept.provenance.choice.network == "microaunet" and kept.provenance.checkpoint_sha256 == \
        store.attrs["checkpoint_sha256"]
    assert session.network_of(3) == "microaunet (pre-annotated)" and session.network_of(7) == ""
    assert session.to_predict(range(8)) == [6, 7]  # Run on all: only the frames the run did not write
    session.forget(2)  # R: the chosen network instead of the stored mask
    assert session.prediction(2) is None and session.to_predict(range(8)) == [2, 6, 7]
    edited = kept.mask(0.5).copy()
    edited[:5, :5] = 1
    record = session.commit(3, edited, "accepted", basis=kept, image=session.image(3))
    assert record.status == "corrected" and record.model == "microaunet"
    assert record.checkpoint_sha256 == store.attrs["checkpoint_sha256"] and record.extra.get("frame") == 3


def test_the_reader_opens_the_video_with_its_masks_lazily(pre_annotated):
    from napari_polyp.io.readers import get_reader

    video, store_path = pre_annotated
    layers = get_reader(str(store_path))(str(store_path))
    (frames, video_meta, video_kind), (masks, mask_meta, mask_kind), (prob, prob_meta, _) = layers
    assert video_kind == "image" and video_meta["metadata"]["source_path"] == str(video) and len(frames) == 8
    assert mask_kind == "labels" and type(masks).__module__.startswith("dask") and masks.shape == (8, 48, 64)
    assert mask_meta["metadata"]["napari_polyp_role"] == "pre_annotation"
    assert np.array_equal(np.asarray(masks[4]), MaskStore.open(store_path).read(4))
    assert prob_meta["visible"] is False and prob.dtype == np.uint8
    assert prob_meta["metadata"]["napari_polyp_role"] == "pre_annotation_probability"


def test_segment_and_live_take_the_video_not_the_stored_probabilities(make_napari_viewer, pre_annotated):
    """The probability layer comes last (it is active): Segment had chosen it as the image, and
    Live ran the network on it."""
    video, store_path = pre_annotated
    viewer = make_napari_viewer()
    _, segment = viewer.window.add_plugin_dock_widget("napari-polyp", "Segment")
    viewer.open(str(store_path), plugin="napari-polyp")
    assert segment.image_layer().name == video.stem
    assert [segment.image_combo.itemText(i) for i in range(segment.image_combo.count())] == [video.stem]


def test_a_store_whose_video_changed_is_one_clear_error(tmp_path, pre_annotated):
    video, store_path = pre_annotated
    write_video(video, _frames(5), fps=10)
    with pytest.raises(UserError, match="the video changed since it was pre-annotated"):
        ReviewSession(store_path, tmp_path / "corrections")
    video.unlink()
    with pytest.raises(UserError, match="clip.mp4 is not there"):
        ReviewSession(store_path, tmp_path / "corrections")


def test_consistent_probability_keeps_the_stored_mask_at_its_threshold():
    probability = np.array([[0.399, 0.4, 0.7]], np.float32)
    stored = (probability >= 0.4).astype(np.uint8)
    rounded = np.rint(probability * 255) / 255  # 0.399 rounds up to 102/255 = 0.4: over the threshold
    assert not np.array_equal(rounded >= 0.4, stored.astype(bool))
    fixed = consistent_probability(rounded, stored, 0.4)
    assert np.array_equal(fixed >= 0.4, stored.astype(bool)) and np.abs(fixed - rounded).max() < 1 / 255


@pytest.mark.skipif(not os.environ.get("DISPLAY"), reason="needs an X display (pytest-xvfb provides one)")
def test_the_app_opens_a_store_with_its_masks_and_runs_nothing(tmp_path, pre_annotated):
    _, store_path = pre_annotated
    shot = tmp_path / "shot.png"
    result = subprocess.run([sys.executable, "-m", "napari_polyp.cli", "app", str(store_path), "--screenshot", str(shot)],
                            cwd=REPO, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert "clip masks, microaunet (pre-annotated) (stored)" in result.stdout and "first mask after" not in result.stdout
    assert shot.stat().st_size > 10_000


def test_the_review_widget_walks_a_store_without_running_the_network(make_napari_viewer, qtbot, tmp_path,
                                                                     pre_annotated):
    from napari_polyp.widgets.review import ReviewWidget

    _, store_path = pre_annotated
    store = MaskStore.open(store_path)
    viewer = make_napari_viewer()
    widget = ReviewWidget(viewer, ask_unsaved=lambda name: "discard")
    widget.model_combo.setCurrentText("microaunet")
    widget.select_random_weights()  # the chosen network is another one: the stored masks still stand
    widget.auto_check.setChecked(True)  # predict on open: still nothing runs for a stored frame
    assert widget.set_dataset(tmp_path / "corrections") is False and widget.set_source(store_path)
    qtbot.waitUntil(lambda: widget.labels_layer() is not None, timeout=60_000)
    assert not widget.busy and widget.current == 0
    assert np.array_equal(np.asarray(widget.labels_layer().data), store.read(0))
    assert "pre-annotated" in widget.status_label.text()
    assert widget.next() and not widget.busy
    assert np.array_equal(np.asarray(widget.labels_layer().data), store.read(1))
    record = widget.save("accepted")
    assert record is not None and record.status == "accepted" and record.model == "microaunet"
    assert record.checkpoint_sha256 == store.attrs["checkpoint_sha256"] and record.extra.get("frame") == 1
