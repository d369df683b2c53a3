"""`napari-polyp finetune`: fine-tune a checkpoint on a corrections dataset.

The dataset's accepted/corrected items are split (seeded) into training and
validation; the start checkpoint is scored on the validation items first. The
fine-tuned checkpoint (best validation Dice over the epochs) is written into the
user checkpoint folder, and becomes the preferred checkpoint of its network only
if its validation Dice is not lower than the start checkpoint's on the same items
(or with ``force``). The Fine-tune widget calls :func:`finetune` / :func:`iter_finetune`.
"""
from __future__ import annotations

import datetime as _dt
import json
import math
import os
import sys
from pathlib import Path
from typing import Callable, Dict, Iterator, Optional


def add_arguments(parser) -> None:
    parser.add_argument("--data", required=True, help="corrections dataset (or any folder with images/ and masks/)")
    parser.add_argument("--model", required=True, help="network name")
    parser.add_argument("--checkpoint", default=None, help="start checkpoint (default: the model's default one)")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--time-budget-min", type=float, default=None)
    parser.add_argument("--lr", type=float, default=None, help="peak learning rate (default: a tenth of the preset's)")
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--size", type=int, default=None, help="training side in px (default: the card's)")
    parser.add_argument("--val-fraction", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--force", action="store_true", help="make it preferred even if validation Dice fell")
    parser.add_argument("--backbone-weights", default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")


def _stamp() -> str:
    # Microseconds and the process id: two fine-tunes started in the same second
    # (two viewers, or a GUI and a CLI) must not share a run folder or a file name.
    return f"{_dt.datetime.now().strftime('%Y%m%d-%H%M%S-%f')}-{os.getpid()}"


def iter_finetune(data, model: str, checkpoint=None, epochs: int = 5, force: bool = False, lr: Optional[float] = None,
                  batch: Optional[int] = None, size: Optional[int] = None, val_fraction: float = 0.2, seed: int = 0,
                  time_budget_min: Optional[float] = None, backbone_weights=None, device: str = "auto",
                  num_threads: Optional[int] = None, should_stop: Optional[Callable[[], bool]] = None,
                  command: str = "", out_dir=None) -> Iterator:
    """Yields the trainer's events, then a final ``("result", dict)`` tuple."""
    import models
    from models.checkpoint import default_checkpoint, peek_header, set_preferred, user_checkpoint_dir
    from napari_polyp.errors import UserError

    from ..corrections._atomic import atomic_copy
    from .presets import get_preset
    from .trainer import TrainConfig, iter_train

    start = Path(checkpoint) if checkpoint else default_checkpoint(model)
    if start is None:
        raise UserError(f"{model} has no checkpoint to start from; pass --checkpoint")
    models.get_entry(model)  # unknown names fail early
    stamp = _stamp()
    run_dir = Path(out_dir) if out_dir else user_checkpoint_dir() / "runs" / f"{model}-finetune-{stamp}"
    config = TrainConfig(
        model=model, data=str(data), out=str(run_dir), epochs=epochs, batch=batch, size=size,
        lr=lr if lr is not None else get_preset(model).lr / 10, seed=seed, val_fraction=val_fraction,
        split_seed=seed, init_checkpoint=str(start), backbone_weights=backbone_weights, device=device,
        time_budget_min=time_budget_min, num_threads=num_threads, command=command or "finetune",
    )
    baseline: Dict = {}
    done = None
    for event in iter_train(config, should_stop):
        if event.kind == "baseline":
            baseline = dict(event.metrics)
        if event.kind == "done":
            done = event
        yield event
    best = run_dir / "best.pt"
    result = {"start_checkpoint": str(start), "checkpoint": "", "preferred": False,
              "before": baseline, "after": {}, "run_dir": str(run_dir)}
    if not best.is_file():
        result["reason"] = "no checkpoint was written (stopped before the first validation)"
        yield "result", result
        return
    header = peek_header(best)
    after = dict(header.get("metrics", {}))
    target = user_checkpoint_dir() / f"{model}-finetuned-{stamp}.pt"
    atomic_copy(best, target)  # a crash mid-copy must not leave a broken checkpoint behind
    before_dice = baseline.get("dice", float("nan"))
    after_dice = after.get("dice", float("nan"))
    not_worse = math.isfinite(after_dice) and (not math.isfinite(before_dice) or after_dice >= before_dice)
    result.update(checkpoint=str(target), after=after, stopped_early=bool(done and done.stopped_early))
    if not_worse or force:
        set_preferred(model, target)
        result["preferred"] = True
        result["reason"] = ("validation Dice did not fall" if not_worse
                            else "forced although validation Dice fell")
    else:
        result["reason"] = (f"validation Dice fell ({before_dice:.4f} -> {after_dice:.4f}); "
                            "kept the previous default (use --force to prefer it anyway)")
    yield "result", result


def finetune(*args, on_event: Optional[Callable] = None, **kwargs) -> Dict:
    """Run :func:`iter_finetune` to the end; returns its result dict."""
    result: Dict = {}
    for item in iter_finetune(*args, **kwargs):
        if isinstance(item, tuple) and item[0] == "result":
            result = item[1]
        elif on_event is not None:
            on_event(item)
    return result


def run(args) -> int:
    import shlex

    from .cli import print_events

    result: Dict = {}

    def events():
        nonlocal result
        for item in iter_finetune(
            args.data, args.model, args.checkpoint, args.epochs, args.force, args.lr, args.batch, args.size,
            args.val_fraction, args.seed, args.time_budget_min, args.backbone_weights, args.device, args.threads,
            command="napari-polyp " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
        ):
            if isinstance(item, tuple):
                result = item[1]
            else:
                if item.kind == "baseline":
                    print(item.message, file=sys.stderr)
                yield item

    print_events(events(), quiet=args.json)
    before, after = result.get("before", {}).get("dice"), result.get("after", {}).get("dice")
    if not args.json:
        print(f"validation dice: before {before} after {after}; {result.get('reason', '')}")
        print(f"checkpoint: {result.get('checkpoint') or '(none)'}; preferred: {result.get('preferred')}")
    print(json.dumps(result))
    return 0
