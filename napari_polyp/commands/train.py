"""`napari-polyp train`: train a network on image/mask pairs (also under torchrun); the trainer is
:mod:`napari_polyp.training.trainer`."""
from __future__ import annotations

import json
import shlex
import sys


# presets.SCHEDULES and presets.OPTIMIZERS, spelled out so that `--help` imports no torch
# (tests/training/test_trainer.py holds them equal)
SCHEDULES = ("cosine", "poly", "cosine_restarts", "constant")
OPTIMIZERS = ("adamw", "adam", "sgd")
# augment.PRESETS, each with what it does (--help would otherwise import OpenCV; the same test holds the names)
AUGMENTATIONS = {
    "none": "no augmentation",
    "flips": "horizontal flips only",
    "microaunet": "both flips and 0-360 degree rotation (MicroAUNet's code)",
    "pefnet": "flips, crop, rotation, grid distortion, cut-out (PEFNet's paper)",
    "standard": "both flips, rotation/zoom/shift, light colour jitter",
    "strong": "standard with wider zoom and shift and stronger colour",
    "strong-small": "strong zoomed out to 0.35: small lesions",
    "generalise": "for other centres: rotation, zoom 0.6-1.5, strong colour, gamma, low resolution, blur, noise, "
                  "highlights, Fourier style mixing (the last two on the device only)",
    "generalise-nofda": "generalise without the Fourier style mixing",
    "generalise-small": "generalise zoomed out to 0.35: small lesions, as at ETIS",
    "generalise-debris": "generalise with synthetic debris lumps pasted on the background (hard negatives)",
    "generalise-hist": "generalise with histogram matching to another image of the batch (on the device only)",
}


