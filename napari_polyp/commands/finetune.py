"""`napari-polyp finetune`: fine-tune a checkpoint on a corrections dataset, honestly (the rules, the
recipe and the claim: :mod:`napari_polyp.training.finetune`)."""
from __future__ import annotations

import json
import shlex
import sys
from typing import Dict

from ..jobs import Finished
from ..training.finetune import ANCHOR_LIMIT, FOLDS, HOLDOUT_MIN_ITEMS, RECIPE, RECIPES, SCHEMES, iter_finetune, summary
from .train import print_events


def add_arguments(parser) -> None:
    parser.add_argument("--data", required=True, help="corrections dataset (or any folder with images/ and masks/)")
    parser.add_argument("--model", required=True, help="network name")
    parser.add_argument("--checkpoint", default=None, help="start checkpoint (default: the model's default one)")
    parser.add_argument("--recipe", default="adapt", choices=RECIPES,
                        help="adapt: AdamW, BatchNorm frozen, generalise augmentation, replay (default); "
                             "preset: the network's training preset at a tenth of its lr (the old fine-tune)")
    parser.add_argument("--steps", type=int, default=None,
                        help=f"optimiser steps of each fine-tune (default: the recipe's, {RECIPE.steps})")
    parser.add_argument("--epochs", type=int, default=None,
                        help="passes over the training items instead of --steps")
    parser.add_argument("--time-budget-min", type=float, default=None,
                        help="fewer steps when the folds and the final run would not fit")
    parser.add_argument("--lr", type=float, default=None, help=f"peak learning rate (default: {RECIPE.lr:g})")
    parser.add_argument("--optimizer", default=None, choices=("adamw", "adam", "sgd"))
    parser.add_argument("--augment", default=None, help=f"augmentation preset (default: {RECIPE.augment})")
    parser.add_argument("--batch", type=int, default=None, help=f"batch size (default: {RECIPE.batch})")
    parser.add_argument("--replay", type=float, default=None,
                        help=f"share of each batch from the start checkpoint's training images (default: "
                             f"{RECIPE.replay:g}; 0: none)")
    parser.add_argument("--start-data", default=None,
                        help="the start checkpoint's training folder, when it is not where its header says "
                             "(replay draws from it; its validation split is the anchor)")
    parser.add_argument("--bn", choices=("frozen", "train"), default=None,
                        help="BatchNorm during fine-tuning: frozen (eval mode, the default) or train")
    parser.add_argument("--size", type=int, default=None, help="training side in px (default: the card's)")
    parser.add_argument("--validation", choices=SCHEMES, default="auto",
                        help=f"cv: k-fold cross-validation; holdout: a --val-fraction split; auto: cv unless the "
                             f"hold-out split has {HOLDOUT_MIN_ITEMS}+ items")
    parser.add_argument("--folds", type=int, default=FOLDS)
    parser.add_argument("--val-fraction", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--force", action="store_true",
                        help="make it preferred even if validation or anchor Dice fell or no before/after can be "
                             "claimed; also trains on accepted items alone")
    parser.add_argument("--anchor-limit", type=int, default=ANCHOR_LIMIT,
                        help="anchor items scored before/after to show forgetting (0: none)")
    parser.add_argument("--backbone-weights", default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")


def run(args) -> int:
    result: Dict = {}

    def events():
        nonlocal result
        for item in iter_finetune(
            args.data, args.model, args.checkpoint, epochs=args.epochs, force=args.force, lr=args.lr,
            batch=args.batch, size=args.size, val_fraction=args.val_fraction, seed=args.seed,
            time_budget_min=args.time_budget_min, backbone_weights=args.backbone_weights, device=args.device,
            num_threads=args.threads, command="napari-polyp " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
            anchor_limit=args.anchor_limit, recipe=args.recipe, steps=args.steps, optimizer=args.optimizer,
            augment=args.augment, replay=args.replay, start_data=args.start_data,
            freeze_bn=None if args.bn is None else args.bn == "frozen", validation=args.validation, folds=args.folds,
        ):
            if isinstance(item, Finished):
                result = item.value
            else:
                yield item

    print_events(events(), quiet=args.json)
    if not args.json:
        print(summary(result))
    print(json.dumps(result))
    return 0
