"""`napari-polyp train-clicks`: train the click refiner with simulated clicks.

The recipe (RITM's iterative click simulation) is :mod:`napari_polyp.training.click_trainer`.

    napari-polyp train-clicks --data polyp=DIR --data skin=DIR --out runs/clicks --minutes 30
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys

from ..training.click_trainer import ClickTrainConfig, train_clicks


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = ClickTrainConfig(data=(), out="")
    parser.add_argument("--data", action="append", required=True, metavar="TASK=FOLDER",
                        help="training pairs of a task (polyp | skin); repeat for both")
    parser.add_argument("--out", default="runs/click-refiner")
    parser.add_argument("--size", type=int, default=d.size)
    parser.add_argument("--batch", type=int, default=d.batch)
    parser.add_argument("--lr", type=float, default=d.lr)
    parser.add_argument("--steps", type=int, default=d.steps, help="schedule length without --minutes")
    parser.add_argument("--minutes", type=float, default=None, help="time budget; the schedule follows it")
    parser.add_argument("--max-steps", type=int, default=None)
    parser.add_argument("--init", default=d.init, help="checkpoint whose encoder starts the refiner")
    parser.add_argument("--backbone-weights", default=None, help="ImageNet EfficientNet-Lite0 weights instead")
    parser.add_argument("--max-rounds", type=int, default=d.max_rounds)
    parser.add_argument("--near-truth-share", type=float, default=d.near_truth_share,
                        help="share of start masks that are good with one small error")
    parser.add_argument("--band-share", type=float, default=d.band_share,
                        help="share of start masks that are good but off by a band along one stretch of edge")
    parser.add_argument("--structure-share", type=float, default=d.structure_share,
                        help="share of start masks with a neighbouring structure taken in or a part left out")
    parser.add_argument("--no-click-share", type=float, default=d.no_click_share,
                        help="share of batches refined with no click from a deformed true mask (propagation)")
    parser.add_argument("--teacher-share", type=float, default=d.teacher_share)
    parser.add_argument("--focus-share", type=float, default=d.focus_share,
                        help="share of the cropped samples that are a close-up inside the lesion's box")
    parser.add_argument("--freeze-bn", action="store_true", help="keep batch-norm statistics as loaded")
    parser.add_argument("--augment", default=d.augment, help="device augmentation preset")
    parser.add_argument("--val-every", type=int, default=d.val_every)
    parser.add_argument("--warmup-steps", type=int, default=d.warmup_steps)
    parser.add_argument("--val-limit", type=int, default=None, help="first N validation images of each set")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--no-amp", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--resume", action="store_true")


def config_from_args(args) -> ClickTrainConfig:
    return ClickTrainConfig(
        data=tuple(args.data), out=args.out, size=args.size, batch=args.batch, lr=args.lr, steps=args.steps,
        minutes=args.minutes, max_steps=args.max_steps, init=args.init or None,
        backbone_weights=args.backbone_weights, max_rounds=args.max_rounds,
        near_truth_share=args.near_truth_share, band_share=args.band_share,
        structure_share=args.structure_share, no_click_share=args.no_click_share,
        teacher_share=args.teacher_share, focus_share=args.focus_share, freeze_bn=args.freeze_bn,
        augment=args.augment,
        val_every=args.val_every, warmup_steps=args.warmup_steps, val_limit=args.val_limit,
        device=args.device, amp=not args.no_amp, seed=args.seed,
        threads=args.threads, resume=args.resume,
        command="napari-polyp train-clicks " + " ".join(shlex.quote(a) for a in sys.argv[2:]),
    )


def run(args) -> int:
    result = train_clicks(config_from_args(args))
    print(json.dumps({"best_checkpoint": result["best_checkpoint"], "steps": result["steps"],
                      "score": result["best"].get("score")}))
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="napari-polyp train-clicks", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())