def add_arguments(parser) -> None:
    parser.add_argument("--model", required=True, help="network name (see `napari-polyp models`)")
    parser.add_argument("--data", required=True, help="folder with images/ and masks/ (or a corrections dataset)")
    parser.add_argument("--out", default=None, help="run folder for last.pt/best.pt (default runs/<model>)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="epochs (default: the network's preset; with --time-budget-min: what fits)")
    parser.add_argument("--batch", type=int, default=None, help="batch size per process")
    parser.add_argument("--size", type=int, default=None, help="training side in px (default: the card's)")
    parser.add_argument("--lr", type=float, default=None, help="peak learning rate (default: preset)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--split-seed", type=int, default=0, help="seed of the validation split")
    parser.add_argument("--val-fraction", type=float, default=0.1)
    parser.add_argument("--resume", action="store_true", help="continue the run in --out")
    parser.add_argument("--init-checkpoint", default=None, help="start from these weights")
    parser.add_argument("--variant", default=None, help="variant (e.g. MicroAUNet 'repo')")
    parser.add_argument("--teacher", default=None, help="MicroAUNet: distil from this teacher checkpoint")
    parser.add_argument("--teacher-maps", default=None, metavar="CHECKPOINT[,CHECKPOINT...]",
                        help="distil from this checkpoint's probability maps (any network of the task, e.g. "
                             "dino-keys, or a MicroAUNet teacher), predicted once per training image and warped "
                             "with its augmentation; several, comma-separated: the mean of their maps")
    parser.add_argument("--train-teacher", default=None, metavar="KIND",
                        help="MicroAUNet: train a distillation teacher instead (malunet | efficientnet_lite0)")
    parser.add_argument("--backbone-weights", default=None, help="local pretrained backbone weights (file/folder)")
    parser.add_argument("--pretrained-backbone", action="store_true", help="timm's pretrained backbone (online)")
    parser.add_argument("--augment", default=None, metavar="PRESET",
                        help="augmentation preset (default: the network's): "
                             + "; ".join(f"{name}: {what}" for name, what in AUGMENTATIONS.items()))
    parser.add_argument("--augment-on-device", action="store_true",
                        help="augment whole batches on the training device (a GPU: the CPU cannot keep up)")
    parser.add_argument("--schedule", default=None, choices=SCHEDULES,
                        help="learning-rate schedule override (default: the network's preset)")
    parser.add_argument("--optimizer", default=None, choices=OPTIMIZERS,
                        help="optimiser override (default: the network's preset, e.g. the paper's SGD)")
    parser.add_argument("--no-cache", action="store_true", help="never cache frozen-backbone features")
    parser.add_argument("--views", default="identity,hflip",
                        help="frozen-feature networks: comma-separated cached views of each image "
                             "(identity, hflip, vflip, rot180)")
    parser.add_argument("--feature-cache", default=None,
                        help="folder of the frozen-feature cache (default: --out); runs can share one")
    parser.add_argument("--cache-only", action="store_true",
                        help="frozen-feature networks: fill the feature cache, then stop (resumable)")
    parser.add_argument("--crop-tokens", type=int, default=0, metavar="N",
                        help="frozen-feature networks: train on random N×N-token windows of the cached "
                             "features and the same window of image and mask (cheaper steps; 0: whole image)")
    parser.add_argument("--ema", type=float, default=0.0, metavar="DECAY",
                        help="validate and save a moving average of the weights (e.g. 0.998): steadier "
                             "validation from epoch to epoch, usually a little higher")
    parser.add_argument("--freeze-bn", action="store_true",
                        help="keep the batch-norm statistics of --init-checkpoint (fine-tuning in small "
                             "batches on a CPU: re-estimated, they drift)")
    parser.add_argument("--cutmix", type=float, default=0.0, metavar="P",
                        help="CutMix: with probability P a training sample gets a box of another sample of its "
                             "batch, with that box of its mask and teacher map (images only, not cached "
                             "features; 0: off)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--no-amp", action="store_true", help="no mixed precision on CUDA")
    parser.add_argument("--time-budget-min", type=float, default=None, help="stop cleanly after this many minutes")
    parser.add_argument("--max-steps", type=int, default=None, help="stop after this many optimiser steps")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--quiet", action="store_true", help="no progress bar; one line per epoch")


def _parse_variant(text):
    """``--variant repo`` (a network's named variant) or ``--variant decoder=last-keys,rgb_path=false,width=256``
    (true/false become booleans, whole numbers integers)."""
    if not text:
        return {}
    if "=" not in text:
        return {"variant": text}
    variant = {}
    for item in text.split(","):
        key, _, value = item.partition("=")
        value = value.strip()
        lowered = value.lower()
        variant[key.strip()] = True if lowered == "true" else False if lowered == "false" else \
            int(value) if value.lstrip("-").isdigit() else value
    return variant


def config_from_args(args):
    from ..training.trainer import TrainConfig

    variant = _parse_variant(args.variant)
    if args.train_teacher:
        variant = {"kind": args.train_teacher}
    return TrainConfig(
        model=args.model, data=args.data, out=args.out or f"runs/{args.model}", epochs=args.epochs,
        batch=args.batch, size=args.size, lr=args.lr, seed=args.seed, split_seed=args.split_seed,
        val_fraction=args.val_fraction, resume=args.resume, init_checkpoint=args.init_checkpoint,
        variant=variant, teacher=args.teacher, teacher_kind=args.train_teacher, teacher_maps=args.teacher_maps,
        backbone_weights=args.backbone_weights, pretrained_backbone=args.pretrained_backbone,
        augment=args.augment, augment_on_device=args.augment_on_device, schedule=args.schedule,
        optimizer=args.optimizer, cache_features=not args.no_cache,
        views=tuple(v.strip() for v in args.views.split(",") if v.strip()),
        feature_cache=args.feature_cache, cache_only=args.cache_only, crop_tokens=args.crop_tokens,
        ema_decay=args.ema, cutmix=args.cutmix, freeze_bn=args.freeze_bn,
        device=args.device, amp=not args.no_amp,
        time_budget_min=args.time_budget_min, max_steps=args.max_steps, num_threads=args.threads,
        command="napari-polyp " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
    )


def print_events(events, quiet: bool = False, rank: int = 0):
    """Show training events with tqdm (one bar per epoch); returns the "done" event."""
    from tqdm import tqdm

    bar = None
    done = None
    for event in events:
        if rank != 0:
            done = event
            continue
        if event.kind in ("start", "baseline"):
            print(event.message, file=sys.stderr, flush=True)
        elif event.kind == "step" and not quiet:
            if bar is None:
                bar = tqdm(total=event.steps_per_epoch, desc=f"epoch {event.epoch + 1}/{event.total_epochs}",
                           leave=False, file=sys.stderr, dynamic_ncols=True)
            bar.update(1)
            bar.set_postfix(loss=f"{event.loss:.4f}", lr=f"{event.lr:.2e}")
        elif event.kind == "epoch":
            if bar is not None:
                bar.close()
                bar = None
            m = event.metrics
            print(f"epoch {event.epoch}/{event.total_epochs} step {event.step} loss {event.loss:.4f} "
                  f"val dice {m.get('dice', float('nan')):.4f} iou {m.get('iou', float('nan')):.4f} "
                  f"best {event.best_dice:.4f} ({event.elapsed_s / 60:.1f} min)"
                  + (f" [{event.message}]" if event.message else ""), file=sys.stderr, flush=True)
        elif event.kind == "done":
            done = event
    return done


def run(args) -> int:
    from ..training.trainer import dist_info, iter_train

    config = config_from_args(args)
    _, rank, _ = dist_info()
    done = print_events(iter_train(config), quiet=args.quiet, rank=rank)
    if rank == 0 and done is not None:
        print(json.dumps({"best_checkpoint": done.checkpoint, "best_dice": done.best_dice, "epochs": done.epoch,
                          "steps": done.step, "elapsed_s": round(done.elapsed_s, 1),
                          "stopped_early": done.stopped_early}))
    return 0
