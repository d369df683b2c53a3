"""`app VIDEO --screenshot` reports the mask's coverage from the frame on screen (issue 25): it
used to read every frame of the video (13 GB for a minute of 4K)."""
import numpy as np

from napari_polyp.app import shown_coverage


class LazyFrames:
    """A video-sized mask that counts the frames read."""

    shape = (1000, 4, 5)
    ndim = 3
    dtype = np.uint8

    def __init__(self):
        self.read = []

    def __getitem__(self, index):
        if not isinstance(index, tuple) or len(index) != 1 or not isinstance(index[0], int):
            raise AssertionError(f"asked for more than one frame: {index!r}")
        self.read.append(index[0])
        return np.pad(np.ones((2, 5), np.uint8), ((0, 2), (0, 0)))

    def __array__(self, *args, **kwargs):
        raise AssertionError("read the whole video")


def test_coverage_reads_only_the_frame_on_screen():
    frames = LazyFrames()
    assert shown_coverage(frames, (17, 0, 0)) == 0.5 and frames.read == [17]
    assert shown_coverage(np.ones((3, 4), np.uint8), (0, 0)) == 1.0
