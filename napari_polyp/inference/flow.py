"""Optical flow for masks: a probability map carried from one frame to the next (OpenCV's DIS
on small grey frames). Propagation (:mod:`napari_polyp.video`) and Live
(:mod:`.live`) both carry masks with it; here, below both.
"""
from __future__ import annotations

from typing import Dict, Tuple

import numpy as np

from ..conventions import DEFAULT_THRESHOLD

FLOW_SIDE = 320  # px: the longer side of the grey frames optical flow runs on
FLOW_MARGIN = 0.5  # the flow runs on the mask's box grown by this share of its longer side ...
FLOW_MIN_MARGIN = 0.1  # ... and at least this share of the frame's longer side
FULL_FLOW_SHARE = 0.6  # a box covering more of the frame than this is the whole frame
THRESHOLD = DEFAULT_THRESHOLD  # a carried probability at or above it is the mask


class FlowWarp:
    """A probability map carried from one frame to the next by dense optical flow (OpenCV's
    DIS, on small grey frames: :func:`small_grey`); the propagation and Live share it."""

    def __init__(self, preset: str = "medium"):
        import cv2

        presets = {"medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM, "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
                   "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST}
        self.dis = cv2.DISOpticalFlow_create(presets[preset])
        self._grids: Dict[Tuple[int, int], Tuple[np.ndarray, np.ndarray]] = {}

    def warp(self, prob: np.ndarray, prev: np.ndarray, cur: np.ndarray,
              whole: bool = False) -> Tuple[np.ndarray, float]:
        """``prob`` (at the previous frame) warped to the current frame by dense optical flow,
        and how well the previous frame moved by that flow matches the current one around the
        mask (Pearson correlation of the grey values; 1: exactly). The flow runs on the mask's
        box grown by ``FLOW_MARGIN`` (the whole frame when that covers most of it); outside
        that box the warped probability is 0."""
        import cv2

        h, w = prob.shape
        sh, sw = cur.shape
        sy, sx = h / sh, w / sw
        top, left, bottom, right = (0, 0, sh, sw) if whole else _flow_box(prob >= THRESHOLD, (sh, sw), (sy, sx))
        back = self.dis.calc(np.ascontiguousarray(cur[top:bottom, left:right]),
                             np.ascontiguousarray(prev[top:bottom, left:right]), None)
        gx, gy = self._grid(bottom - top, right - left)
        moved = cv2.remap(prev[top:bottom, left:right], gx + back[..., 0], gy + back[..., 1], cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)
        # the full-resolution warp in the box: the flow upscaled
        t0, l0 = int(round(top * sy)), int(round(left * sx))
        b0, r0 = min(h, int(round(bottom * sy))), min(w, int(round(right * sx)))
        flow = cv2.resize(back, (r0 - l0, b0 - t0), interpolation=cv2.INTER_LINEAR)
        fx, fy = self._grid(b0 - t0, r0 - l0)
        warped = np.zeros_like(prob, dtype=np.float32)
        warped[t0:b0, l0:r0] = cv2.remap(prob, fx + (l0 + flow[..., 0] * sx), fy + (t0 + flow[..., 1] * sy),
                                         cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        np.clip(warped, 0.0, 1.0, out=warped)
        box_mask = cv2.resize(warped[t0:b0, l0:r0], (right - left, bottom - top),
                              interpolation=cv2.INTER_AREA) >= THRESHOLD
        region = cv2.dilate(box_mask.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
        if whole:
            region = np.ones_like(region)
        crop = cur[top:bottom, left:right]
        return warped, _correlation(moved[region], crop[region]) if region.sum() > 16 else 1.0

    def _grid(self, h: int, w: int) -> Tuple[np.ndarray, np.ndarray]:
        if (h, w) not in self._grids:
            if len(self._grids) > 8:
                self._grids.clear()
            self._grids[(h, w)] = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
        return self._grids[(h, w)]


def _flow_box(mask: np.ndarray, small_hw, scale) -> Tuple[int, int, int, int]:
    """(top, left, bottom, right) on the small grey frame: the mask's box grown by
    ``FLOW_MARGIN`` of its longer side (at least ``FLOW_MIN_MARGIN`` of the frame's), or the
    whole small frame when that box would cover most of it."""
    sh, sw = small_hw
    whole = (0, 0, sh, sw)
    if not mask.any():
        return whole
    rows, cols = np.nonzero(mask.any(1))[0], np.nonzero(mask.any(0))[0]
    top, bottom = rows[0] / scale[0], (rows[-1] + 1) / scale[0]
    left, right = cols[0] / scale[1], (cols[-1] + 1) / scale[1]
    margin = max(FLOW_MARGIN * max(bottom - top, right - left), FLOW_MIN_MARGIN * max(sh, sw))
    top, left = int(max(0, np.floor(top - margin))), int(max(0, np.floor(left - margin)))
    bottom, right = int(min(sh, np.ceil(bottom + margin))), int(min(sw, np.ceil(right + margin)))
    if (bottom - top) * (right - left) > FULL_FLOW_SHARE * sh * sw or min(bottom - top, right - left) < 16:
        return whole
    return top, left, bottom, right


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    a = a.astype(np.float32) - a.mean()
    b = b.astype(np.float32) - b.mean()
    norm = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return 1.0 if norm < 1e-6 else float((a * b).sum() / norm)


def small_rgb(image: np.ndarray, side: int = FLOW_SIDE) -> np.ndarray:
    """The frame with its longer side ``side`` px (never enlarged)."""
    import cv2

    h, w = image.shape[:2]
    scale = min(1.0, side / max(h, w))
    size = (max(8, round(w * scale)), max(8, round(h * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA) if scale < 1 else image


def small_grey(image: np.ndarray, side: int = FLOW_SIDE) -> np.ndarray:
    """The grey frame optical flow runs on (:class:`FlowWarp`), its longer side ``side`` px."""
    return grey(small_rgb(image, side))


def grey(rgb: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
