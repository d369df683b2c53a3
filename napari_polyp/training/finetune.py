"""Fine-tuning a checkpoint on a corrections dataset, honestly: the core of ``napari-polyp finetune``
and of the Fine-tune widget.

The rules (docs/training.md, "Fine-tuning honestly", with what they measured), each decided by
one function of :mod:`.finetune_rules` (named here too):

- :func:`refusal`: no run on fewer than :data:`MIN_ITEMS` accepted/corrected items, when
  every mask is empty, or when every item is an *accepted* prediction (the network would
  be scored against its own output; ``force`` trains anyway, with no before/after claim).
- the validation scheme (:func:`choose_scheme`): a small set (a hold-out split of fewer than
  :data:`HOLDOUT_MIN_ITEMS`) is **cross-validated** (:func:`choose_folds`: k folds of
  neighbouring items, so frames of one video do not score each other; every item is scored
  once by a network fine-tuned without it, and
  the start network on the same items is "before"); a large one keeps a hold-out split
  (:func:`choose_validation`). Both hold corrected items always and accepted ones only
  beside them. A folder without a manifest holds reference masks, which count as corrected.
- :func:`claim_problem`: fewer than :data:`MIN_VAL_ITEMS` scored items, or only empty
  masks among them, and the before/after figures are not claimed: the result says so, its
  ``before``/``after`` are empty (the figures are kept under ``measured``) and the
  checkpoint never becomes the default unless forced.
- the anchor set (:func:`anchor_pairs`): the start checkpoint's own validation split when its
  data folder exists, else accepted items outside validation; scored before and after so
  forgetting shows, and a fall of more than :data:`FORGET_TOLERANCE` keeps the old default.

The recipe (:class:`Recipe`, :func:`fit`): AdamW at :data:`RECIPE`'s learning rate for a fixed
number of optimiser *steps* (a tiny set has few steps per epoch), the "generalise"
augmentation, BatchNorm layers in eval mode (their statistics frozen: a few images of one
centre per batch would overwrite them) and a share of each batch replayed from the start
checkpoint's own training images (against forgetting), or, where those are not on the machine,
each step pulling the weights back towards the start (:data:`NO_REPLAY_PULL`, L2-SP).
``recipe="preset"`` is the old one
(the network's training preset at a tenth of its learning rate), kept for comparison.

The checkpoint written is trained on every item (cross-validation) or on the training split
(hold-out), for the same steps as the folds; it goes into the user checkpoint folder and
becomes the preferred checkpoint of its network only when the claim stands, validation Dice
did not fall and the anchor did not fall (or with ``force``). The Fine-tune widget calls
:func:`finetune` / :func:`iter_finetune`.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import math
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from ..jobs import Finished
from .batchnorm import freeze_batchnorm
from .finetune_rules import (  # noqa: F401 -- the rules, named here too (the API before the split)
    ANCHOR_LIMIT, FOLDS, FORGET_TOLERANCE, HOLDOUT_MIN_ITEMS, LOOK_SIZE, MIN_ITEMS, MIN_VAL_ITEMS, REPLAY_POOL,
    SCENE_JUMP, SCHEMES, anchor_pairs, choose_folds, choose_scheme, choose_validation, claim_problem, decide,
    item_kinds, item_looks, natural_key, refusal, replay_pairs, scene_runs, _dice, _empty_stems, _origin,
)
from .intervals import Interval, paired_interval

# with no replay images on this machine (a user's: the shipped headers name the training session's
# folder), each step pulls the weights this share back to the start instead (Recipe.pull;
# docs/training.md, "Without replay": the fine-tune otherwise forgets, and at times collapses)
NO_REPLAY_PULL = 0.04


@dataclass(frozen=True)
class Recipe:
    """How a fine-tune trains (docs/training.md, "Fine-tuning honestly": what each part measured)."""
    optimizer: str = "adamw"
    lr: float = 1e-4  # peak; linear warm-up, then cosine to 0
    weight_decay: float = 1e-4
    steps: int = 150  # optimiser steps of one fine-tune (each fold and the final run); 60 gained half as much
    warmup: int = 5
    batch: int = 4
    augment: str = "generalise"
    freeze_bn: bool = True  # BatchNorm layers in eval mode: running statistics kept, not re-estimated
    replay: float = 0.25  # share of each batch drawn from the start checkpoint's training images
    blend: float = 1.0  # < 1: the weights kept are start + blend × (tuned − start) (WiSE-FT)
    # > 0: each step at the peak learning rate moves the weights this share of the way back to the
    # start, less as the rate anneals (L2-SP, decoupled); a share, so a changed lr keeps its meaning
    pull: float = 0.0
    train: str = "all"  # "head": everything but the pretrained encoder (parameters named backbone.*)
    name: str = "adapt"


RECIPE = Recipe()
RECIPES = ("adapt", "preset")


def legacy_recipe(model: str) -> Recipe:
    """What ``finetune`` did before: the network's training preset at a tenth of its learning
    rate (EA-DK: SGD at 4e-5), its augmentation and batch, BatchNorm training, no replay."""
    from .presets import get_preset

    preset = get_preset(model)
    return Recipe(optimizer=preset.optimizer, lr=preset.lr / 10, weight_decay=preset.weight_decay,
                  batch=preset.batch, augment=preset.augment, freeze_bn=False, replay=0.0, warmup=0, name="preset")


def recipe_for(model: str, recipe="adapt", **overrides) -> Recipe:
    """The named recipe (or a :class:`Recipe`) for ``model`` with ``overrides`` (None values ignored)."""
    if isinstance(recipe, Recipe):
        base = recipe
    elif recipe not in RECIPES:
        from napari_polyp.errors import UserError

        raise UserError(f"unknown fine-tune recipe {recipe!r}; choose one of {', '.join(RECIPES)}")
    else:
        base = RECIPE if recipe == "adapt" else legacy_recipe(model)
    overrides = {k: v for k, v in overrides.items() if v is not None}
    return dataclasses.replace(base, **overrides) if overrides else base


def _stamp() -> str:
    # Microseconds and the process id: two fine-tunes started in the same second
    # (two viewers, or a GUI and a CLI) must not share a run folder or a file name.
    return f"{_dt.datetime.now().strftime('%Y%m%d-%H%M%S-%f')}-{os.getpid()}"


# -- the recipe -----------------------------------------------------------------------

def replay_count(batch: int, replay: float, pool: int) -> int:
    """Replayed images per batch: round(batch × share), at least 1 when the share is > 0, and
    at least one place left for the new items; 0 without a pool."""
    if pool <= 0 or replay <= 0 or batch < 2:
        return 0
    return min(batch - 1, max(1, round(batch * replay)))


def batch_plan(n_items: int, n_pool: int, batch: int, replay: float, steps: int,
               seed: int) -> List[Tuple[List[int], List[int]]]:
    """Per step: (indices of new items, indices of replayed images). New items are drawn in
    seeded shuffled passes (every item once per pass), replayed ones likewise from the pool."""
    rng = random.Random(seed)
    n_replay = replay_count(batch, replay, n_pool)
    n_new = min(batch - n_replay, n_items)

    def cycle(n):
        while True:
            order = list(range(n))
            rng.shuffle(order)
            yield from order

    new, old = cycle(n_items), cycle(n_pool) if n_replay else None
    return [([next(new) for _ in range(n_new)], [next(old) for _ in range(n_replay)] if old else [])
            for _ in range(steps)]


def steps_for_epochs(epochs: int, n_items: int, recipe: Recipe, n_pool: int) -> int:
    """Optimiser steps of ``epochs`` passes over ``n_items`` new items."""
    per_batch = min(recipe.batch - replay_count(recipe.batch, recipe.replay, n_pool), n_items)
    return max(1, math.ceil(epochs * n_items / max(per_batch, 1)))


def lr_at_step(recipe: Recipe, step: int, steps: int) -> float:
    """Linear warm-up over ``recipe.warmup`` steps (at most a quarter of the run), then a cosine to 0."""
    warmup = min(recipe.warmup, steps // 4)
    if step < warmup:
        return recipe.lr * (step + 1) / (warmup + 1)
    progress = (step - warmup) / max(steps - warmup, 1)
    return recipe.lr * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def subset(arrays, indices: Sequence[int]):
    """A PairArrays holding ``indices`` of ``arrays`` (no files read again)."""
    from .data import PairArrays

    out = PairArrays.__new__(PairArrays)
    out.pairs, out.size = [arrays.pairs[i] for i in indices], arrays.size
    out.images, out.masks = arrays.images[list(indices)], arrays.masks[list(indices)]
    return out


def load_model(model_name: str, checkpoint, device="cpu", backbone_weights=None):
    import models
    from napari_polyp.inference import resolve_device

    model = models.create_model(model_name, checkpoint=str(checkpoint), backbone_weights=backbone_weights)
    return model.to(resolve_device(device) if isinstance(device, str) else device)


def iter_fit(model, model_name: str, arrays, recipe: Recipe, steps: int, *, replay=None, seed: int = 0,
             should_stop: Optional[Callable[[], bool]] = None, budget_s: Optional[float] = None):
    """Fine-tune ``model`` in place on ``arrays`` (PairArrays at the training size) by the recipe,
    with ``replay`` (PairArrays) mixed into each batch. Yields (step, planned steps, loss, lr) after
    each step and returns {"steps" done, "planned", "stopped", "seconds", "frozen_bn",
    "replay_per_batch"}. ``budget_s``: after three steps the run is shortened to fit (never
    lengthened). The model is left in eval mode."""
    import torch

    from .augment import Augmenter
    from .losses import LOSSES, deep_supervision
    from .presets import Preset, get_preset, make_optimizer
    from .trainer import Batches, norm_card, seed_everything

    device = next(model.parameters()).device
    seed_everything(seed)
    preset = get_preset(model_name)
    loss_fn = LOSSES[preset.loss]
    card = norm_card(model_name, arrays.size)
    augmenter = Augmenter(recipe.augment, arrays.size)
    new_batches = Batches(arrays, card, augmenter, seed, device)
    pool = len(replay) if replay is not None else 0
    old_batches = Batches(replay, card, augmenter, seed + 7919, device) if pool else None
    plan = batch_plan(len(arrays), pool, recipe.batch, recipe.replay, steps, seed)
    trainable = {name: p.requires_grad for name, p in model.named_parameters()}
    if recipe.train == "head":
        for name, p in model.named_parameters():
            if name.startswith("backbone."):
                p.requires_grad_(False)
    elif recipe.train != "all":
        raise ValueError(f"unknown recipe.train {recipe.train!r} (all | head)")
    optimizer = make_optimizer(Preset(optimizer=recipe.optimizer, lr=recipe.lr, weight_decay=recipe.weight_decay),
                               model.parameters())
    start_state = {k: v.detach().clone() for k, v in model.state_dict().items()} if recipe.blend < 1.0 else {}
    start_params = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad} \
        if recipe.pull > 0 else {}
    model.train()
    frozen = freeze_batchnorm(model) if recipe.freeze_bn else 0
    started, done, stopped, planned = time.monotonic(), 0, False, steps
    while done < planned:
        if should_stop is not None and should_stop():
            stopped = True
            break
        new, old = plan[done]
        x, y, _ = new_batches.train_batch(new, done)
        if old:
            xo, yo, _ = old_batches.train_batch(old, done)
            x, y = torch.cat([x, xo]), torch.cat([y, yo])
        lr = lr_at_step(recipe, done, planned)
        for group in optimizer.param_groups:
            group["lr"] = lr
        out = model(x)
        loss = deep_supervision(out, y, loss_fn) if preset.deep_supervision else loss_fn(out["logits"], y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        pull_towards(model, start_params, recipe.pull * lr / recipe.lr if recipe.lr > 0 else 0.0)
        done += 1
        if budget_s is not None and done == 3:
            per_step = (time.monotonic() - started) / done
            planned = max(done, min(planned, int(budget_s / per_step)))
        yield done, planned, float(loss.detach()), lr
    blend_weights(model, start_state, recipe.blend)
    for name, p in model.named_parameters():
        p.requires_grad_(trainable[name])
    model.eval()
    return {"steps": done, "planned": planned, "stopped": stopped, "seconds": round(time.monotonic() - started, 1),
            "frozen_bn": frozen, "replay_per_batch": len(plan[0][1]) if plan else 0}


def fit(model, model_name: str, arrays, recipe: Recipe, steps: int, *, on_step: Optional[Callable] = None,
        **kwargs) -> Dict:
    """:func:`iter_fit` to the end; ``on_step(step, planned, loss, lr)`` after each step."""
    run = iter_fit(model, model_name, arrays, recipe, steps, **kwargs)
    while True:
        try:
            step = next(run)
        except StopIteration as end:
            return end.value
        if on_step is not None:
            on_step(*step)


def pull_towards(model, start_params: Dict, share: float) -> None:
    """Move each parameter ``share`` of the way back to its start value, in place: L2-SP (Li et
    al., 2018, a penalty on the distance to the pretrained weights rather than to zero) in
    AdamW's decoupled form, so the pull does not pass through Adam's per-weight scaling."""
    import torch

    if not start_params or share <= 0:
        return
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name in start_params:
                param.lerp_(start_params[name], min(share, 1.0))


def blend_weights(model, start_state: Dict, blend: float) -> None:
    """Weights start + blend × (now − start), in place (floating point tensors only; WiSE-FT,
    Wortsman et al. 2022): between the start network and the fine-tuned one."""
    import torch

    if blend >= 1.0:
        return
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name in start_state and tensor.is_floating_point():
                start = start_state[name].to(tensor.device)
                tensor.copy_(start + blend * (tensor - start))


def item_scores(model, model_name: str, arrays, batch: int = 8) -> List[Dict[str, float]]:
    """Per-image metrics (training.metrics) of ``model`` on ``arrays``, in eval mode, at their size:
    the measure the trainer validates with."""
    import torch

    from napari_polyp.inference import preprocess

    from .metrics import per_image_scores
    from .trainer import norm_card

    if not len(arrays):
        return []
    device = next(model.parameters()).device
    card = norm_card(model_name, arrays.size)
    was_training = model.training
    model.eval()
    rows: List[Dict[str, float]] = []
    with torch.no_grad():
        for start in range(0, len(arrays), batch):
            x = preprocess(arrays.images[start:start + batch], card).to(device)
            y = torch.from_numpy(arrays.masks[start:start + batch][:, None].astype("float32"))
            probs = torch.sigmoid(model(x)["logits"].float()).cpu()
            scores = per_image_scores(probs, y)
            rows.extend({k: float(v[i]) for k, v in scores.items()} for i in range(len(y)))
    model.train(was_training)
    return rows


def mean_scores(rows: Sequence[Dict[str, float]]) -> Dict:
    """{"n", "dice", "iou", "precision", "recall"}: means over images (as ``validate``)."""
    from .metrics import MeanScores

    if not rows:
        return {}
    scores = MeanScores()
    scores.extend(rows)
    return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in scores.result().items()}


def score_pairs(model_name: str, checkpoint, pairs, size: int, device: str = "auto",
                backbone_weights=None) -> Dict:
    """Validation metrics of a checkpoint on ``pairs`` at the training size: the very
    measure the trainer validates with (``trainer.validate``)."""
    from . import data as data_mod

    if not pairs:
        return {}
    model = load_model(model_name, checkpoint, device, backbone_weights)
    return mean_scores(item_scores(model, model_name, data_mod.PairArrays(pairs, size)))


# -- the run --------------------------------------------------------------------------

@dataclass
class _Plan:
    """What a fine-tune will do, decided before any image is loaded (:func:`_plan`)."""

    data: str  # the corrections folder
    model: str
    start: Path
    header: Dict
    recipe: Recipe
    kinds: Dict[str, str]
    empty: List[str]
    scheme: str
    holdout: List[str]  # the hold-out split (cross-validation: none; its folds are cut once loaded)
    size: int
    anchor_set: list
    anchor_source: str
    pool_pairs: list
    replay_source: str
    device: str


@dataclass
class _Loaded:
    """The items and replay images in memory, and what is trained and scored (:func:`_load`)."""

    arrays: object  # data.PairArrays
    pool: object  # data.PairArrays of the replay images, or None
    index: Dict[str, int]
    fold_stems: List[List[str]]
    val_stems: List[str]  # the items scored: the hold-out split, or every fold's items
    final_items: List[int]
    problem: str  # why no before/after is claimed ("" when one is)


def iter_finetune(data, model: str, checkpoint=None, epochs: Optional[int] = None, force: bool = False,
                  lr: Optional[float] = None, batch: Optional[int] = None, size: Optional[int] = None,
                  val_fraction: float = 0.2, seed: int = 0, time_budget_min: Optional[float] = None,
                  backbone_weights=None, device: str = "auto", num_threads: Optional[int] = None,
                  should_stop: Optional[Callable[[], bool]] = None, command: str = "", out_dir=None,
                  anchor_limit: int = ANCHOR_LIMIT, *, recipe="adapt", steps: Optional[int] = None,
                  optimizer: Optional[str] = None, augment: Optional[str] = None, replay: Optional[float] = None,
                  start_data=None, freeze_bn: Optional[bool] = None, validation: str = "auto",
                  folds: int = FOLDS) -> Iterator:
    """Yields TrainEvents ("start", "baseline", "step", "epoch" after each fold, "done"), then
    ``jobs.Finished(result dict)``, as every job of the app does (:mod:`napari_polyp.jobs`).
    Raises UserError (before any training) when :func:`refusal`
    says no. An event's ``epoch`` is the fine-tune in progress (0: the final run, 1..k: the
    folds), ``total_epochs`` their number and ``steps_per_epoch`` the steps of each, so
    ``step / steps_per_epoch / total_epochs`` is the share done.

    The steps: :func:`_plan` (the rules), :func:`_load`, the start network scored
    (:func:`_score_start`), the final run, the folds (:func:`_cross_validate`), the result
    written (:func:`_write_result`)."""
    import torch

    from .trainer import TrainEvent

    started = time.monotonic()

    def event(kind, **kw):
        return TrainEvent(kind, elapsed_s=time.monotonic() - started, **kw)

    plan = _plan(data, model, checkpoint, force, val_fraction, seed, validation, size, anchor_limit, start_data,
                 device, recipe=recipe, lr=lr, batch=batch, optimizer=optimizer, augment=augment, replay=replay,
                 freeze_bn=freeze_bn)
    if num_threads:
        torch.set_num_threads(num_threads)
    yield event("start", message=f"loading {len(plan.kinds)} items and {len(plan.pool_pairs)} replay images "
                                 f"at {plan.size}px")
    loaded = _load(plan, folds)
    n_steps = steps or (steps_for_epochs(epochs, len(loaded.final_items), plan.recipe, len(plan.pool_pairs))
                        if epochs else plan.recipe.steps)
    runs = 1 + len(loaded.fold_stems)
    budget_s = time_budget_min * 60 if time_budget_min else None
    before_rows, baseline, anchor = _score_start(plan, loaded, backbone_weights)
    if baseline:
        what = (f"{len(loaded.val_stems)} items, out-of-fold" if plan.scheme == "cv"
                else f"{len(loaded.val_stems)} hold-out items")
        yield event("baseline", metrics=baseline,
                    message=f"start checkpoint: validation dice {baseline.get('dice', float('nan')):.4f} ({what})")

    fitter = _Fitter(plan, loaded, event, runs, should_stop, backbone_weights)
    # the final run: every item (cv) or the training split (hold-out)
    yield event("start", message=f"fine-tuning on {len(loaded.final_items)} items: {n_steps} steps"
                + (f", then {len(loaded.fold_stems)} cross-validation folds" if loaded.fold_stems else ""))
    share = None if budget_s is None else max(budget_s - (time.monotonic() - started), 1.0) / runs
    final_model, final_facts = yield from fitter.run(loaded.final_items, 0, seed, n_steps, share)
    n_steps = final_facts["planned"]  # a time budget may have shortened it: the folds train as long
    if not final_facts["steps"]:  # cancelled before the first step: nothing to keep
        yield event("done", step=0, total_epochs=runs, stopped_early=True)
        yield Finished(_nothing_kept(plan, baseline, anchor))
        return

    # hold-out: the final network on its split; cv: each item scored by a fine-tune that never saw it
    after_rows: Dict[str, Dict[str, float]] = {}
    stopped = final_facts["stopped"]
    if plan.scheme == "holdout" and not stopped:
        scored = subset(loaded.arrays, [loaded.index[s] for s in loaded.val_stems])
        after_rows.update(zip(loaded.val_stems, item_scores(final_model, model, scored)))
    fold_reports, stopped = yield from _cross_validate(
        fitter, before_rows, after_rows, n_steps, seed, stopped,
        lambda: budget_s is not None and time.monotonic() - started > budget_s)
    result = _write_result(plan, loaded, final_model, final_facts, before_rows, after_rows, fold_reports, anchor,
                           stopped, force, command, out_dir, seed, n_steps, time.monotonic() - started)
    yield event("done", step=fitter.done_steps, steps_per_epoch=n_steps, total_epochs=runs,
                metrics=result["measured"]["after"], best_dice=_dice(result["measured"]["after"]),
                checkpoint=result["checkpoint"], stopped_early=stopped)
    yield Finished(result)


def _plan(data, model: str, checkpoint, force: bool, val_fraction: float, seed: int, validation: str,
          size: Optional[int], anchor_limit: int, start_data, device: str, **recipe_options) -> _Plan:
    """The rules, before any image is loaded: the start checkpoint, the recipe, a refusal
    (UserError), the validation scheme and split, the anchor set and the replay images."""
    import models
    from models.checkpoint import default_checkpoint, peek_header
    from napari_polyp.errors import UserError
    from napari_polyp.inference import resolve_device

    from .augment import check_preset

    start = Path(checkpoint) if checkpoint else default_checkpoint(model)
    if start is None:
        raise UserError(f"{model} has no checkpoint to start from; pass --checkpoint")
    models.get_entry(model)  # unknown names fail early
    options = dict(recipe_options)
    chosen = recipe_for(model, options.pop("recipe"), **options)
    check_preset(chosen.augment)
    kinds = item_kinds(data)
    empty = _empty_stems(data, list(kinds))
    refused = refusal(kinds, empty, force)
    if refused:
        raise UserError(f"{data}: {refused}")
    scheme = choose_scheme(kinds, val_fraction, validation)
    holdout = choose_validation(kinds, val_fraction, seed) if scheme == "holdout" else []  # cv: folds once loaded
    header = peek_header(start)
    anchor_set, anchor_source = anchor_pairs(header, data, kinds, holdout, anchor_limit, start_data,
                                             cross_validated=scheme == "cv")
    pool_pairs, replay_source = replay_pairs(header, REPLAY_POOL if chosen.replay > 0 else 0, seed, start_data)
    if chosen.replay > 0 and not pool_pairs and chosen.pull == 0:
        chosen = dataclasses.replace(chosen, pull=NO_REPLAY_PULL)
        replay_source += f"; the weights are pulled back towards the start instead (pull {NO_REPLAY_PULL:g})"
    return _Plan(str(data), model, start, header, chosen, kinds, empty, scheme, holdout,
                 size or models.base_card(model).input_size, anchor_set, anchor_source, pool_pairs, replay_source,
                 resolve_device(device))


def _load(plan: _Plan, folds: int) -> _Loaded:
    """The items and replay images in memory; for cross-validation, the folds (whole scenes,
    told apart by the loaded images), whose items are then the ones scored."""
    from . import data as data_mod

    arrays = data_mod.PairArrays(data_mod.select(data_mod.find_pairs(plan.data), sorted(plan.kinds)), plan.size)
    fold_stems: List[List[str]] = []
    if plan.scheme == "cv":
        corrected = [i for i, s in enumerate(arrays.stems) if plan.kinds[s] == "corrected"]
        fold_stems = choose_folds(plan.kinds, folds, item_looks([arrays.stems[i] for i in corrected],
                                                                arrays.images[corrected]))
    val_stems = sorted(s for fold in fold_stems for s in fold) if plan.scheme == "cv" else list(plan.holdout)
    problem = claim_problem(val_stems, plan.kinds, plan.empty)
    if plan.scheme == "cv" and len(fold_stems) < 2 and not problem:
        problem = "fewer than 2 cross-validation folds"
    holdout = set(plan.holdout)
    return _Loaded(arrays, data_mod.PairArrays(plan.pool_pairs, plan.size) if plan.pool_pairs else None,
                   {stem: i for i, stem in enumerate(arrays.stems)}, fold_stems, val_stems,
                   [i for i, s in enumerate(arrays.stems) if s not in holdout], problem)


def _score_start(plan: _Plan, loaded: _Loaded, backbone_weights) -> Tuple[Dict, Dict, Dict]:
    """(the start network's scores per validation item, their mean, the anchor set's record
    with its "before"): "before" is the start network on every item that will be scored."""
    from . import data as data_mod

    start_model = load_model(plan.model, plan.start, plan.device, backbone_weights)
    scored = subset(loaded.arrays, [loaded.index[s] for s in loaded.val_stems])
    before_rows = dict(zip(loaded.val_stems, item_scores(start_model, plan.model, scored)))
    anchor = {"source": plan.anchor_source, "n": len(plan.anchor_set), "before": {}, "arrays": None}
    if plan.anchor_set:
        anchor["arrays"] = data_mod.PairArrays(plan.anchor_set, plan.size)
        anchor["before"] = mean_scores(item_scores(start_model, plan.model, anchor["arrays"]))
    return before_rows, mean_scores(list(before_rows.values())), anchor


class _Fitter:
    """Fine-tunes from the start weights on some of the items, yielding step events; counts the
    steps of every run (``done_steps``)."""

    def __init__(self, plan: _Plan, loaded: _Loaded, event: Callable, runs: int, should_stop, backbone_weights):
        self.plan, self.loaded, self.event, self.runs = plan, loaded, event, runs
        self.should_stop, self.backbone_weights = should_stop, backbone_weights
        self.done_steps = 0

    def run(self, items: Sequence[int], run: int, seed: int, length: int, budget=None):
        """Yields step events; returns (the fine-tuned model, ``iter_fit``'s facts)."""
        plan = self.plan
        tuned = load_model(plan.model, plan.start, plan.device, self.backbone_weights)
        steps_of = iter_fit(tuned, plan.model, subset(self.loaded.arrays, items), plan.recipe, length,
                            replay=self.loaded.pool, seed=seed, should_stop=self.should_stop, budget_s=budget)
        while True:
            try:
                step, planned, loss, lr_now = next(steps_of)
            except StopIteration as end:
                self.done_steps += end.value["steps"]
                return tuned, end.value
            yield self.event("step", epoch=run, step=self.done_steps + step, steps_per_epoch=planned,
                             total_epochs=self.runs, loss=loss, lr=lr_now)


def _cross_validate(fitter: _Fitter, before_rows: Dict, after_rows: Dict, n_steps: int, seed: int, stopped: bool,
                    out_of_time: Callable[[], bool]):
    """Each fold fine-tuned without its items and scored on them (into ``after_rows``), yielding
    step and "epoch" events; returns (the fold reports, whether it stopped early)."""
    plan, loaded = fitter.plan, fitter.loaded
    reports = []
    for f, fold in enumerate(loaded.fold_stems):
        if stopped or out_of_time():
            return reports, True
        held = set(fold)
        yield fitter.event("start", message=f"fold {f + 1}/{len(loaded.fold_stems)}: fine-tuning without its "
                                            f"{len(fold)} items")
        fold_model, facts = yield from fitter.run([i for i, s in enumerate(loaded.arrays.stems) if s not in held],
                                                  f + 1, seed + 1 + f, n_steps)
        if facts["stopped"]:
            return reports, True
        rows = item_scores(fold_model, plan.model, subset(loaded.arrays, [loaded.index[s] for s in fold]))
        del fold_model
        after_rows.update(zip(fold, rows))
        reports.append({"stems": fold, "before": mean_scores([before_rows[s] for s in fold]),
                        "after": mean_scores(rows)})
        so_far = mean_scores(list(after_rows.values()))
        yield fitter.event("epoch", epoch=f + 1, step=fitter.done_steps, steps_per_epoch=n_steps,
                           total_epochs=fitter.runs, metrics=so_far, best_dice=_dice(so_far),
                           message=f"fold {f + 1}: Dice {_dice(reports[-1]['before']):.4f} -> "
                                   f"{_dice(reports[-1]['after']):.4f} on its {len(fold)} items")
    return reports, stopped


def _nothing_kept(plan: _Plan, baseline: Dict, anchor: Dict) -> Dict:
    """The result of a run cancelled before its first step."""
    return {"start_checkpoint": str(plan.start), "checkpoint": "", "preferred": False, "claim": False,
            "before": {}, "after": {}, "measured": {"before": baseline, "after": {}},
            "validation": {"scheme": plan.scheme, "n": 0, "corrected": 0, "accepted": 0, "stems": []},
            "anchor": _anchor_record(anchor), "run_dir": "", "model": plan.model,
            "recipe": dataclasses.asdict(plan.recipe), "stopped_early": True,
            "reason": "no checkpoint was written (stopped before the first step)"}


def _gain(before_rows: Dict, after_rows: Dict, stems: Sequence[str]) -> Dict:
    """The mean Dice gain over the scored items and its paired bootstrap interval ({} under two items)."""
    if len(stems) < 2:
        return {}
    return paired_interval([before_rows[s]["dice"] for s in stems], [after_rows[s]["dice"] for s in stems]).as_dict()


def _anchor_record(anchor: Dict) -> Dict:
    return {k: v for k, v in anchor.items() if k != "arrays"}


def _write_result(plan: _Plan, loaded: _Loaded, final_model, final_facts: Dict, before_rows: Dict,
                  after_rows: Dict, fold_reports: list, anchor: Dict, stopped: bool, force: bool, command: str,
                  out_dir, seed: int, n_steps: int, wall_s: float) -> Dict:
    """The checkpoint written (its run folder, then the user checkpoint folder), the claim on
    what was scored (every item, or, cancelled or out of time, the items of the folds that
    finished: an honest estimate on those alone), the decision; returns the result dict."""
    from models.checkpoint import save_checkpoint, set_preferred, user_checkpoint_dir

    from ..io.atomic import atomic_copy
    from .trainer import _plain, extra_header

    model, kinds = plan.model, plan.kinds
    scored_stems = sorted(after_rows)
    problem = loaded.problem
    if stopped and not scored_stems:
        problem = problem or "stopped before any validation item was scored"
    elif stopped:
        problem = problem or claim_problem(scored_stems, kinds, plan.empty)
    before = mean_scores([before_rows[s] for s in scored_stems])
    after = mean_scores([after_rows[s] for s in scored_stems])
    per_item = [{"stem": s, "kind": kinds[s], "before": round(before_rows[s]["dice"], 4),
                 "after": round(after_rows[s]["dice"], 4)} for s in scored_stems]

    stamp = _stamp()
    run_dir = Path(out_dir) if out_dir else user_checkpoint_dir() / "runs" / f"{model}-finetune-{stamp}"
    run_dir.mkdir(parents=True, exist_ok=True)
    target_path = user_checkpoint_dir() / f"{model}-finetuned-{stamp}.pt"
    start_data, start_val = _origin(plan.header)
    training = _plain({
        "data": str(Path(plan.data).resolve()), "init_checkpoint": str(plan.start), "command": command or "finetune",
        "recipe": dataclasses.asdict(plan.recipe), "steps": final_facts["steps"], "planned_steps": n_steps,
        "size": plan.size, "seed": seed, "train_count": len(loaded.final_items), "validation": plan.scheme,
        "val_stems": sorted(plan.holdout), "val_stems_count": len(plan.holdout),
        "folds": len(loaded.fold_stems), "replay": plan.replay_source, "frozen_bn": final_facts["frozen_bn"],
        "wall_time_s": round(wall_s, 1), "baseline_metrics": before,
        "origin": {"data": start_data, "val_stems": start_val},
    })
    variant = getattr(final_model, "variant", None) or plan.header.get("variant") or {}
    save_checkpoint(final_model, run_dir / "final.pt", architecture=plan.header.get("architecture", model),
                    variant=dict(variant), training=training,
                    metrics={**after, "split": f"{plan.scheme} ({len(scored_stems)} items)"} if after else {},
                    extra=extra_header(final_model))
    anchor_arrays, anchor = anchor["arrays"], _anchor_record(anchor)
    anchor["after"] = {} if anchor_arrays is None else mean_scores(item_scores(final_model, model, anchor_arrays))
    atomic_copy(run_dir / "final.pt", target_path)  # a crash mid-copy must not leave a broken checkpoint behind
    validation_info = {"scheme": plan.scheme, "n": len(scored_stems),
                       "corrected": sum(kinds[s] == "corrected" for s in scored_stems),
                       "accepted": sum(kinds[s] == "accepted" for s in scored_stems), "stems": scored_stems,
                       "folds": len(loaded.fold_stems), "folds_done": len(fold_reports), "fold_reports": fold_reports,
                       "items": per_item,
                       "improved": sum(r["after"] > r["before"] for r in per_item),
                       "worse": sum(r["after"] < r["before"] for r in per_item),
                       "gain": _gain(before_rows, after_rows, scored_stems)}
    result = {"start_checkpoint": str(plan.start), "checkpoint": str(target_path), "preferred": False,
              "claim": not problem, "before": {}, "after": {}, "measured": {"before": before, "after": after},
              "validation": validation_info, "anchor": anchor, "run_dir": str(run_dir), "model": model,
              "recipe": dataclasses.asdict(plan.recipe), "steps": final_facts["steps"],
              "replay": plan.replay_source, "stopped_early": stopped, "wall_s": round(wall_s, 1)}
    if not problem:
        result.update(before=before, after=after)
    gain = Interval.from_dict(validation_info["gain"]) if validation_info["gain"] else None
    preferred, reason = decide(before, after, anchor, problem, force, gain=gain)
    result["reason"] = reason
    if preferred:
        set_preferred(model, target_path)
        result["preferred"] = True
    (run_dir / "result.json").write_text(json.dumps(_plain(result), indent=1))
    return result


def finetune(*args, on_event: Optional[Callable] = None, **kwargs) -> Dict:
    """Run :func:`iter_finetune` to the end; returns its result dict."""
    result: Dict = {}
    for item in iter_finetune(*args, **kwargs):
        if isinstance(item, Finished):
            result = item.value
        elif on_event is not None:
            on_event(item)
    return result


def describe_gain(gain: Dict) -> str:
    """A claim's gain in words: the mean Dice change, its interval, and whether the interval holds 0."""
    interval = Interval.from_dict(gain)
    verdict = ("better beyond the spread between items" if interval.low > 0 else
               "worse beyond the spread between items" if interval.high < 0 else
               "within the spread between items: not shown to help")
    return f"gain {interval.format(signed=True)} ({interval.level:.0%} interval, the items resampled: {verdict})"


def summary(result: Dict) -> str:
    """The result in words: the claim (or why there is none), the anchor, the decision."""
    validation = result.get("validation", {})
    how = ("out-of-fold, " + f"{validation.get('folds_done', 0)}/{validation.get('folds', 0)} folds; "
           if validation.get("scheme") == "cv" else "hold-out, ")
    on = (f"{validation.get('n', 0)} validation items ({how}{validation.get('corrected', 0)} corrected, "
          f"{validation.get('accepted', 0)} accepted)")
    if result.get("claim"):
        lines = [f"validation Dice on {on}: before {_dice(result['before']):.4f} after {_dice(result['after']):.4f}"
                 f" ({validation.get('improved', 0)} items better, {validation.get('worse', 0)} worse)"]
        if validation.get("gain"):
            lines.append(describe_gain(validation["gain"]))
    else:
        lines = [f"no before/after claim on {on}"]
    anchor = result.get("anchor", {})
    if anchor.get("n"):
        lines.append(f"anchor ({anchor['source']}): Dice before {_dice(anchor.get('before', {})):.4f} "
                     f"after {_dice(anchor.get('after', {})):.4f}")
    else:
        lines.append(f"anchor: {anchor.get('source', 'none')}")
    if result.get("replay"):
        lines.append(f"replay: {result['replay']}")
    lines.append(f"{result.get('reason', '')}")
    lines.append(f"checkpoint: {result.get('checkpoint') or '(none)'}; preferred: {result.get('preferred')}")
    return "\n".join(lines)
