"""Mask files: the one rule by which every part of napari-polyp reads a mask.

Training, ``evaluate``, the corrections dataset, Review's reference masks and the
samples all call :func:`read_mask` / :func:`decode_mask`, so a mask means the
same thing wherever it is read. The rule (:func:`binarize_mask`):

- colour masks are reduced to their brightest channel (alpha is ignored);
- a mask whose values all lie in [0, 1] is a 0/1 mask: a pixel is object when
  it is above 0.5 (so 1, or True);
- any other integer mask: a pixel is object when it is above half of the 8-bit
  range (> 127) when its values fit in 8 bits, else above half of the 16-bit
  range (> 32767); a float mask: above half its maximum.

So 0/1 and 0/255 PNGs and JPEG masks (whose compression noise sits near 0 and
255) give the same result. A 0/1 mask saved as JPEG is not supported (its noise
reaches 2 and more, and then it reads as an 8-bit mask, i.e. empty).

Masks are written (:func:`encode_mask_png`) as 8-bit PNG, 0 = background, 255 = object.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from .images import decode_raw, read_raw


def binarize_mask(array: np.ndarray) -> np.ndarray:
    """Any stored mask (HxW or HxWxC, any dtype) -> HxW uint8 {0,1}; see the module docstring."""
    array = np.asarray(array)
    if array.ndim == 3:
        channels = array[..., :3] if array.shape[-1] >= 3 else array[..., :1]
        array = channels.max(axis=-1)
    if array.ndim != 2:
        raise ValueError(f"a mask must be 2-D (H, W) or HxWxC, got shape {array.shape}")
    if array.dtype == bool:
        return array.astype(np.uint8)
    return (array.astype(np.float64) > _half_range(array)).astype(np.uint8)


def _half_range(array: np.ndarray) -> float:
    """The value a pixel must exceed to be object (see the module docstring)."""
    if array.size == 0:
        return 0.5
    low, high = float(np.nanmin(array)), float(np.nanmax(array))
    if low >= 0.0 and high <= 1.0:
        return 0.5  # a 0/1 mask
    if np.issubdtype(array.dtype, np.integer):
        return 127.5 if high <= 255 else 32767.5 if high <= 65535 else high / 2.0
    return high / 2.0


def decode_mask(data: bytes, name="mask") -> np.ndarray:
    """Mask file bytes (PNG, JPEG, BMP, TIFF) -> HxW uint8 {0,1}. ``name`` is for messages."""
    return binarize_mask(decode_raw(data, Path(name))[0])


def read_mask(path) -> np.ndarray:
    """A mask file -> HxW uint8 {0,1}; a bad file raises InputFileError naming it."""
    return binarize_mask(read_raw(path)[0])


def encode_mask_png(mask: np.ndarray) -> bytes:
    """2-D mask -> PNG bytes, 8-bit, nonzero -> 255 (the 0/255 convention of saved masks)."""
    from PIL import Image

    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"a mask must be 2-D (H, W), got shape {mask.shape}")
    binary = np.where(mask != 0, 255, 0).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(binary, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()
