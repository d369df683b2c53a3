"""The region a click means by colour: GrabCut around the click, started from the mask.

The refiner ignores a negative click inside a large, confident false region (a fold it is 0.9+
sure of), and a superpixel is about 2,000 px of a 80,000 px error; a click the network does obey
still stops at the patches of one colour. GrabCut fits two colour models (the mask's and the
rest's) around the click, every click fixed to its side, and relabels the pixels the models
disagree with: what changes the click's way, joined to the click, is the region the click
means (docs/clicks.md, "A click takes its colour region").

It runs on the patches' small copy (at most 300 px on a side) and there only in a window around
the click's depth disc, so a click costs a few tens of milliseconds, not the whole image's cut.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np
from scipy import ndimage

from .refine import grabcut_trimap

ITERATIONS = 3  # GrabCut's rounds of colour model fit and cut
CLICK_RADIUS = 2  # px of the small copy fixed to each click's side
WINDOW_GROWTH = 1.0  # the cut sees the depth disc's box grown by this share on every side
MIN_WINDOW = 32  # px of the small copy: a smaller window has too few pixels to fit a colour model
NEAR_CLICK = 3  # px of the small copy: a changed region this near a click counts as joined to it


def colour_region(small_image: np.ndarray, small_mask: np.ndarray, small_allowed: np.ndarray,
                  clicks: Sequence[Tuple[int, int, bool]], click: Tuple[int, int, bool]) -> Optional[np.ndarray]:
    """Small-copy bool: the pixels GrabCut moves to ``click``'s side, within ``small_allowed``
    (the click's depth disc) and joined to the click; None where there is none.

    ``small_image`` HxWx3 uint8 RGB, ``small_mask`` HxW bool (the mask as it was), ``clicks`` and
    ``click`` as (row, col, positive) in the small copy's pixels; ``clicks`` holds every click so
    far, fixed to its side."""
    window = _window(small_allowed)
    if window is None:
        return None
    top, left, bottom, right = window
    mask = small_mask[top:bottom, left:right]
    trimap = _trimap(mask, [(r - top, c - left, p) for r, c, p in clicks])
    foreground = grabcut_trimap(small_image[top:bottom, left:right], trimap, ITERATIONS)
    if foreground is None:
        return None
    positive = click[2]
    changed = (foreground != mask) & (foreground == positive) & small_allowed[top:bottom, left:right]
    joined = _joined_to(changed, click[0] - top, click[1] - left)
    if joined is None:
        return None
    region = np.zeros(small_mask.shape, bool)
    region[top:bottom, left:right] = joined
    return region


def _window(allowed: np.ndarray) -> Optional[Tuple[int, int, int, int]]:
    """(top, left, bottom, right): ``allowed``'s box grown by ``WINDOW_GROWTH``, at least ``MIN_WINDOW``."""
    rows, cols = np.nonzero(allowed.any(1))[0], np.nonzero(allowed.any(0))[0]
    if not len(rows):
        return None
    h, w = allowed.shape
    grow_r = max(WINDOW_GROWTH * (rows[-1] + 1 - rows[0]), (MIN_WINDOW - (rows[-1] + 1 - rows[0])) / 2, 0)
    grow_c = max(WINDOW_GROWTH * (cols[-1] + 1 - cols[0]), (MIN_WINDOW - (cols[-1] + 1 - cols[0])) / 2, 0)
    top, bottom = max(int(rows[0] - grow_r), 0), min(int(np.ceil(rows[-1] + 1 + grow_r)), h)
    left, right = max(int(cols[0] - grow_c), 0), min(int(np.ceil(cols[-1] + 1 + grow_c)), w)
    return top, left, bottom, right


def _trimap(mask: np.ndarray, clicks) -> np.ndarray:
    import cv2

    trimap = np.where(mask, cv2.GC_PR_FGD, cv2.GC_PR_BGD).astype(np.uint8)
    rr, cc = np.ogrid[:mask.shape[0], :mask.shape[1]]
    for row, col, positive in clicks:
        disc = (rr - row) ** 2 + (cc - col) ** 2 <= CLICK_RADIUS ** 2
        trimap[disc] = cv2.GC_FGD if positive else cv2.GC_BGD
    return trimap


def _joined_to(changed: np.ndarray, row: int, col: int) -> Optional[np.ndarray]:
    """The regions of ``changed`` at (row, col), or the ones within ``NEAR_CLICK`` px of it."""
    if not changed.any():
        return None
    labels, _ = ndimage.label(changed)
    h, w = changed.shape
    row, col = min(max(row, 0), h - 1), min(max(col, 0), w - 1)
    near = labels[max(row - NEAR_CLICK, 0):row + NEAR_CLICK + 1, max(col - NEAR_CLICK, 0):col + NEAR_CLICK + 1]
    ids = np.unique(near[near > 0]) if labels[row, col] == 0 else [labels[row, col]]
    return np.isin(labels, ids) if len(ids) else None
