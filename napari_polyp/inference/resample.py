"""Bilinear resampling in numpy, numerically torch's ``F.interpolate(mode="bilinear",
align_corners=False)``, with and without ``antialias=True``.

The network's input (image -> its square input, antialiased) and its outputs (maps ->
the image's size) are resized here when no torch is loaded: the app's first network
runs straight from its cached ONNX graph, and attention maps of a video are resized
frame by frame on the UI side. ``tests/inference/test_resample.py`` holds these to torch's own
results.

Each axis is one sparse (size_out x size_in) weight matrix, so a resize is two sparse
products: a few taps per output pixel, as cheap as torch's own kernel.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np


@lru_cache(maxsize=64)
def weights(size_in: int, size_out: int, antialias: bool):
    """The (size_out x size_in) CSR matrix of 1-D bilinear resampling with half-pixel centres.

    With ``antialias`` and a reduction (size_out < size_in), the triangle filter is widened
    to the reduction factor (PIL's and torch's antialiased bilinear); otherwise it is the
    plain two-tap interpolation, the source position clamped to the edge pixels."""
    from scipy.sparse import csr_matrix

    scale = size_in / size_out
    out_index = np.arange(size_out)
    if antialias and scale > 1.0:
        centres = scale * (out_index + 0.5)
        first = np.maximum((centres - scale + 0.5).astype(np.int64), 0)
        last = np.minimum((centres + scale + 0.5).astype(np.int64), size_in)
        taps = int((last - first).max())
        columns = first[:, None] + np.arange(taps)[None, :]
        values = np.maximum(0.0, 1.0 - np.abs((columns - centres[:, None] + 0.5) / scale))
        values[columns >= last[:, None]] = 0.0
        values /= values.sum(axis=1, keepdims=True)
        columns = np.minimum(columns, size_in - 1)
    else:
        source = np.clip((out_index + 0.5) * scale - 0.5, 0.0, size_in - 1)
        left = np.floor(source).astype(np.int64)
        fraction = source - left
        columns = np.stack([left, np.minimum(left + 1, size_in - 1)], axis=1)
        values = np.stack([1.0 - fraction, fraction], axis=1)
    rows = np.repeat(out_index, columns.shape[1])
    # duplicate (row, column) pairs (clamped edges) are summed by the CSR constructor
    return csr_matrix((values.ravel(), (rows, columns.ravel())), shape=(size_out, size_in), dtype=np.float32)


def resize(array: np.ndarray, hw, antialias: bool = False) -> np.ndarray:
    """HxW or HxWxC -> hw[0] x hw[1] (x C), float32."""
    array = np.asarray(array, dtype=np.float32)
    h, w = array.shape[:2]
    out_h, out_w = int(hw[0]), int(hw[1])
    if (h, w) == (out_h, out_w):
        return array.copy()
    rest = array.shape[2:]
    flat = array.reshape(h, -1)  # rows first: (out_h x h) @ (h x w*C)
    rows = weights(h, out_h, antialias) @ flat
    columns = rows.reshape(out_h, w, -1).transpose(1, 0, 2).reshape(w, -1)  # then columns
    out = (weights(w, out_w, antialias) @ columns).reshape(out_w, out_h, -1).transpose(1, 0, 2)
    return np.ascontiguousarray(out.reshape((out_h, out_w) + rest), dtype=np.float32)


def resize_map(amap: np.ndarray, hw) -> np.ndarray:
    """A 2-D map in [0, 1] (probability, attention) resized to ``hw`` and clipped to [0, 1]."""
    return np.clip(resize(amap, hw), 0.0, 1.0)
