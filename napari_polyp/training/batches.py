"""Training batches: sample indices in, network inputs and targets out, on the device.

:class:`Batches` augments images on the CPU (``augment.Augmenter``); :class:`CachedBatches`
reads a frozen backbone's cached features (``feature_cache``); ``device_augment.DeviceBatches``
augments whole batches on the GPU. The trainer and the fine-tuning recipe take any of them.
Every sample's augmentation is seeded by (run seed, epoch, index): a resumed run repeats it.
"""
from __future__ import annotations

import random
import time
from typing import Iterator, Optional

import numpy as np
import torch
import torch.nn as nn

from models.blocks import resize_to
from napari_polyp.inference import normalise, preprocess

from . import data as data_mod
from .augment import Augmenter
from .feature_cache import apply_view, cache_of_model, token_windows


class Batches:
    """Turns sample indices into normalised input tensors and targets."""

    def __init__(self, arrays: data_mod.PairArrays, card, augmenter: Augmenter, seed: int, device):
        self.arrays, self.card, self.augmenter, self.seed, self.device = arrays, card, augmenter, seed, device
        self.teacher_maps: Optional[np.ndarray] = None  # N x S x S uint8, see distill.TeacherMaps

    def sample_seed(self, epoch: int, index: int) -> int:
        return (self.seed * 1_000_003 + epoch * 10_007 + index) * 2_654_435_761 % (2 ** 32)

    def train_batch(self, indices, epoch: int):
        """(inputs, mask targets, teacher targets or None), augmented alike."""
        images, masks, soft = [], [], []
        for i in indices:
            teacher = None if self.teacher_maps is None else self.teacher_maps[i]
            out = self.augmenter(self.arrays.images[i], self.arrays.masks[i], self.sample_seed(epoch, i), teacher)
            images.append(out[0])
            masks.append(out[1])
            soft.extend(out[2:])
        x = preprocess(np.stack(images), self.card)
        y = torch.from_numpy(np.stack(masks)[:, None].astype(np.float32))
        return x.to(self.device), y.to(self.device), self.soft_targets(np.stack(soft)) if soft else None

    def soft_targets(self, maps: np.ndarray) -> torch.Tensor:
        """Teacher maps, B x S x S uint8 (p·255), as probability targets [B,1,S,S] on the device."""
        return torch.from_numpy(np.ascontiguousarray(maps[:, None]).astype(np.float32) / 255.0).to(self.device)

    def val_batches(self, arrays: data_mod.PairArrays, batch: int):
        for start in range(0, len(arrays), batch):
            x = preprocess(arrays.images[start:start + batch], self.card)
            y = torch.from_numpy(arrays.masks[start:start + batch][:, None].astype(np.float32))
            yield x.to(self.device), y.to(self.device)

    def forward(self, net: nn.Module, inputs) -> dict:
        return net(inputs)


class CachedBatches(Batches):
    """Batches of cached frozen features (``feature_cache.FeatureCache``), each drawn under
    one of the cached views, with the image and mask under the same view."""

    def __init__(self, arrays, card, model: nn.Module, seed: int, device, val_arrays, folder, views,
                 crop_tokens: int = 0):
        super().__init__(arrays, card, Augmenter("none", card.input_size), seed, device)
        self.model = model
        self.crop_tokens = crop_tokens
        self.train_cache = cache_of_model(model, folder, "train", card.input_size, arrays.stems, views)
        self.val_cache = cache_of_model(model, folder, "val", card.input_size, val_arrays.stems, ("identity",))
        self.val_arrays = val_arrays

    def iter_build(self, should_stop=None) -> Iterator[str]:
        """Fill the caches (resumable); yields a progress line every 40 rows.
        Returns early when ``should_stop()``: the rows written so far stay cached."""
        for cache, arrays in ((self.val_cache, self.val_arrays), (self.train_cache, self.arrays)):
            started, first = time.monotonic(), None
            for done, total in cache.iter_build(arrays.images, self._encode):
                first = done if first is None else first
                if should_stop and should_stop():
                    return
                if done % 40 < 4 or done == total:
                    rate = (time.monotonic() - started) / max(done - first + 4, 1)
                    yield f"caching frozen features {cache.dir.name}: {done}/{total} ({rate:.2f} s each)"

    @torch.no_grad()
    def _encode(self, images: np.ndarray) -> torch.Tensor:
        x = preprocess(images, self.card).to(self.device)
        return self.model.forward_features(resize_to(x, self.model.grid_size(x.shape[-2:])))

    def train_batch(self, indices, epoch: int):
        """(features, image) inputs, mask targets and teacher targets (or None), each under the
        sample's view (and in its window, with ``crop_tokens``)."""
        views = [self.train_cache.views[random.Random(self.sample_seed(epoch, i)).randrange(len(self.train_cache.views))]
                 for i in indices]
        feats = self.train_cache.get(indices, views)
        sources = [self.arrays.images, self.arrays.masks] + ([self.teacher_maps] if self.teacher_maps is not None else [])
        pixels = [np.stack([apply_view(source[i], v) for i, v in zip(indices, views)]) for source in sources]
        if self.crop_tokens:
            feats, pixels = token_windows(feats, pixels, self.crop_tokens, [self.sample_seed(epoch, i) for i in indices])
        images, masks = pixels[:2]
        y = torch.from_numpy(np.ascontiguousarray(masks[:, None]).astype(np.float32))
        x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0)  # at the cache's size (or a window)
        soft = self.soft_targets(pixels[2]) if len(pixels) > 2 else None
        return (feats.to(self.device), normalise(x, self.card).to(self.device)), y.to(self.device), soft

    def val_batches(self, arrays, batch: int):
        for start in range(0, len(arrays), batch):
            rows = range(start, min(start + batch, len(arrays)))
            feats = self.val_cache.get(rows, ["identity"] * len(rows))
            x = preprocess(arrays.images[start:start + batch], self.card)
            y = torch.from_numpy(arrays.masks[start:start + batch][:, None].astype(np.float32))
            yield (feats.to(self.device), x.to(self.device)), y.to(self.device)

    def forward(self, net: nn.Module, inputs) -> dict:
        return net(*inputs)
