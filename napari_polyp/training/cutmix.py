"""CutMix for segmentation batches: a box of one sample pasted into another, with the box of
its mask and of its teacher map, so every target stays exact for the pixels it covers.

Why: the distilled MicroAUNet fits its training images far better than its validation ones
(Dice 0.88 against 0.77). Pasting a region of another image breaks the context the network
can memorise (where a polyp sits in a frame, what the frame around it looks like), the
regulariser CutMix was made for. Torch-only and applied to whole batches after the
per-sample augmentation, so the CPU and the GPU (``device_augment``) paths share it.
"""
from __future__ import annotations

import math
from typing import Optional, Tuple

import torch

AREA = (0.15, 0.5)  # [B] fraction of the image a pasted box covers
ASPECT = (0.5, 2.0)  # [B] height : width of the box


def draw_boxes(batch: int, height: int, width: int, p: float, seed: int):
    """For each sample, ``None`` or ``(source, top, left, box_h, box_w)``: the box of sample
    ``source`` (the next one in the batch) pasted at the same place. Deterministic per seed."""
    g = torch.Generator().manual_seed(int(seed) % (2 ** 63))
    boxes = []
    for i in range(batch):
        u = torch.rand(5, generator=g).tolist()
        if batch < 2 or u[0] >= p:
            boxes.append(None)
            continue
        area = (AREA[0] + (AREA[1] - AREA[0]) * u[1]) * height * width
        aspect = math.exp(math.log(ASPECT[0]) + (math.log(ASPECT[1]) - math.log(ASPECT[0])) * u[2])
        box_h = min(height, max(1, round(math.sqrt(area * aspect))))
        box_w = min(width, max(1, round(math.sqrt(area / aspect))))
        top, left = int(u[3] * (height - box_h + 1)), int(u[4] * (width - box_w + 1))
        boxes.append(((i + 1) % batch, top, left, box_h, box_w))
    return boxes


def cutmix(inputs: torch.Tensor, masks: torch.Tensor, teacher: Optional[torch.Tensor], p: float,
           seed: int) -> Tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
    """(inputs B×C×H×W, masks B×1×H×W, teacher maps B×1×H×W or None), each sample given a box
    of its neighbour with probability ``p``. The originals are left as they were."""
    if p <= 0:
        return inputs, masks, teacher
    batch, _, height, width = inputs.shape
    tensors = [inputs, masks] + ([teacher] if teacher is not None else [])
    mixed = [t.clone() for t in tensors]
    for i, box in enumerate(draw_boxes(batch, height, width, p, seed)):
        if box is None:
            continue
        source, top, left, box_h, box_w = box
        rows, cols = slice(top, top + box_h), slice(left, left + box_w)
        for original, out in zip(tensors, mixed):
            out[i, :, rows, cols] = original[source, :, rows, cols]  # from the unmixed batch
    return mixed[0], mixed[1], mixed[2] if teacher is not None else None
