"""`napari-polyp finetune`: fine-tune a checkpoint on a corrections dataset, honestly.

The rules (README, "Fine-tuning honestly"), each decided by one function here:

- :func:`refusal`: no run on fewer than :data:`MIN_ITEMS` accepted/corrected items, when
  every mask is empty, or when every item is an *accepted* prediction (the network would
  be scored against its own output; ``force`` trains anyway, with no before/after claim).
- :func:`choose_validation`: a seeded validation split stratified by status that always
  holds corrected items, and accepted ones only beside them. A folder without a manifest
  holds reference masks, which count as corrected.
- :func:`claim_problem`: fewer than :data:`MIN_VAL_ITEMS` validation items, or only empty
  validation masks, and the before/after figures are not claimed: the result says so, its
  ``before``/``after`` are empty (the figures are kept under ``measured``) and the
  checkpoint never becomes the default unless forced.
- the anchor set (:func:`anchor_pairs`): the start checkpoint's own validation split when its
  data folder exists, else accepted items outside validation; scored before and after so
  forgetting shows, and a fall of more than :data:`FORGET_TOLERANCE` keeps the old default.

The fine-tuned checkpoint (best validation Dice over the epochs) is written into the
user checkpoint folder; it becomes the preferred checkpoint of its network only when the
claim stands, validation Dice did not fall and the anchor did not fall (or with
``force``). The Fine-tune widget calls :func:`finetune` / :func:`iter_finetune`.
"""
from __future__ import annotations

import datetime as _dt
import json
import math
import os
import random
import sys
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

