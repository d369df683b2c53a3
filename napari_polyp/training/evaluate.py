"""Scoring a checkpoint on a folder with images/ and masks/: the core of ``napari-polyp evaluate``.

Scores are computed the way the app predicts: the Predictor resizes each image to
the network's input, and its probability map is resized back to the image's own
size; each mask is compared at its own resolution (threshold ``conventions.DEFAULT_THRESHOLD``), and the
per-image Dice/IoU/precision/recall are averaged (see ``metrics``). Masks are read
with the product's one mask rule (:mod:`napari_polyp.io.masks`: 0/1, 0/255 and JPEG
masks alike).

A mask of another size than its image is scored at the mask's size, and said so
per file; a pair that cannot be read is skipped and reported at the end (exit
status 1), or stops the run with ``strict``.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Dict, Optional

from ..conventions import DEFAULT_THRESHOLD


def load_model(name: str, checkpoint=None, backbone_weights=None):
    """The network with its checkpoint (default: shipped/preferred); refuses untrained weights."""
    import models
    from napari_polyp.errors import UserError

    path = checkpoint if checkpoint is not None else models.default_checkpoint(name)
    if path is None:
        raise UserError(f"{name} has no trained checkpoint (none shipped or preferred); pass --checkpoint")
    return models.create_model(name, checkpoint=path, backbone_weights=backbone_weights)


def evaluate(name: str, data, checkpoint=None, split: str = "all", device: str = "auto",
             backbone_weights=None, threshold: float = DEFAULT_THRESHOLD, limit: Optional[int] = None,
             model=None, progress: bool = False, strict: bool = False, tta: bool = False,
             engine: Optional[str] = None, threads: Optional[int] = None, second_opinion: bool = False) -> Dict:
    """Mean per-image metrics of a checkpoint on ``data``; returns a plain dict
    (n, dice, iou, precision, recall, model, checkpoint, checkpoint_sha256, split,
    ``per_image``: [{stem, dice, iou}] in file order (a mean of 20 hides which frames fail),
    ``skipped``: [{file, problem}], ``resized``: [files whose mask size differs from the image]).
    ``second_opinion``: the masks as the task's checking network leaves them (``inference.second_opinion``)."""
    from napari_polyp.errors import UserError
    from napari_polyp.inference import Predictor
    from napari_polyp.io import read_image, read_mask

    from . import data as data_mod
    from .metrics import MeanScores, per_image_scores

    if model is None:
        model = load_model(name, checkpoint, backbone_weights)
    header = getattr(model, "checkpoint_header", None) or {}
    pairs = data_mod.find_pairs(data)
    if split == "val":
        stems = header.get("training", {}).get("val_stems")
        if not stems:
            raise UserError(f"{getattr(model, 'checkpoint_path', name)} records no validation stems; use --split all")
        pairs = data_mod.select(pairs, stems)
        if not pairs:
            raise UserError(f"{data}: none of the checkpoint's {len(stems)} validation stems are there")
    if limit:
        pairs = pairs[:limit]
    predictor = Predictor(name, device=device, model=model, tta=tta, engine=engine, threads=threads)
    if second_opinion:
        from napari_polyp.inference.second_opinion import with_second_opinion

        predictor = with_second_opinion(predictor, device, engine, threads)
    scores, overruled = MeanScores(), []
    iterator = pairs
    if progress:
        from tqdm import tqdm

        iterator = tqdm(pairs, desc=f"evaluating {name}", file=sys.stderr, leave=False)
    skipped, resized, per_image = [], [], []
    for pair in iterator:
        try:
            image, truth = read_image(pair.image), read_mask(pair.mask)
        except UserError as err:
            if strict:
                raise UserError(f"stopped at the first unreadable pair (--strict): {err}") from None
            skipped.append({"file": str(pair.mask), "problem": str(err)})
            continue
        prediction = predictor.predict(image)
        probability = prediction.probability
        if prediction.overruled:
            overruled.append(pair.stem)
        if probability.shape != truth.shape:
            _say(f"{pair.mask}: mask is {_size(truth)}, its image {pair.image.name} is {_size(image)}; "
                 f"the prediction is resized to the mask to score it")
            resized.append(str(pair.mask))
            probability = _resize_probability(probability, truth.shape)
        image_scores = {k: float(v[0]) for k, v in per_image_scores(probability[None], truth[None], threshold).items()}
        scores.extend([image_scores])
        per_image.append({"stem": pair.stem, "dice": round(image_scores["dice"], 4), "iou": round(image_scores["iou"], 4)})
    result = scores.result()
    result.update(model=name, checkpoint=str(getattr(model, "checkpoint_path", "") or ""),
                  checkpoint_sha256=header.get("sha256", ""), split=split, threshold=threshold,
                  data=str(Path(data)), skipped=skipped, resized=resized, tta=tta, engine=predictor.engine,
                  per_image=per_image)
    if second_opinion:
        result["second_opinion_overruled"] = overruled
    return result


def _size(array) -> str:
    return f"{array.shape[1]}x{array.shape[0]}"


def _say(message: str) -> None:
    print(f"napari-polyp evaluate: {message}", file=sys.stderr)


def _resize_probability(probability, shape):
    import torch
    import torch.nn.functional as F

    return F.interpolate(torch.from_numpy(probability)[None, None], size=shape,
                         mode="bilinear", align_corners=False)[0, 0].numpy()
