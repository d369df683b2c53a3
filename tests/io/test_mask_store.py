"""The per-frame mask store (napari_polyp/io/mask_store.py): round trips, written frames, lazy views."""
import tracemalloc

import numpy as np
import pytest

from napari_polyp.errors import InputFileError, UserError
from napari_polyp.io.mask_store import MaskStore, is_mask_store, probability_to_uint8


def _disc(h, w, cy, cx, r):
    yy, xx = np.mgrid[:h, :w]
    return ((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r).astype(np.uint8)


def test_frames_round_trip_with_probabilities_and_provenance(tmp_path):
    path = tmp_path / "clip.zarr"
    store = MaskStore.create(path, (5, 24, 32), probabilities=True, attrs={"network": "ea-dk", "threshold": 0.5})
    prob = np.linspace(0, 1, 24 * 32, dtype=np.float32).reshape(24, 32)
    store.write(1, prob >= 0.5, prob)
    store.write(3, np.zeros((24, 32), bool), np.zeros((24, 32), np.float32))  # an empty mask is still written
    again = MaskStore.open(path)
    assert again.shape == (5, 24, 32) and len(again) == 5 and again.has_probabilities
    assert again.attrs["network"] == "ea-dk" and again.attrs["kind"] == "masks"
    assert np.array_equal(again.read(1), (prob >= 0.5).astype(np.uint8)) and again.read(1).dtype == np.uint8
    assert np.array_equal(again.read_probability(1) * 255, probability_to_uint8(prob).astype(np.float32))
    assert np.abs(again.read_probability(1) - prob).max() <= 0.5 / 255 + 1e-6
    assert again.written() == [1, 3] and again.is_written(3) and not again.is_written(0)
    assert again.frame_file(3).is_file() and again.frame_file(3, "probability").is_file()  # one file a frame
    assert not again.read(0).any()  # never written: zeros
    assert is_mask_store(path) and not is_mask_store(tmp_path)


def test_a_read_only_store_refuses_writes_and_bad_shapes_are_named(tmp_path):
    path = tmp_path / "clip.zarr"
    MaskStore.create(path, (2, 8, 8))
    with pytest.raises(UserError, match="read-only"):
        MaskStore.open(path).write(0, np.zeros((8, 8)))
    writable = MaskStore.open(path, mode="r+")
    with pytest.raises(UserError, match="8×8"):
        writable.write(0, np.zeros((8, 9)))
    with pytest.raises(IndexError, match="out of range"):
        writable.read(2)
    with pytest.raises(UserError, match="holds masks already"):
        MaskStore.create(path, (2, 8, 8))
    MaskStore.create(path, (3, 8, 8), overwrite=True)
    assert MaskStore.open(path).shape == (3, 8, 8)


def test_what_is_not_a_store_is_refused_and_left_alone(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"x")
    with pytest.raises(InputFileError, match="not a napari-polyp mask store"):
        MaskStore.open(folder)
    with pytest.raises(UserError, match="not a mask store"):
        MaskStore.create(folder, (1, 4, 4), overwrite=True)
    assert (folder / "a.png").read_bytes() == b"x"
    with pytest.raises(InputFileError, match="does not exist"):
        MaskStore.open(tmp_path / "missing.zarr")


def test_a_long_video_store_is_never_whole_in_memory(tmp_path):
    """3,000 frames of 480×640 would be 922 MB dense: creating, writing, listing and viewing it
    lazily stays within a few MB of Python allocations."""
    frames, h, w = 3000, 480, 640
    tracemalloc.start()
    store = MaskStore.create(tmp_path / "long.zarr", (frames, h, w))
    for i in range(0, frames, 500):
        store.write(i, _disc(h, w, 240, 100 + i // 10, 50))
    view = store.masks()
    assert view.shape == (frames, h, w) and view.dtype == np.uint8
    assert np.array_equal(np.asarray(view[1500]), _disc(h, w, 240, 250, 50))
    assert not np.asarray(view[1499]).any()
    assert store.written() == list(range(0, frames, 500))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 40 * 2**20, f"peak {peak / 2**20:.0f} MiB"
    on_disk = sum(p.stat().st_size for p in (tmp_path / "long.zarr").rglob("*") if p.is_file())
    assert on_disk < 200_000  # one compressed file per written frame
