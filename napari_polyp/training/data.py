"""Image/mask pairs for training and evaluation, and the seeded validation split.

Two kinds of folder are read:
- a plain folder ``DIR/images/<stem>.<ext>`` + ``DIR/masks/<stem>.<ext>``, paired by stem;
- a corrections dataset (the same layout plus ``manifest.jsonl``, see
  docs/corrections-format.md): only items whose latest record has status ``accepted`` or
  ``corrected``, read through the dataset's own checked reader.

Images are read with :func:`napari_polyp.io.read_image` and masks with
:func:`napari_polyp.io.read_mask` (0/1, 0/255 and JPEG masks alike), the readers
the app uses.

Images are resized once to the training size with the very resize that
``napari_polyp.inference.preprocess`` uses (bilinear, antialiased), so the pixels a
network is trained on are the pixels it sees in the app.
"""
from __future__ import annotations

import json
import random
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from napari_polyp.corrections.manifest import MANIFEST
from napari_polyp.errors import UserError
from napari_polyp.io.images import IMAGE_EXTENSIONS, read_image
from napari_polyp.io.masks import read_mask


@dataclass(frozen=True)
class Pair:
    stem: str
    image: Path
    mask: Path


def _images_by_stem(folder: Path) -> Dict[str, Path]:
    found: Dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith("."):
            found.setdefault(path.stem, path)
    return found


def is_corrections_dataset(root) -> bool:
    return (Path(root) / MANIFEST).is_file()


def find_pairs(root) -> List[Pair]:
    """The usable image/mask pairs under ``root``, sorted by stem."""
    root = Path(root)
    images_dir, masks_dir = root / "images", root / "masks"
    if not images_dir.is_dir() or not masks_dir.is_dir():
        raise UserError(f"{root}: expected a folder with images/ and masks/ (paired by file stem)")
    images, masks = _images_by_stem(images_dir), _images_by_stem(masks_dir)
    if is_corrections_dataset(root):
        # The dataset's own reader: it skips a torn last manifest line (a save cut short)
        # and serves the recorded mask when a killed save left a newer, unconfirmed file.
        from ..corrections.dataset import CorrectionsDataset

        pairs = _corrections_pairs(CorrectionsDataset(root))
    else:
        pairs = [Pair(s, images[s], masks[s]) for s in sorted(set(images) & set(masks))]
    if not pairs:
        what = "accepted or corrected items" if is_corrections_dataset(root) else "images with a mask of the same stem"
        raise UserError(f"{root}: no {what} found")
    return pairs


class LeftOut(UserWarning):
    """An item of a corrections dataset left out of training (its files missing, unreadable or
    of different sizes); the message names it and says why."""


def _corrections_pairs(dataset) -> List[Pair]:
    """The training items of a corrections dataset; an item whose files are missing, unreadable
    or of different sizes is left out with a warning (records leading outside the folder were
    already skipped when read), so one bad item never stops the training."""
    pairs = []
    for record in sorted(dataset.training_items(), key=lambda r: r.stem):
        try:
            pairs.append(Pair(record.stem, *dataset.checked_pair(record)))
        except (UserError, OSError) as err:
            warnings.warn(f"{record.stem!r} left out of training: {err}", LeftOut, stacklevel=3)
    return pairs


def split_stems(stems: Sequence[str], val_fraction: float = 0.1, seed: int = 0) -> Tuple[List[str], List[str]]:
    """Seeded split: stems sorted, shuffled with ``random.Random(seed)``, the first
    ``round(val_fraction * n)`` (at least 1 when n >= 2) are validation. Returns (train, val)."""
    ordered = sorted(stems)
    random.Random(seed).shuffle(ordered)
    n_val = int(round(val_fraction * len(ordered)))
    n_val = min(max(n_val, 1 if len(ordered) >= 2 else 0), len(ordered) - 1) if ordered else 0
    val = sorted(ordered[:n_val])
    train = sorted(ordered[n_val:])
    return train, val


def resize_like_inference(image: np.ndarray, size: int) -> np.ndarray:
    """HxWx3 uint8 -> size x size x 3 uint8 with preprocess()'s antialiased bilinear resize."""
    x = torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1)[None].float()
    if tuple(x.shape[-2:]) != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return x[0].permute(1, 2, 0).round_().clamp_(0, 255).to(torch.uint8).numpy()


def resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """HxW {0,1} -> size x size {0,1}: area-weighted, then >= 0.5."""
    x = torch.from_numpy(mask.astype(np.float32))[None, None]
    if tuple(x.shape[-2:]) != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return (x[0, 0] >= 0.5).to(torch.uint8).numpy()


class PairArrays:
    """Pairs held in memory at the training size (uint8 images, {0,1} masks).

    Resizing once saves decoding full-size JPEGs every epoch on a small CPU.
    """

    def __init__(self, pairs: Sequence[Pair], size: int, progress: bool = False):
        self.pairs = list(pairs)
        self.size = size
        n = len(self.pairs)
        self.images = np.zeros((n, size, size, 3), np.uint8)
        self.masks = np.zeros((n, size, size), np.uint8)
        iterator = self.pairs
        if progress:
            from tqdm import tqdm

            iterator = tqdm(self.pairs, desc=f"loading {n} pairs at {size}px", leave=False)
        for i, pair in enumerate(iterator):
            self.images[i] = resize_like_inference(read_image(pair.image), size)
            self.masks[i] = resize_mask(read_mask(pair.mask), size)

    @classmethod
    def cached(cls, pairs: Sequence[Pair], size: int, cache: Optional[Path] = None) -> "PairArrays":
        """Like the constructor, but kept in ``cache`` (.npz) for a resumed run; the cache is
        used only when it holds the same files (paths, sizes, modification times) at ``size``."""
        key = json.dumps([[str(p.image), str(p.mask), _stat(p.image), _stat(p.mask)] for p in pairs] + [size])
        if cache is not None and Path(cache).is_file():
            try:
                with np.load(cache, allow_pickle=False) as saved:
                    if str(saved["key"]) == key:
                        arrays = cls.__new__(cls)
                        arrays.pairs, arrays.size = list(pairs), size
                        arrays.images, arrays.masks = saved["images"], saved["masks"]
                        return arrays
            except (OSError, ValueError, KeyError):
                pass
        arrays = cls(pairs, size)
        if cache is not None:
            Path(cache).parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(cache).with_name(Path(cache).name + ".tmp.npz")
            np.savez(tmp, key=np.array(key), images=arrays.images, masks=arrays.masks)
            tmp.replace(cache)
        return arrays

    def __len__(self) -> int:
        return len(self.pairs)

    @property
    def stems(self) -> List[str]:
        return [p.stem for p in self.pairs]


def _stat(path: Path) -> list:
    st = Path(path).stat()
    return [st.st_size, int(st.st_mtime)]


def select(pairs: Sequence[Pair], stems: Optional[Sequence[str]]) -> List[Pair]:
    if stems is None:
        return list(pairs)
    wanted = set(stems)
    return [p for p in pairs if p.stem in wanted]
