"""`napari-polyp evaluate`: score a checkpoint on a folder with images/ and masks/ (how it is scored:
:mod:`napari_polyp.training.evaluate`)."""
from __future__ import annotations

import json

from ..conventions import DEFAULT_THRESHOLD


def add_arguments(parser) -> None:
    parser.add_argument("--model", required=True, help="network name")
    parser.add_argument("--checkpoint", default=None, help="checkpoint file (default: the model's default one)")
    parser.add_argument("--data", required=True, help="folder with images/ and masks/ (or a corrections dataset)")
    parser.add_argument("--split", choices=("all", "val"), default="all",
                        help="val: only the validation stems recorded in the checkpoint")
    parser.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--backbone-weights", default=None, help="local pretrained backbone weights (file/folder)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N pairs (quick checks)")
    parser.add_argument("--strict", action="store_true", help="stop at the first pair that cannot be read")
    parser.add_argument("--tta", action="store_true",
                        help="flip test-time augmentation: average over the image and its mirror images (3× slower)")
    from .predict import add_second_opinion_argument

    add_second_opinion_argument(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    from ..inference.engine import add_arguments as add_engine_arguments

    add_engine_arguments(parser)


WORST_SHOWN = 5  # images named under the mean


def run(args) -> int:
    from ..io.skipped import report_skipped
    from ..training.evaluate import evaluate

    result = evaluate(args.model, args.data, args.checkpoint, args.split, args.device, args.backbone_weights,
                      args.threshold, args.limit, progress=not args.json, strict=args.strict, tta=args.tta,
                      engine=args.engine, threads=args.threads, second_opinion=args.second_opinion)
    if not args.json:
        print(f"{args.model} on {result['n']} images ({args.split}): dice {result['dice']:.4f} "
              f"iou {result['iou']:.4f} precision {result['precision']:.4f} recall {result['recall']:.4f}")
        if len(result["per_image"]) > 1:  # a mean hides the images that fail: name them
            worst = sorted(result["per_image"], key=lambda row: row["dice"])[:WORST_SHOWN]
            print("lowest dice: " + ", ".join(f"{row['stem']} {row['dice']:.3f}" for row in worst))
        if args.second_opinion:
            overruled = result["second_opinion_overruled"]
            print(f"second opinion: overruled the mask on {len(overruled)} of {result['n']} images"
                  + (": " + ", ".join(overruled) if overruled else ""))
    print(json.dumps(result))
    return report_skipped("evaluate", [s["problem"] for s in result["skipped"]])
