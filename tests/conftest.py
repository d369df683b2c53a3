import os
from pathlib import Path

import pytest
import torch

# Tests run on 2 cores next to other work; keep torch from oversubscribing them.
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    """User checkpoints/settings go to a temp folder, never the tester's home."""
    monkeypatch.setenv("NAPARI_POLYP_HOME", str(tmp_path / "napari-polyp-home"))
    monkeypatch.delenv("NAPARI_POLYP_WEIGHTS", raising=False)
    # Each test has its own home, so an ONNX export would be redone in every test that builds
    # a Predictor (random weights are new each time too): eager torch by default here;
    # tests/inference/test_engine.py and the tests that choose "onnxruntime" cover ONNX Runtime.
    monkeypatch.setenv("NAPARI_POLYP_ENGINE", "torch")


@pytest.fixture
def shared_data():
    """../shared/data when it is there (CI has it); tests that need it skip otherwise."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not beside this checkout")
    return SHARED_DATA


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """napari's make_napari_viewer teardown reads ``item.rep_call``; a test skipped
    during setup (e.g. no ../shared/data) never gets one, so give it the setup report."""
    outcome = yield
    report = outcome.get_result()
    if report.when == "setup" and not report.passed and not hasattr(item, "rep_call"):
        item.rep_call = report


class MovingDisc:
    """A small real video (mp4) of a bright disc moving right over a texture the optical flow
    can follow, and its true masks: Review on video and propagation tests use it."""

    size, radius, step = 96, 16, 3

    def disc(self, t: int):
        import numpy as np

        yy, xx = np.mgrid[0:self.size, 0:self.size]
        return (yy - self.size // 2) ** 2 + (xx - 24 - self.step * t) ** 2 < self.radius ** 2

    def write(self, folder: Path, frames: int) -> Path:
        import numpy as np

        from napari_polyp.io.video import write_video

        yy, xx = np.mgrid[0:self.size, 0:self.size]
        texture = ((xx * 7 + yy * 13) % 60 + 40).astype(np.uint8)
        video = []
        for t in range(frames):
            frame = np.repeat(texture[..., None], 3, -1)
            frame[self.disc(t)] = (230, 140, 120)
            video.append(frame)
        return write_video(folder / "clip.mp4", video, fps=10)


@pytest.fixture
def moving_disc():
    return MovingDisc()
