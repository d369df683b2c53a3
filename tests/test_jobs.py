"""The job protocol and the prediction jobs, without Qt: what each job yields."""
import numpy as np
import pytest

from napari_polyp import jobs
from napari_polyp.inference.prediction import Prediction


class FakePredictor:
    """Probability = the image's red channel / 255; counts its calls."""

    engine_note = ""

    def __init__(self, sha="abc"):
        self.sha, self.calls = sha, []

    def predict(self, image):
        self.calls.append(1)
        return Prediction(image[..., 0] / 255.0, {"map": image[..., 1] / 255.0}, "ea-dk", self.sha, 0.01, "onnxruntime")

    def predict_batch(self, images):
        self.calls.append(len(images))
        return [Prediction(im[..., 0] / 255.0, {}, "ea-dk", self.sha, 0.01, "onnxruntime") for im in images]


def _video(n=6, size=8):
    return np.stack([np.full((size, size, 3), 40 * i, np.uint8) for i in range(n)])


def test_predict_frames_yields_each_frame_with_its_provenance_then_finished():
    video, predictor = _video(), FakePredictor()
    choice = jobs.ModelChoice.of("ea-dk", "weights.pt", tta=True)
    events = list(jobs.predict_frames(lambda: predictor, jobs.frame_reader(video), list(range(6)), choice,
                                      source="clip.mp4", device="cpu"))
    results = [e.value for e in events if isinstance(e, jobs.Result)]
    assert [r.frame for r in results] == list(range(6))
    assert isinstance(events[-1], jobs.Finished) and events[-1].value == 6
    assert predictor.calls == [jobs.VIDEO_BATCH, 6 - jobs.VIDEO_BATCH]  # batched
    assert np.allclose(results[3].probability, 120 / 255)
    meta = results[0].provenance.metadata()
    assert meta["model"] == "ea-dk" and meta["checkpoint_sha256"] == "abc" and meta["tta"] is True
    assert meta["source_path"] == "clip.mp4" and meta["engine"] == "onnxruntime" and meta["device"] == "cpu"


def test_a_network_that_cannot_load_is_one_failed_line_naming_it():
    def broken():
        raise FileNotFoundError("weights.pt: no such file")

    events = list(jobs.predict_frames(broken, jobs.frame_reader(_video()), [None], jobs.ModelChoice.of("pefnet")))
    assert len(events) == 1 and isinstance(events[0], jobs.Failed)
    assert "pefnet" in events[0].message and "weights.pt" in events[0].message


def test_a_frame_that_cannot_be_read_fails_the_run_naming_the_frames():
    def read(frame):
        raise ValueError("truncated")

    events = list(jobs.predict_frames(FakePredictor, read, [0, 1], jobs.ModelChoice.of("ea-dk"), name="clip"))
    assert isinstance(events[-1], jobs.Failed)
    assert "clip" in events[-1].message and "frames 0-1" in events[-1].message and "truncated" in events[-1].message


def test_run_on_all_skips_an_unreadable_item_and_goes_on():
    images = {0: _video(1)[0], 2: _video(3)[2]}

    def read(index):
        if index not in images:
            raise ValueError(f"item {index}: cannot read")
        return images[index]

    events = list(jobs.predict_items(FakePredictor, read, [0, 1, 2], jobs.ModelChoice.of("ea-dk"),
                                     source_of=lambda i: f"img{i}.jpg"))
    done = [e.value[0] for e in events if isinstance(e, jobs.Result)]
    assert done == [0, 2]
    assert [e.text for e in events if isinstance(e, jobs.Note)] == ["skipped item 1: cannot read"]
    assert [e.done for e in events if isinstance(e, jobs.Progress)] == [1, 2, 3]
    assert [e.value[1].provenance.source for e in events if isinstance(e, jobs.Result)] == ["img0.jpg", "img2.jpg"]


def test_compare_finishes_with_both_predictions():
    a, b = jobs.ModelChoice.of("ea-dk"), jobs.ModelChoice.of("microaunet")
    image = _video(2)[1]
    events = list(jobs.compare_frame([(a, FakePredictor), (b, lambda: FakePredictor(sha=""))], image))
    assert [type(e) for e in events] == [jobs.Progress, jobs.Progress, jobs.Finished]
    first, second = events[-1].value
    assert first.provenance.choice == a and second.provenance.choice == b
    assert second.provenance.checkpoint_sha256 == ""


@pytest.mark.parametrize("threshold", [0.1, 0.9])
def test_a_predicted_mask_is_derived_at_the_asked_threshold(threshold):
    probability = np.linspace(0, 1, 16, dtype=np.float32).reshape(4, 4)
    kept = jobs.Predicted(probability, {}, jobs.Provenance(jobs.ModelChoice.of("ea-dk")))
    assert int(kept.mask(threshold).sum()) == int((probability >= threshold).sum())


def test_a_changed_checkpoint_file_is_another_choice(tmp_path):
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"1")
    before = jobs.ModelChoice.of("ea-dk", weights)
    weights.write_bytes(b"22")
    assert jobs.ModelChoice.of("ea-dk", weights) != before
    assert jobs.ModelChoice.of("ea-dk", None).label() == "ea-dk (random weights)"
