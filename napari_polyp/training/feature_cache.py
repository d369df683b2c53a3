"""A disk cache of a frozen backbone's features, per training image and per view.

A network with a frozen front part (``forward_features``) and a trained head
(``forward_head``) trains many epochs on the same frozen outputs: computing them
once (DINOv2-S takes ~0.75 s an image at 448 px, ~0.45 s at 336, on one CPU thread) turns an epoch
of backbone passes into an epoch of decoder passes.

Views are exact geometric transforms of the image (flips, a half turn), applied to the
image before the backbone, so a view's features are what the backbone gives for the
transformed image: the head trains on them with the equally transformed image and mask.

Layout: ``<folder>/<name>-<backbone sha256[:16]>-<size>px-<features tag>/``
    key.json           what the cache is of (the full sha256, size, stems, views, shape)
    <view>.npy         float16 [N, C, h, w], memory-mapped (larger than memory is fine)
    <view>.done.npy    bool [N]: rows already written (a killed build resumes)

A cache whose key.json differs from what is asked (another backbone, size, image
list or feature layout) is never read: it is rebuilt.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
import random
from typing import Callable, Dict, Iterable, Iterator, Sequence, Tuple

import numpy as np
import torch

# name -> the image axes (H=0, W=1 of an HxW[xC] array) it mirrors
VIEWS: Dict[str, tuple] = {
    "identity": (),
    "hflip": (1,),
    "vflip": (0,),
    "rot180": (0, 1),
}


def apply_view(array: np.ndarray, view: str) -> np.ndarray:
    """The view of an HxW or HxWxC array (an image or its mask)."""
    axes = VIEWS[view]
    return np.flip(array, axis=axes) if axes else array


class FeatureCache:
    """Frozen features of ``images`` (uint8, N x S x S x 3) under each of ``views``."""

    def __init__(self, folder, name: str, backbone_sha256: str, size: int, features_tag: str,
                 stems: Sequence[str], views: Sequence[str]):
        unknown = [v for v in views if v not in VIEWS]
        if unknown:
            raise ValueError(f"unknown views {unknown}; known: {tuple(VIEWS)}")
        self.views = tuple(views)
        self.stems = list(stems)
        self.dir = Path(folder) / f"{name}-{backbone_sha256[:16]}-{size}px-{features_tag}"
        self.key = {"backbone_sha256": backbone_sha256, "size": size, "features": features_tag,
                    "stems_sha256": hashlib.sha256("\n".join(self.stems).encode()).hexdigest(),
                    "count": len(self.stems)}
        self._maps: Dict[str, np.memmap] = {}

    # -- state ---------------------------------------------------------------------------

    def _key_matches(self) -> bool:
        try:
            return json.loads((self.dir / "key.json").read_text()) == self.key
        except (OSError, ValueError):
            return False

    def _done(self, view: str) -> np.ndarray:
        path = self.dir / f"{view}.done.npy"
        return np.load(path) if path.is_file() else np.zeros(len(self.stems), bool)

    def missing(self) -> int:
        """Rows still to compute, over all views (all of them when the key differs)."""
        if not self._key_matches():
            return len(self.stems) * len(self.views)
        return int(sum((~self._done(v)).sum() for v in self.views))

    def complete(self) -> bool:
        return self.missing() == 0

    # -- building ------------------------------------------------------------------------

    def iter_build(self, images: np.ndarray, encode: Callable[[np.ndarray], torch.Tensor],
                   batch: int = 4) -> Iterator[Tuple[int, int]]:
        """Compute the missing rows, yielding (rows done, rows in all) after each batch;
        stop iterating to cancel (what is written stays and counts on the next build).
        ``encode(uint8 batch BxSxSx3) -> [B,C,h,w]``."""
        if len(images) != len(self.stems):
            raise ValueError(f"{len(images)} images for a cache of {len(self.stems)} stems")
        if not self._key_matches():
            shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True, exist_ok=True)
        total, total_done = len(self.stems) * len(self.views), 0
        for view in self.views:
            done = self._done(view)
            total_done += int(done.sum())
            todo = np.flatnonzero(~done)
            for start in range(0, len(todo), batch):
                rows = todo[start:start + batch]
                feats = encode(np.ascontiguousarray(np.stack([apply_view(images[i], view) for i in rows])))
                store = self._open(view, tuple(feats.shape[1:]), write=True)
                store[rows] = feats.to(torch.float16).cpu().numpy()
                store.flush()
                done[rows] = True
                _save_npy(self.dir / f"{view}.done.npy", done)  # after the rows: a kill loses no claim
                total_done += len(rows)
                yield total_done, total

    def build(self, images: np.ndarray, encode: Callable[[np.ndarray], torch.Tensor], batch: int = 4) -> None:
        for _ in self.iter_build(images, encode, batch):
            pass

    def _open(self, view: str, shape: tuple, write: bool = False) -> np.memmap:
        if view in self._maps:
            return self._maps[view]
        path = self.dir / f"{view}.npy"
        if not path.is_file():
            if not write:
                raise FileNotFoundError(path)
            key = dict(self.key, shape=list(shape))
            np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=(len(self.stems), *shape)).flush()
            (self.dir / "key.json").write_text(json.dumps({k: v for k, v in key.items() if k != "shape"}))
        self._maps[view] = np.load(path, mmap_mode="r+" if write else "r")
        return self._maps[view]

    # -- reading -------------------------------------------------------------------------

    def get(self, indices: Iterable[int], views: Iterable[str]) -> torch.Tensor:
        """float32 [B, C, h, w]: row ``indices[i]`` under ``views[i]``."""
        rows = [np.asarray(self._open(v, ())[i]) for i, v in zip(indices, views)]
        return torch.from_numpy(np.stack(rows).astype(np.float32))


def cache_of_model(model, folder, name: str, size: int, stems: Sequence[str], views: Sequence[str]) -> FeatureCache:
    """The cache of ``model.forward_features`` (a frozen-backbone network: ``backbone_sha256``
    and ``features_tag`` name what its features are) for these images."""
    return FeatureCache(folder, name, model.backbone_sha256(), size, model.features_tag, stems, views)


def token_windows(features: torch.Tensor, pixel_arrays: Sequence[np.ndarray], tokens: int,
                  seeds: Sequence[int]) -> Tuple[torch.Tensor, list]:
    """A random window of ``tokens`` tokens a side per sample (drawn from its seed), cut
    from the cached features [B,C,h,w] and, at the same place, from each of
    ``pixel_arrays`` ([B,H,W] or [B,H,W,C] with H = h · patch: the images, the masks, the
    teacher maps). Returns the features' windows and the arrays' windows, in order.

    Why this is sound: the features were computed on the whole image (global attention saw
    all of it), and the decoder is convolutional with a receptive field of a few tokens, so
    a window trains it on the same pixels as the whole image would, but for a border of
    padding, at a fraction of the cost of a step.
    """
    h, w = features.shape[-2:]
    if tokens >= min(h, w):
        return features, list(pixel_arrays)
    patch = pixel_arrays[0].shape[1] // h
    corners = []
    for seed in seeds:
        rng = random.Random(seed)
        corners.append((rng.randrange(h - tokens + 1), rng.randrange(w - tokens + 1)))
    windows = torch.stack([features[b, :, r:r + tokens, c:c + tokens] for b, (r, c) in enumerate(corners)])
    side = tokens * patch
    cut = [np.ascontiguousarray(np.stack([a[b, r * patch:r * patch + side, c * patch:c * patch + side]
                                          for b, (r, c) in enumerate(corners)]))
           for a in pixel_arrays]
    return windows, cut


def _save_npy(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(path.name + ".tmp.npy")
    np.save(tmp, array)
    tmp.replace(path)
