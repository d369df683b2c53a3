"""Drafts of masks being edited, so a crash loses seconds of work, not an item's edits.

While an item's mask is edited in Review, the mask is written every few seconds to
``<corrections>/drafts/<stem>.png`` (0/255, written atomically: a crash mid-write leaves the
previous draft); a save or a discard of the edits removes it. When the item is opened again
and a draft is there, Review offers it back. The dataset itself (manifest, images/, masks/)
never reads ``drafts/``::

    drafts = Drafts("my-corrections")
    drafts.save("img0", mask)
    found = drafts.load("img0")      # Draft(mask, saved_at) or None
    drafts.discard("img0")
"""
from __future__ import annotations

import datetime as _dt
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from ..io.atomic import atomic_write_bytes
from .manifest import safe_stem

FOLDER = "drafts"


@dataclass(frozen=True)
class Draft:
    mask: np.ndarray  # HxW uint8 {0, 1}
    saved_at: str  # local time of the last write, "HH:MM:SS"


class Drafts:
    """The drafts of one corrections folder."""

    def __init__(self, root):
        self.root = Path(root) / FOLDER

    def path(self, stem: str) -> Path:
        return self.root / f"{safe_stem(stem)}.png"

    def save(self, stem: str, mask: np.ndarray) -> Path:
        """Write the draft of ``stem`` (replacing the previous one in one step)."""
        from PIL import Image

        mask = np.asarray(mask)
        if mask.ndim != 2:
            raise ValueError(f"a draft is one 2-D mask, not shape {mask.shape}")
        buffer = io.BytesIO()
        Image.fromarray(((mask > 0) * 255).astype(np.uint8)).save(buffer, format="PNG")
        path = self.path(stem)
        atomic_write_bytes(path, buffer.getvalue())
        return path

    def load(self, stem: str) -> Optional[Draft]:
        """The draft of ``stem``, or None (none, or one that cannot be read: it is left for a person)."""
        from PIL import Image

        path = self.path(stem)
        if not path.is_file():
            return None
        try:
            with Image.open(path) as image:
                mask = (np.asarray(image.convert("L")) > 127).astype(np.uint8)
        except (OSError, ValueError):
            return None
        when = _dt.datetime.fromtimestamp(path.stat().st_mtime).strftime("%H:%M:%S")
        return Draft(mask, when)

    def discard(self, stem: str) -> None:
        try:
            self.path(stem).unlink()
        except FileNotFoundError:
            pass
