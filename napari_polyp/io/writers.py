"""npe2 writer: File > Save Selected Layer(s) writes a Labels layer as a PNG mask.

- a 2-D layer (H, W) becomes one 8-bit PNG, 0 = background, 255 = object
  (every nonzero label is object: the masks of this project are binary);
- a 3-D layer (T, H, W), e.g. the masks of a video's frames, becomes one PNG per
  frame beside the requested name: ``out.png`` -> ``out_0000.png``, ``out_0001.png``, ...
  (4 digits, or more when there are 10000 frames or more);
- anything else is refused with a message that says why.

Every file is written atomically (temporary file, fsync, rename), so an
interrupted save never leaves a half-written mask under the final name.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List

import numpy as np

from .atomic import atomic_write_bytes
from .masks import encode_mask_png


def frame_paths(path, count: int) -> List[Path]:
    """The file names a T-frame layer is written to: ``<stem>_0000.png``, ..."""
    path = Path(path)
    stem = path.stem if path.suffix.lower() == ".png" else path.name
    digits = max(4, len(str(count - 1)))
    return [path.with_name(f"{stem}_{i:0{digits}d}.png") for i in range(count)]


def write_labels_png(path: str, data: Any, meta: Dict) -> List[str]:
    """Write a Labels layer's data as PNG mask(s); returns the written paths."""
    array = np.asarray(data)
    target = Path(path)
    if target.suffix.lower() != ".png":
        target = target.with_name(target.name + ".png")
    name = (meta or {}).get("name", "the layer")
    if array.ndim == 2:
        atomic_write_bytes(target, encode_mask_png(array))
        return [str(target)]
    if array.ndim == 3:
        paths = frame_paths(target, array.shape[0])
        for frame, frame_path in zip(array, paths):
            atomic_write_bytes(frame_path, encode_mask_png(frame))
        return [str(p) for p in paths]
    raise ValueError(
        f"{name}: a PNG mask needs a 2-D (H, W) or 3-D (frames, H, W) Labels layer, "
        f"this one has shape {array.shape}"
    )
