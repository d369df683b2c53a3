"""Validation Dice of one checkpoint run at other input sizes than its card's, alone and
averaged over sizes (each with and without flip TTA), at each image's own size.

    python benchmarks/sizes_val.py --model dino-keys --data ../shared/data/kvasir-seg \
        --sizes 280,336,392,448 [--checkpoint FILE] [--backbone-weights FILE] [--threads 1]

Prints one JSON line per size and per combination of sizes. A probe, not a product path:
the app and `evaluate` run each network at its card's size.
"""
from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import sys

import numpy as np
import torch


def _probabilities(model, image, card, sizes):
    """{(size, view): HxW probability} for the plain view and the two mirror images."""
    from napari_polyp.inference import TTA_FLIPS
    from napari_polyp.inference.prediction import network_input
    from napari_polyp.inference.resample import resize_map

    maps = {}
    for size in sizes:
        x = torch.from_numpy(network_input(image[None], dataclasses.replace(card, input_size=size)))
        for view, dims in enumerate(TTA_FLIPS):
            flipped = torch.flip(x, dims) if dims else x
            p = torch.sigmoid(model(flipped)["logits"].float())
            p = torch.flip(p, dims) if dims else p
            maps[size, view] = resize_map(p[0, 0].numpy(), image.shape[:2])
    return maps


def main(argv=None) -> int:
    import models
    from napari_polyp.inference import TTA_FLIPS
    from napari_polyp.io import read_image, read_mask
    from napari_polyp.training import data as data_mod
    from napari_polyp.training.metrics import MeanScores

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--sizes", required=True, help="comma-separated input sizes, e.g. 280,336,392")
    parser.add_argument("--checkpoint", default=None, help="default: the shipped one")
    parser.add_argument("--backbone-weights", default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--limit", type=int, default=None, help="only the first N validation pairs")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    sizes = [int(s) for s in args.sizes.split(",")]
    model = models.create_model(args.model, checkpoint=args.checkpoint, backbone_weights=args.backbone_weights).eval()
    card = models.base_card(args.model)
    pairs = data_mod.select(data_mod.find_pairs(args.data), model.checkpoint_header["training"]["val_stems"])
    per_image = []
    with torch.inference_mode():
        for pair in pairs[:args.limit]:
            image = read_image(pair.image)
            truth = torch.from_numpy(read_mask(pair.mask) > 0)[None, None].float()
            per_image.append((truth, _probabilities(model, image, card, sizes)))

    def dice(keys) -> float:
        scores = MeanScores()
        for truth, maps in per_image:
            scores.update(torch.from_numpy(np.mean([maps[k] for k in keys], axis=0))[None, None], truth)
        return round(scores.result()["dice"], 4)

    views = range(len(TTA_FLIPS))
    for r in range(1, len(sizes) + 1):
        for combo in itertools.combinations(sizes, r):
            print(json.dumps({"sizes": combo, "n": len(per_image), "dice": dice([(s, 0) for s in combo]),
                              "dice_flips": dice([(s, v) for s in combo for v in views])}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
