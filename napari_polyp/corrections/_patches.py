"""The image's own patches (superpixels) that a click may take beyond what the network gives.

A click means the structure it lands on. The network's answer is bounded by what it learned; the
image's edges bound the structure too. SLIC superpixels, drawn once per image on a small copy,
are those edges; patches of the clicked patch's colour, joined to it, are the rest of a fold or a
strip of mucosa the network took in with confidence (docs/clicks.md, "A click takes the patches
of its colour").
"""
from __future__ import annotations

from typing import Dict, Optional, Set

import numpy as np

SEGMENTS = 200  # superpixels over the image
SIDE = 300  # they are drawn on a copy with at most this longer side (about 0.03 s)
MAX_SHARE = 0.05  # a larger patch (an image SLIC could not divide) is never taken;
# ten times the mean patch; the largest on 40 Kvasir-SEG images is 1.9 % of the image
ALIKE_COLOUR = 20.0  # CIELAB distance (ΔE 1976) within which a neighbouring patch counts as the
# clicked structure's (10 / 15 / 20 / 25 / 40 measured on Kvasir-SEG validation, docs/clicks.md)


class ImagePatches:
    """One image's superpixels: the patch at a pixel, and the patches of its colour joined to it."""

    def __init__(self, image: np.ndarray):
        h, w = image.shape[:2]
        self.shape = (h, w)
        self.step = max(1, int(np.ceil(max(h, w) / SIDE)))
        small = np.ascontiguousarray(image[::self.step, ::self.step])
        self.small_image = small  # the copy the patches are drawn on (``_colour_cut`` works there too)
        self.labels = superpixels(small)
        self.colours = mean_lab_colours(small, self.labels)
        self.neighbours = adjacency(self.labels)
        self.share = np.bincount(self.labels.ravel()) / self.labels.size

    def at(self, row: int, col: int) -> Optional[np.ndarray]:
        """HxW bool: the patch at (row, col); None where it is over ``MAX_SHARE`` of the image."""
        label = self.label_at(row, col)
        if self.share[label] > MAX_SHARE:
            return None
        return self.full_size(self.labels == label)

    def alike(self, row: int, col: int, allowed: np.ndarray) -> Optional[np.ndarray]:
        """HxW bool: the patch at (row, col) and the patches joined to it through patches within
        ``ALIKE_COLOUR`` of its colour, each touching ``allowed`` (HxW bool); None as ``at``."""
        seed = self.label_at(row, col)
        if self.share[seed] > MAX_SHARE:
            return None
        candidates = set(np.unique(self.labels[self.small(allowed)]).tolist())
        near = np.linalg.norm(self.colours - self.colours[seed], axis=1) < ALIKE_COLOUR
        taken, frontier = {seed}, [seed]
        while frontier:
            for other in self.neighbours.get(frontier.pop(), ()):
                if other not in taken and other in candidates and near[other]:
                    taken.add(other)
                    frontier.append(other)
        return self.full_size(np.isin(self.labels, list(taken)))

    def label_at(self, row: int, col: int) -> int:
        return int(self.labels[min(row // self.step, self.labels.shape[0] - 1),
                               min(col // self.step, self.labels.shape[1] - 1)])

    def small(self, full: np.ndarray) -> np.ndarray:
        return full[::self.step, ::self.step][:self.labels.shape[0], :self.labels.shape[1]]

    def full_size(self, small: np.ndarray) -> np.ndarray:
        h, w = self.shape
        return np.repeat(np.repeat(small, self.step, axis=0), self.step, axis=1)[:h, :w]


def superpixels(image: np.ndarray) -> np.ndarray:
    """SLIC superpixels (``SEGMENTS`` over the image) as an int label map; one patch for an image
    too small to divide."""
    if min(image.shape[:2]) < 8:
        return np.zeros(image.shape[:2], np.int32)
    from skimage.segmentation import slic

    return slic(image, n_segments=SEGMENTS, compactness=10, start_label=0)


def mean_lab_colours(image: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(patches, 3): each patch's mean colour in CIELAB, where distance is what the eye sees."""
    from skimage.color import rgb2lab

    lab = rgb2lab(image).reshape(-1, 3)
    flat, count = labels.ravel(), labels.max() + 1
    size = np.maximum(np.bincount(flat, minlength=count), 1)
    return np.stack([np.bincount(flat, lab[:, i], minlength=count) for i in range(3)], axis=1) / size[:, None]


def adjacency(labels: np.ndarray) -> Dict[int, Set[int]]:
    """Each patch's 4-connected neighbouring patches."""
    first = np.concatenate([labels[:, :-1].ravel(), labels[:-1].ravel()])
    second = np.concatenate([labels[:, 1:].ravel(), labels[1:].ravel()])
    differ = first != second
    pairs = np.unique(np.stack([first[differ], second[differ]], axis=1), axis=0)
    neighbours: Dict[int, Set[int]] = {}
    for a, b in pairs.tolist():
        neighbours.setdefault(a, set()).add(b)
        neighbours.setdefault(b, set()).add(a)
    return neighbours
