"""Validation Dice of checkpoints alone and of the mean of their probability maps (an
ensemble teacher for distillation, `train --teacher-maps A,B`), at each image's own size.

    python benchmarks/ensemble_val.py --data ../shared/data/kvasir-seg \
        --checkpoint dino-keys=runs/dino-keys-crop/best.pt --checkpoint microaunet-teacher=runs/effnet-teacher/best.pt \
        [--backbone-weights FILE] [--threads 1]

Each checkpoint is scored on the validation stems of the first one (they must share the
split: the trainer's default split seed gives every run on a dataset the same one).
"""
from __future__ import annotations

import argparse
import json
import sys

import torch


def main(argv=None) -> int:
    from napari_polyp.io import read_image, read_mask
    from napari_polyp.training import data as data_mod
    from napari_polyp.training.distill import teacher_predictor
    from napari_polyp.training.metrics import MeanScores

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--checkpoint", action="append", required=True, metavar="LABEL=PATH", help="a checkpoint (any network of the task, or a MicroAUNet teacher) and a label for its row")
    parser.add_argument("--backbone-weights", default=None)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    members = [tuple(item.split("=", 1)) for item in args.checkpoint]
    predictors = [teacher_predictor(path, backbone_weights=args.backbone_weights) for _, path in members]
    stems = predictors[0].model.checkpoint_header["training"]["val_stems"]
    pairs = data_mod.select(data_mod.find_pairs(args.data), stems)
    scores = [MeanScores() for _ in range(len(predictors) + 1)]
    for pair in pairs:
        image, truth = read_image(pair.image), torch.from_numpy(read_mask(pair.mask) > 0)[None, None]
        probabilities = [torch.from_numpy(p.predict(image).probability)[None, None] for p in predictors]
        probabilities.append(torch.stack(probabilities).mean(0))
        for score, probability in zip(scores, probabilities):
            score.update(probability, truth.float())
    names = [f"{label} {path}" for label, path in members] + ["mean of the maps"]
    for name, score in zip(names, scores):
        result = score.result()
        print(json.dumps({"checkpoint": name, "n": result["n"], "dice": round(result["dice"], 4),
                          "iou": round(result["iou"], 4)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
