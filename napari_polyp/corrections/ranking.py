"""Which items to review first: an uncertainty score per prediction, and the queue it orders.

    from napari_polyp.corrections import ranking
    scores = {stem: ranking.uncertainty(prob) for stem, prob in probabilities.items()}
    scores = {stem: ranking.uncertainty(p_a, p_b) ...}   # with a second network: + disagreement
    queue = ranking.most_uncertain_first(scores)          # stems, the most uncertain first

The score of one prediction (all parts in [0, 1]):

- ``entropy``: the binary entropy H(p) = -p log2 p - (1-p) log2 (1-p) of the pixels inside
  the uncertainty band ``low < p < high``, summed and divided by the number of pixels.
  Summing over the band (instead of averaging inside it) is deliberate: every sharp mask
  has a thin band of undecided pixels along its edge, so the mean *inside* the band is
  high even for a confident prediction; what tells a doubtful prediction from a
  confident one is how much of the image is undecided. ``band_entropy`` (that mean)
  and ``band_fraction`` are kept beside it for the table.
- ``disagreement`` (when a second network's probability is given): 1 - Dice of the two
  masks at 0.5; two empty masks agree.
- ``score`` = ``entropy`` + ``disagreement``: what the queue sorts by.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Mapping, Optional, Union

import numpy as np

from .metrics import dice_iou

BAND = (0.1, 0.9)  # probabilities strictly inside are "undecided"


@dataclass(frozen=True)
class Uncertainty:
    score: float
    entropy: float
    band_entropy: float
    band_fraction: float
    disagreement: Optional[float] = None


def binary_entropy(probability: np.ndarray) -> np.ndarray:
    """Per-pixel binary entropy in bits (0 at p = 0 or 1, 1 at p = 0.5)."""
    p = np.clip(np.asarray(probability, dtype=np.float64), 1e-12, 1 - 1e-12)
    return -(p * np.log2(p) + (1 - p) * np.log2(1 - p))


def uncertainty(probability: np.ndarray, other: Optional[np.ndarray] = None,
                band: tuple = BAND) -> Uncertainty:
    """The uncertainty of one prediction (see the module docstring); ``other``: a second
    network's probability of the same image (same size)."""
    p = np.asarray(probability, dtype=np.float64)
    if p.ndim != 2 or p.size == 0:
        raise ValueError(f"a probability map must be 2-D and not empty, got shape {p.shape}")
    inside = (p > band[0]) & (p < band[1])
    entropy = binary_entropy(p[inside])
    band_fraction = float(inside.mean())
    total = float(entropy.sum() / p.size)
    band_entropy = float(entropy.mean()) if entropy.size else 0.0
    disagreement = None
    if other is not None:
        other = np.asarray(other, dtype=np.float64)
        if other.shape != p.shape:
            raise ValueError(f"the two probability maps differ in size: {p.shape} and {other.shape}")
        disagreement = 1.0 - dice_iou(p >= 0.5, other >= 0.5)[0]
    return Uncertainty(score=total + (disagreement or 0.0), entropy=total, band_entropy=band_entropy,
                       band_fraction=band_fraction, disagreement=disagreement)


def most_uncertain_first(scores: Mapping[str, Union[Uncertainty, float]]) -> List[str]:
    """Stems ordered by score, the most uncertain first (ties: by stem, so the order is stable)."""
    def value(item) -> float:
        score = item[1].score if isinstance(item[1], Uncertainty) else float(item[1])
        return score if np.isfinite(score) else -np.inf
    return [stem for stem, _ in sorted(scores.items(), key=lambda item: (-value(item), item[0]))]
