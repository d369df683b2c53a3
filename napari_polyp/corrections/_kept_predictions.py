"""The network's predictions a review keeps, in bounded memory.

A whole prediction (the probability and the attention maps at the image's size, float32) is
~8 MiB for a 600-px image with EA-DK's five maps: kept for every item, a session of a few
hundred items, or "Run on all" over a folder, grew by gigabytes (``benchmarks/long_session.py``).
So the :data:`KEEP_WHOLE` items predicted last keep theirs whole; an older one keeps its
probability quantised to 1/255 and zlib-compressed (~35 KiB), enough for the table (its Dice at
any threshold) and for knowing it was predicted, and is predicted again when it is opened, which
gives back its maps.
"""
from __future__ import annotations

import zlib
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from ..inference.prediction import binary_mask
from ..jobs import Predicted, Provenance

KEEP_WHOLE = 16  # the items predicted last keep their whole prediction (going back a few items costs nothing)
LEVELS = 255  # the compressed probability's steps: 1/255 moves a mask by the pixels at the threshold alone


@dataclass(frozen=True)
class _Compressed:
    data: bytes
    shape: Tuple[int, ...]
    provenance: Provenance

    @classmethod
    def of(cls, prediction: Predicted) -> "_Compressed":
        levels = np.round(np.clip(prediction.probability, 0.0, 1.0) * LEVELS).astype(np.uint8)
        return cls(zlib.compress(levels.tobytes(), 1), levels.shape, prediction.provenance)

    def probability(self) -> np.ndarray:
        levels = np.frombuffer(zlib.decompress(self.data), np.uint8).reshape(self.shape)
        return levels.astype(np.float32) / LEVELS


class KeptPredictions:
    """item -> its prediction: whole for the :data:`KEEP_WHOLE` predicted last, compressed for
    the others. Reading one does not reorder them (a table reads every row)."""

    def __init__(self, keep_whole: int = KEEP_WHOLE):
        self.keep_whole = max(int(keep_whole), 1)
        self._whole: "OrderedDict[int, Predicted]" = OrderedDict()
        self._compressed: Dict[int, _Compressed] = {}

    def put(self, index: int, prediction: Predicted) -> None:
        self._compressed.pop(index, None)
        self._whole[index] = prediction
        self._whole.move_to_end(index)
        while len(self._whole) > self.keep_whole:
            old, evicted = self._whole.popitem(last=False)
            self._compressed[old] = _Compressed.of(evicted)

    def whole(self, index: int) -> Optional[Predicted]:
        """The whole prediction (None when there is none, or only a compressed one)."""
        return self._whole.get(index)

    def __contains__(self, index: int) -> bool:
        return index in self._whole or index in self._compressed

    def indices(self) -> List[int]:
        return list(self._whole) + list(self._compressed)

    def provenance(self, index: int) -> Optional[Provenance]:
        found = self._whole.get(index) or self._compressed.get(index)
        return found.provenance if found is not None else None

    def probability(self, index: int) -> Optional[np.ndarray]:
        """The probability map (whole, or back from its compressed form)."""
        if index in self._whole:
            return self._whole[index].probability
        return self._compressed[index].probability() if index in self._compressed else None

    def mask(self, index: int, threshold: float) -> Optional[np.ndarray]:
        probability = self.probability(index)
        return None if probability is None else binary_mask(probability, threshold)

    def drop(self, index: int) -> None:
        self._whole.pop(index, None)
        self._compressed.pop(index, None)

    def drop_where(self, stale: Callable[[Provenance], bool]) -> List[int]:
        """Drop the predictions whose provenance is ``stale``; their items."""
        dropped = [i for i in self.indices() if stale(self.provenance(i))]
        for index in dropped:
            self.drop(index)
        return dropped

    def nbytes(self) -> int:
        """Memory held by the maps (what the bound is about)."""
        whole = sum(p.probability.nbytes + sum(np.asarray(a).nbytes for a in p.attention.values())
                    for p in self._whole.values())
        return whole + sum(len(c.data) for c in self._compressed.values())