MIN_ITEMS = 4  # fewer accepted/corrected items: refuse to train
MIN_VAL_ITEMS = 5  # fewer validation items: train, but claim no before/after
ANCHOR_LIMIT = 24  # anchor items scored before/after (at the training size), to keep it quick
FORGET_TOLERANCE = 0.02  # anchor Dice may fall this much before the old default is kept


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
    parser.add_argument("--force", action="store_true",
                        help="make it preferred even if validation or anchor Dice fell or no before/after can be "
                             "claimed; also trains on accepted items alone")
    parser.add_argument("--anchor-limit", type=int, default=ANCHOR_LIMIT,
                        help="anchor items scored before/after to show forgetting (0: none)")
    parser.add_argument("--backbone-weights", default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")


def _stamp() -> str:
    # Microseconds and the process id: two fine-tunes started in the same second
    # (two viewers, or a GUI and a CLI) must not share a run folder or a file name.
    return f"{_dt.datetime.now().strftime('%Y%m%d-%H%M%S-%f')}-{os.getpid()}"


# -- the rules ------------------------------------------------------------------------

def item_kinds(data) -> Dict[str, str]:
    """stem -> "corrected" or "accepted" for every item training may use. A folder
    without a manifest holds reference masks (made by people, not by the network):
    they count as corrected."""
    from napari_polyp.corrections.dataset import CorrectionsDataset

    from . import data as data_mod

    pairs = data_mod.find_pairs(data)
    if not data_mod.is_corrections_dataset(data):
        return {p.stem: "corrected" for p in pairs}
    latest = CorrectionsDataset(data).latest()
    return {p.stem: latest[p.stem].status for p in pairs if p.stem in latest}


def _empty_stems(data, stems: Sequence[str]) -> List[str]:
    from napari_polyp.io import read_mask

    from . import data as data_mod

    return [p.stem for p in data_mod.select(data_mod.find_pairs(data), stems) if not read_mask(p.mask).any()]


def refusal(kinds: Dict[str, str], empty: Sequence[str], force: bool = False) -> str:
    """Why fine-tuning must not start ("" when it may)."""
    if len(kinds) < MIN_ITEMS:
        return (f"fine-tuning needs at least {MIN_ITEMS} accepted or corrected items, the dataset has "
                f"{len(kinds)}: review more items first")
    if len(empty) == len(kinds):
        return f"every one of the {len(kinds)} masks is empty: there is nothing to learn"
    if "corrected" not in kinds.values() and not force:
        return (f"all {len(kinds)} items are accepted predictions: validation would score the network "
                "against its own output. Correct some items first (or use --force / \"prefer the result\" "
                "to train without a before/after claim)")
    return ""


def choose_validation(kinds: Dict[str, str], val_fraction: float, seed: int) -> List[str]:
    """Seeded validation stems, stratified by status: corrected items always, accepted ones
    only beside them (in their share of the dataset); never all training items."""
    corrected = sorted(s for s, k in kinds.items() if k == "corrected")
    accepted = sorted(s for s, k in kinds.items() if k != "corrected")
    if not corrected:
        return []
    rng = random.Random(seed)
    rng.shuffle(corrected)
    rng.shuffle(accepted)
    n_val = min(max(1, round(val_fraction * len(kinds))), len(kinds) - 1)
    n_corrected = min(len(corrected), max(1, round(n_val * len(corrected) / len(kinds))))
    n_accepted = min(len(accepted), n_val - n_corrected)
    return sorted(corrected[:n_corrected] + accepted[:n_accepted])


def claim_problem(val_stems: Sequence[str], kinds: Dict[str, str], empty: Sequence[str]) -> str:
    """Why the validation figures must not be claimed as before/after ("" when they may)."""
    if not any(kinds.get(s) == "corrected" for s in val_stems):
        return "no corrected item to validate on (the network would be scored against its own output)"
    if len(val_stems) < MIN_VAL_ITEMS:
        return (f"only {len(val_stems)} validation item{'s' if len(val_stems) != 1 else ''} (fewer than "
                f"{MIN_VAL_ITEMS}): too few to tell better from worse, no before/after claim")
    if set(val_stems) <= set(empty):
        return "every validation mask is empty: any network that predicts nothing scores 1, no before/after claim"
    return ""


def anchor_pairs(start_header: Dict, data, kinds: Dict[str, str], val_stems: Sequence[str],
                 limit: int = ANCHOR_LIMIT) -> Tuple[list, str]:
    """The anchor set (pairs, where from): the start checkpoint's own validation split when
    its data folder exists, else accepted items outside validation; at most ``limit``
    (a seeded sample)."""
    from . import data as data_mod

    if limit <= 0:
        return [], "none (anchor limit 0)"
    training = start_header.get("training", {}) if isinstance(start_header, dict) else {}
    home, stems = training.get("data"), training.get("val_stems")
    pairs, source = [], ""
    if home and stems and Path(home).is_dir():
        try:
            pairs = data_mod.select(data_mod.find_pairs(home), stems)
            source = f"the start checkpoint's validation split ({len(pairs)} items of {home})"
        except Exception:  # a moved or unreadable folder: fall back to the dataset's own items
            pairs = []
    if not pairs:
        wanted = [s for s, k in kinds.items() if k == "accepted" and s not in set(val_stems)]
        pairs = data_mod.select(data_mod.find_pairs(data), wanted)
        source = f"accepted items outside validation ({len(pairs)})" if pairs else ""
    if len(pairs) > limit:
        pairs = sorted(random.Random(0).sample(list(pairs), limit), key=lambda p: p.stem)
        source += f", a seeded sample of {limit}"
    return pairs, source or "none: no start split on this machine and no accepted items"


def score_pairs(model_name: str, checkpoint, pairs, size: int, device: str = "auto",
                backbone_weights=None) -> Dict:
    """Validation metrics of a checkpoint on ``pairs`` at the training size: the very
    measure the trainer validates with (``trainer.validate``)."""
    import models
    from napari_polyp.inference import resolve_device

    from . import data as data_mod
    from .augment import Augmenter
    from .trainer import Batches, norm_card, validate

    if not pairs:
        return {}
    target = resolve_device(device)
    model = models.create_model(model_name, checkpoint=str(checkpoint), backbone_weights=backbone_weights)
    model.to(target).eval()
    arrays = data_mod.PairArrays(pairs, size)
    batches = Batches(arrays, norm_card(model_name, size), Augmenter("none", size), 0, target)
    return validate(model, batches, arrays)


def _dice(metrics: Dict) -> float:
    value = metrics.get("dice", float("nan")) if metrics else float("nan")
    return float(value) if isinstance(value, (int, float)) else float("nan")


def decide(before: Dict, after: Dict, anchor: Dict, problem: str, force: bool) -> Tuple[bool, str]:
    """(make it the default?, why): the claim must stand, validation Dice must not fall and
    the anchor must not fall by more than FORGET_TOLERANCE; ``force`` overrides all three."""
    before_dice, after_dice = _dice(before), _dice(after)
    anchor_fall = _dice(anchor.get("before", {})) - _dice(anchor.get("after", {}))
    if problem:
        return force, (f"forced although {problem}" if force else f"kept the previous default: {problem}")
    if not math.isfinite(after_dice):
        return force, "no validation figure after fine-tuning"
    if math.isfinite(before_dice) and after_dice < before_dice:
        why = f"validation Dice fell ({before_dice:.4f} -> {after_dice:.4f})"
        return force, (f"forced although {why}" if force
                       else f"{why}; kept the previous default (use --force to prefer it anyway)")
    if math.isfinite(anchor_fall) and anchor_fall > FORGET_TOLERANCE:
        why = (f"the anchor set's Dice fell by {anchor_fall:.4f} (more than {FORGET_TOLERANCE}): "
               "it forgot what it knew")
        return force, (f"forced although {why}" if force
                       else f"{why}; kept the previous default (use --force to prefer it anyway)")
    return True, "validation Dice did not fall" + (" and the anchor held" if math.isfinite(anchor_fall) else "")


# -- the run --------------------------------------------------------------------------

def iter_finetune(data, model: str, checkpoint=None, epochs: int = 5, force: bool = False, lr: Optional[float] = None,
                  batch: Optional[int] = None, size: Optional[int] = None, val_fraction: float = 0.2, seed: int = 0,
                  time_budget_min: Optional[float] = None, backbone_weights=None, device: str = "auto",
                  num_threads: Optional[int] = None, should_stop: Optional[Callable[[], bool]] = None,
                  command: str = "", out_dir=None, anchor_limit: int = ANCHOR_LIMIT) -> Iterator:
    """Yields the trainer's events, then a final ``("result", dict)`` tuple. Raises
    UserError (before any training) when :func:`refusal` says no."""
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
    kinds = item_kinds(data)
    empty = _empty_stems(data, list(kinds))
    refused = refusal(kinds, empty, force)
    if refused:
        raise UserError(f"{data}: {refused}")
    val_stems = choose_validation(kinds, val_fraction, seed)
    problem = claim_problem(val_stems, kinds, empty)
    train_size = size or models.base_card(model).input_size
    anchor_set, anchor_source = anchor_pairs(peek_header(start), data, kinds, val_stems, anchor_limit)

    stamp = _stamp()
    run_dir = Path(out_dir) if out_dir else user_checkpoint_dir() / "runs" / f"{model}-finetune-{stamp}"
    config = TrainConfig(
        model=model, data=str(data), out=str(run_dir), epochs=epochs, batch=batch, size=size,
        lr=lr if lr is not None else get_preset(model).lr / 10, seed=seed, val_fraction=val_fraction,
        val_stems=val_stems, split_seed=seed, init_checkpoint=str(start), backbone_weights=backbone_weights,
        device=device, time_budget_min=time_budget_min, num_threads=num_threads, command=command or "finetune",
    )
    anchor = {"source": anchor_source, "n": len(anchor_set),
              "before": score_pairs(model, start, anchor_set, train_size, device, backbone_weights)}
    baseline: Dict = {}
    done = None
    for event in iter_train(config, should_stop):
        if event.kind == "baseline":
            baseline = dict(event.metrics)
        if event.kind == "done":
            done = event
        yield event
    best = run_dir / "best.pt"
    validation = {"n": len(val_stems), "corrected": sum(kinds[s] == "corrected" for s in val_stems),
                  "accepted": sum(kinds[s] == "accepted" for s in val_stems), "stems": val_stems}
    result = {"start_checkpoint": str(start), "checkpoint": "", "preferred": False, "claim": not problem,
              "before": {}, "after": {}, "measured": {"before": baseline, "after": {}},
              "validation": validation, "anchor": anchor, "run_dir": str(run_dir)}
    if not best.is_file():
        result["reason"] = "no checkpoint was written (stopped before the first validation)"
        yield "result", result
        return
    after = dict(peek_header(best).get("metrics", {}))
    anchor["after"] = score_pairs(model, best, anchor_set, train_size, device, backbone_weights)
    target = user_checkpoint_dir() / f"{model}-finetuned-{stamp}.pt"
    atomic_copy(best, target)  # a crash mid-copy must not leave a broken checkpoint behind
    result["measured"]["after"] = after
    if not problem:
        result.update(before=baseline, after=after)
    preferred, reason = decide(baseline, after, anchor, problem, force)
    result.update(checkpoint=str(target), stopped_early=bool(done and done.stopped_early), reason=reason)
    if preferred:
        set_preferred(model, target)
        result["preferred"] = True
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


def summary(result: Dict) -> str:
    """The result in words: the claim (or why there is none), the anchor, the decision."""
    validation = result.get("validation", {})
    on = (f"{validation.get('n', 0)} validation items ({validation.get('corrected', 0)} corrected, "
          f"{validation.get('accepted', 0)} accepted)")
    if result.get("claim"):
        lines = [f"validation Dice on {on}: before {_dice(result['before']):.4f} after {_dice(result['after']):.4f}"]
    else:
        lines = [f"no before/after claim on {on}"]
    anchor = result.get("anchor", {})
    if anchor.get("n"):
        lines.append(f"anchor ({anchor['source']}): Dice before {_dice(anchor.get('before', {})):.4f} "
                     f"after {_dice(anchor.get('after', {})):.4f}")
    else:
        lines.append(f"anchor: {anchor.get('source', 'none')}")
    lines.append(f"{result.get('reason', '')}")
    lines.append(f"checkpoint: {result.get('checkpoint') or '(none)'}; preferred: {result.get('preferred')}")
    return "\n".join(lines)


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
            anchor_limit=args.anchor_limit,
        ):
            if isinstance(item, tuple):
                result = item[1]
            else:
                if item.kind == "baseline":
                    print(item.message, file=sys.stderr)
                yield item

    print_events(events(), quiet=args.json)
    if not args.json:
        print(summary(result))
    print(json.dumps(result))
    return 0
