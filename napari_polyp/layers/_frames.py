"""Frames of image layers: how many, which one is on screen, one as pixels, and the sparse
stack that holds per-frame float maps of a video."""
from __future__ import annotations

from typing import Dict, Optional

import numpy as np

from ..jobs import frame_reader


# -- image layers: frames -------------------------------------------------------
def frame_count(image_layer) -> Optional[int]:
    """Number of frames of a T x H x W (x 3) image (or Labels) layer, None for a single 2D one."""
    spatial = image_layer.data.ndim - (1 if getattr(image_layer, "rgb", False) else 0)  # Labels have no .rgb
    if spatial == 2:
        return None
    if spatial == 3:
        return int(image_layer.data.shape[0])
    raise ValueError(f"layer {image_layer.name!r} has {spatial} spatial dimensions; "
                     "napari-polyp segments 2D images and T x H x W stacks")


def spatial_shape(image_layer) -> tuple:
    shape = image_layer.data.shape
    return tuple(shape[-3:-1] if image_layer.rgb else shape[-2:])


def image_frame(image_layer, frame: Optional[int] = None) -> np.ndarray:
    """One frame (or the image) of a layer as HxWx3 uint8, ready for a Predictor."""
    return frame_reader(image_layer.data)(frame)


def current_frame(viewer, image_layer) -> Optional[int]:
    """The frame of ``image_layer`` the viewer shows now (None for a 2D image)."""
    n = frame_count(image_layer)
    if n is None:
        return None
    point = image_layer.world_to_data(viewer.dims.point)
    return int(np.clip(round(float(point[0])), 0, n - 1))


def label_frame_axis(viewer) -> None:
    """Name the frame axis of a video "frame" (napari's default label is "-3"); labels the user
    set are kept."""
    ndim = viewer.dims.ndim
    if ndim < 3:
        return
    labels = list(viewer.dims.axis_labels)
    axis = ndim - 3  # layers are right-aligned: a T x H x W stack's T is the third axis from the end
    if labels[axis] == str(axis - ndim):
        labels[axis] = "frame"
        viewer.dims.axis_labels = labels


# -- sparse frame stack for per-frame float maps -------------------------------
class FrameStack:
    """A T x H x W array whose frames are stored only once set; others read as 0.

    napari takes it as Image layer data (shape, dtype, ndim, size, __getitem__).
    """

    ndim = 3

    def __init__(self, frames: int, hw, dtype=np.float16):
        self.shape = (int(frames), int(hw[0]), int(hw[1]))
        self.dtype = np.dtype(dtype)
        self.frames: Dict[int, np.ndarray] = {}

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    def __len__(self) -> int:
        return self.shape[0]

    def frame(self, t: int) -> np.ndarray:
        t = int(t) % self.shape[0]
        found = self.frames.get(t)
        return found if found is not None else np.zeros(self.shape[1:], self.dtype)

    def __setitem__(self, t, value) -> None:
        if not isinstance(t, (int, np.integer)):
            raise TypeError("FrameStack frames are set one at a time: stack[t] = HxW array")
        value = np.asarray(value, dtype=self.dtype)
        if value.shape != self.shape[1:]:
            raise ValueError(f"frame shape {value.shape} != {self.shape[1:]}")
        self.frames[int(t) % self.shape[0]] = value

    def __getitem__(self, key):
        key = key if isinstance(key, tuple) else (key,)
        if any(k is Ellipsis for k in key):
            at = key.index(Ellipsis)
            key = key[:at] + (slice(None),) * (self.ndim - len(key) + 1) + key[at + 1:]
        key = key + (slice(None),) * (self.ndim - len(key))
        first, rest = key[0], key[1:]
        if isinstance(first, (int, np.integer)):
            return self.frame(first)[rest]
        indices = range(*first.indices(self.shape[0])) if isinstance(first, slice) \
            else np.arange(self.shape[0])[np.asarray(first)].ravel()
        if len(indices) == 0:
            return np.zeros((0,) + self.shape[1:], self.dtype)[(slice(None),) + rest]
        return np.stack([self.frame(t) for t in indices])[(slice(None),) + rest]

    def __array__(self, dtype=None, copy=None):
        out = self[:]
        return out.astype(dtype) if dtype is not None else out


def label_planes(hw, frames: Optional[int] = None, dtype=np.uint8):
    """The data of a Labels layer for an image (``frames`` None: an H x W array) or a video.

    A video's is a zarr array in memory, one compressed chunk a frame, written as frames are:
    a frame never written costs nothing (reads as 0), so a long 4K video's mask is no
    (T, H, W) allocation (10 minutes of 4K: 116 GiB). napari reads, paints and fills it as it
    does an array (fancy indices included)."""
    if frames is None:
        return np.zeros(tuple(hw), dtype)
    import zarr

    shape = (int(frames),) + tuple(int(v) for v in hw)
    return zarr.create_array(store=zarr.storage.MemoryStore(), shape=shape, chunks=(1,) + shape[1:],
                             dtype=dtype, fill_value=0)
