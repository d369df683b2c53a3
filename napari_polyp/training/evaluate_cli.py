"""`napari-polyp evaluate`: score a checkpoint on a folder with images/ and masks/.

Scores are computed the way the app predicts: the Predictor resizes each image to
the network's input, and its probability map is resized back to the image's own
size; each mask is compared at its own resolution (threshold 0.5), and the
per-image Dice/IoU/precision/recall are averaged (see ``metrics``).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Dict, Optional


def add_arguments(parser) -> None:
    parser.add_argument("--model", required=True, help="network name")
    parser.add_argument("--checkpoint", default=None, help="checkpoint file (default: the model's default one)")
    parser.add_argument("--data", required=True, help="folder with images/ and masks/ (or a corrections dataset)")
    parser.add_argument("--split", choices=("all", "val"), default="all",
                        help="val: only the validation stems recorded in the checkpoint")
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--backbone-weights", default=None, help="local pretrained backbone weights (file/folder)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N pairs (quick checks)")
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")


def load_model(name: str, checkpoint=None, backbone_weights=None):
    """The network with its checkpoint (default: shipped/preferred); refuses untrained weights."""
    import models
    from napari_polyp.errors import UserError

    path = checkpoint if checkpoint is not None else models.default_checkpoint(name)
    if path is None:
        raise UserError(f"{name} has no trained checkpoint (none shipped or preferred); pass --checkpoint")
    return models.create_model(name, checkpoint=path, backbone_weights=backbone_weights)


def evaluate(name: str, data, checkpoint=None, split: str = "all", device: str = "auto",
             backbone_weights=None, threshold: float = 0.5, limit: Optional[int] = None,
             model=None, progress: bool = False) -> Dict:
    """Mean per-image metrics of a checkpoint on ``data``; returns a plain dict
    (n, dice, iou, precision, recall, model, checkpoint, checkpoint_sha256, split)."""
    from napari_polyp.errors import UserError
    from napari_polyp.inference import Predictor

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
    predictor = Predictor(name, device=device, model=model)
    scores = MeanScores()
    iterator = pairs
    if progress:
        from tqdm import tqdm

        iterator = tqdm(pairs, desc=f"evaluating {name}", file=sys.stderr, leave=False)
    for pair in iterator:
        image = data_mod.read_rgb(pair.image)
        truth = data_mod.read_mask(pair.mask)
        probability = predictor.predict(image).probability
        if probability.shape != truth.shape:
            import torch
            import torch.nn.functional as F

            probability = F.interpolate(torch.from_numpy(probability)[None, None], size=truth.shape,
                                        mode="bilinear", align_corners=False)[0, 0].numpy()
        scores.extend([{k: float(v[0]) for k, v in per_image_scores(probability[None], truth[None], threshold).items()}])
    result = scores.result()
    result.update(model=name, checkpoint=str(getattr(model, "checkpoint_path", "") or ""),
                  checkpoint_sha256=header.get("sha256", ""), split=split, threshold=threshold,
                  data=str(Path(data)))
    return result


def run(args) -> int:
    result = evaluate(args.model, args.data, args.checkpoint, args.split, args.device, args.backbone_weights,
                      args.threshold, args.limit, progress=not args.json)
    if not args.json:
        print(f"{args.model} on {result['n']} images ({args.split}): dice {result['dice']:.4f} "
              f"iou {result['iou']:.4f} precision {result['precision']:.4f} recall {result['recall']:.4f}")
    print(json.dumps(result))
    return 0
