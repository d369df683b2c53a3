"""Mask clean-up actions: pure functions, no Qt, no napari.

Every function takes a label mask -- 2-D ``(H, W)`` or a stack of frames
``(..., H, W)``, where each 2-D frame is processed on its own -- and returns a
new array of the same shape and dtype. Foreground is "nonzero". Pixels that
stay foreground keep their value; pixels that become foreground get the
mask's foreground value (its largest label, or 1 for an empty mask), so a
binary 0/1 or 0/255 mask stays binary.

Choices [B]:
- components are 8-connected (a diagonal touch joins two blobs), the usual
  reading of a hand-drawn mask;
- morphology treats the image border as "more of the same" (edge padding),
  because a polyp cut by the field of view does not end at the border: smoothing
  or shrinking must not peel a mask away from the edge;
- ``grow``/``shrink`` use the 4-connected 1-pixel cross (a disk of radius 1),
  so one step moves the boundary by exactly one pixel along rows and columns.
"""
from __future__ import annotations

import functools
from typing import Callable

import numpy as np
from scipy import ndimage as ndi
from skimage.morphology import disk

__all__ = [
    "ACTIONS",
    "fill_holes",
    "grow",
    "keep_largest_component",
    "remove_small_objects",
    "shrink",
    "smooth",
]

_EIGHT = np.ones((3, 3), dtype=bool)


def _foreground_value(mask: np.ndarray):
    if mask.dtype == bool:
        return True
    top = mask.max() if mask.size else 0
    return top if top != 0 else 1


def _per_frame(frame_fn: Callable[[np.ndarray], np.ndarray]):
    """Lift a (bool HxW -> bool HxW) function to label masks of any ndim >= 2."""

    def apply(mask: np.ndarray, *args, **kwargs) -> np.ndarray:
        mask = np.asarray(mask)
        if mask.ndim < 2:
            raise ValueError(f"a mask must have at least 2 dimensions (H, W), got shape {mask.shape}")
        out = np.array(mask, copy=True)
        frames_shape = mask.shape[:-2]
        for index in np.ndindex(*frames_shape):
            frame = mask[index]
            keep = frame_fn(frame != 0, *args, **kwargs)
            result = out[index]
            result[~keep] = 0
            new = keep & (frame == 0)
            if new.any():
                result[new] = _foreground_value(frame)
        return out

    return functools.wraps(frame_fn)(apply)


def _padded(fn, fg: np.ndarray, pad: int) -> np.ndarray:
    if pad <= 0:
        return fn(fg)
    big = np.pad(fg, pad, mode="edge")
    return fn(big)[pad:-pad, pad:-pad]


@_per_frame
def fill_holes(fg: np.ndarray) -> np.ndarray:
    """Fill background regions that do not reach the image border."""
    return ndi.binary_fill_holes(fg)


@_per_frame
def remove_small_objects(fg: np.ndarray, min_size: int = 64) -> np.ndarray:
    """Remove 8-connected objects with fewer than ``min_size`` pixels."""
    labels, count = ndi.label(fg, structure=_EIGHT)
    if count == 0:
        return fg
    sizes = np.bincount(labels.ravel())
    keep = sizes >= int(min_size)
    keep[0] = False
    return keep[labels]


@_per_frame
def keep_largest_component(fg: np.ndarray) -> np.ndarray:
    """Keep only the largest 8-connected object (ties: the first in raster order)."""
    labels, count = ndi.label(fg, structure=_EIGHT)
    if count <= 1:
        return fg
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == int(np.argmax(sizes))


@_per_frame
def smooth(fg: np.ndarray, radius: int = 2) -> np.ndarray:
    """Opening then closing with a disk of ``radius``: removes spurs and thin
    protrusions, then fills notches and narrow gaps."""
    radius = int(radius)
    if radius < 1:
        return fg
    footprint = disk(radius).astype(bool)

    def open_close(x):
        opened = ndi.binary_dilation(ndi.binary_erosion(x, footprint), footprint)
        return ndi.binary_erosion(ndi.binary_dilation(opened, footprint), footprint)

    # Opening + closing reach 2*radius pixels; pad that much so the border acts as "more of the same".
    return _padded(open_close, fg, 2 * radius)


@_per_frame
def grow(fg: np.ndarray, pixels: int = 1) -> np.ndarray:
    """Move the boundary outwards by ``pixels`` (4-connected steps)."""
    if pixels < 1:
        return fg
    return ndi.binary_dilation(fg, iterations=int(pixels))


@_per_frame
def shrink(fg: np.ndarray, pixels: int = 1) -> np.ndarray:
    """Move the boundary inwards by ``pixels`` (4-connected steps); the image
    border is not a boundary."""
    if pixels < 1:
        return fg
    return _padded(lambda x: ndi.binary_erosion(x, iterations=int(pixels)), fg, int(pixels))


#: name shown to the user -> function (the widget builds its buttons from this)
ACTIONS = {
    "Fill holes": fill_holes,
    "Remove small objects": remove_small_objects,
    "Keep largest": keep_largest_component,
    "Smooth": smooth,
    "Grow 1 px": grow,
    "Shrink 1 px": shrink,
}
