"""The headless training loop shared by ``napari-polyp train``, ``finetune``, the
Fine-tune widget and the tests.

    from napari_polyp.training import TrainConfig, iter_train, train
    for event in iter_train(TrainConfig(model="microaunet", data="DIR", out="runs/x")):
        ...  # event.kind in {"start", "step", "epoch", "done"}
    result = train(config, on_event=print, should_stop=lambda: cancelled)

Files written into ``out`` (by rank 0 only under torchrun):
- ``last.pt`` / ``best.pt``: project checkpoints (``models.checkpoint``), header with
  training facts (data, epochs, wall time, command, split seed, validation stems) and
  validation metrics; ``best.pt`` is the epoch with the highest validation Dice.
- ``last.state.pt``: what resuming needs besides the weights (optimizer, step counters,
  torch RNG, history); plain values and tensors only, read with ``weights_only=True``.
- ``split.json``: the validation stems (also in the checkpoint header).

Repeatability: the seed fixes the weights' initialisation, the epoch order
(``DistributedSampler(seed=...)``) and every sample's augmentation (seeded per
run/epoch/index), so a resumed run continues exactly where it stopped, mid-epoch included.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional

import numpy as np
import torch
import torch.nn as nn

import models
from models.checkpoint import CheckpointError, load_into, read_checkpoint, save_checkpoint
from napari_polyp.errors import UserError
from napari_polyp.inference import preprocess, resolve_device

from . import data as data_mod
from .augment import Augmenter
from .feature_cache import VIEWS, FeatureCache, apply_view
from .losses import LOSSES, bce_dice, deep_supervision
from .metrics import MeanScores
from .presets import get_preset, lr_at, make_optimizer

STATE_FILE = "last.state.pt"


@dataclass
class TrainConfig:
    model: str
    data: str
    out: str
    epochs: Optional[int] = None  # None: the preset's (or, with a time budget, what fits)
    batch: Optional[int] = None
    size: Optional[int] = None  # default: the card's input size
    lr: Optional[float] = None
    seed: int = 0
    val_fraction: float = 0.1
    split_seed: int = 0
    resume: bool = False
    init_checkpoint: Optional[str] = None  # start weights (fine-tuning)
    variant: Dict = field(default_factory=dict)
    backbone_weights: Optional[str] = None
    pretrained_backbone: bool = False
    teacher: Optional[str] = None  # MicroAUNet distillation teacher checkpoint
    teacher_maps: Optional[str] = None  # checkpoint of any network: distil from its precomputed maps
    teacher_kind: Optional[str] = None  # train a MicroAUNet teacher of this kind instead
    device: str = "auto"
    amp: bool = True  # on CUDA only
    time_budget_min: Optional[float] = None
    max_steps: Optional[int] = None  # stop after this many optimiser steps (tests, smoke runs)
    augment: Optional[str] = None  # preset name override
    schedule: Optional[str] = None  # learning-rate schedule override (presets.lr_at)
    cache_features: bool = True  # frozen-backbone networks: encode each image once
    views: tuple = ("identity", "hflip")  # cached views (feature_cache.VIEWS) of each training image
    feature_cache: Optional[str] = None  # folder of the frozen-feature cache (default: out)
    cache_only: bool = False  # fill the frozen-feature cache, then stop (no training)
    num_threads: Optional[int] = None
    command: str = ""
    val_batch: int = 8
    log_every: int = 1


@dataclass
class TrainEvent:
    kind: str  # start | baseline (fine-tuning: the start weights' validation) | step | epoch | done
    epoch: int = 0
    step: int = 0  # global optimiser step (of this run, resumed steps included)
    steps_per_epoch: int = 0
    total_epochs: int = 0
    loss: float = float("nan")
    lr: float = 0.0
    metrics: Dict = field(default_factory=dict)  # validation metrics (epoch/done)
    best_dice: float = float("nan")
    elapsed_s: float = 0.0
    message: str = ""
    checkpoint: str = ""  # best.pt (done)
    stopped_early: bool = False


# -- distributed helpers ------------------------------------------------------------

def dist_info():
    """(world_size, rank, local_rank) from torchrun's environment."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return world, int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))


def _init_distributed(device: torch.device) -> bool:
    world, _, _ = dist_info()
    if world <= 1:
        return False
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return True


def _any_rank(flag: bool, distributed: bool) -> bool:
    """True on every rank when it is True on one (stop decisions stay in step)."""
    if not distributed:
        return flag
    import torch.distributed as dist

    t = torch.tensor([1.0 if flag else 0.0])
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def _barrier(distributed: bool) -> None:
    if distributed:
        import torch.distributed as dist

        dist.barrier()


# -- model + batches ----------------------------------------------------------------

def norm_card(name: str, size: int):
    """The model card with ``input_size`` set to the training size (for ``preprocess``)."""
    return dataclasses.replace(models.base_card(name), input_size=size)


from .distill import TEACHER_ARCHITECTURE  # noqa: E402  (MicroAUNet teachers' checkpoints)


def architecture_of(config: TrainConfig) -> str:
    return TEACHER_ARCHITECTURE if config.teacher_kind else config.model


def build_model(config: TrainConfig):
    """The network, with start weights when ``init_checkpoint`` is given."""
    pretrained = config.pretrained_backbone or config.backbone_weights is not None
    if config.teacher_kind:
        from .distill import build_teacher_model

        return build_teacher_model(config.teacher_kind, config.init_checkpoint, pretrained, config.backbone_weights)
    if config.init_checkpoint:
        return models.create_model(config.model, checkpoint=config.init_checkpoint,
                                   pretrained_backbone=pretrained, backbone_weights=config.backbone_weights,
                                   **config.variant)
    return models.create_model(config.model, checkpoint=False, pretrained_backbone=pretrained,
                               backbone_weights=config.backbone_weights, **config.variant)


def has_frozen_features(model: nn.Module) -> bool:
    """A network with a frozen front part (timm's ``forward_features``) and a trained
    ``forward_head(features, x)``: training caches the first and runs only the second."""
    return hasattr(model, "forward_head") and hasattr(model, "forward_features") and \
        hasattr(model, "backbone_sha256")


class _HeadOnly(nn.Module):
    """The trainable part as one module (so DDP wraps what actually trains)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, features, x):
        return {"logits": self.model.forward_head(features, x), "attention": {}}


class Batches:
    """Turns sample indices into normalised input tensors and targets."""

    def __init__(self, arrays: data_mod.PairArrays, card, augmenter: Augmenter, seed: int, device):
        self.arrays, self.card, self.augmenter, self.seed, self.device = arrays, card, augmenter, seed, device
        self.teacher_maps: Optional[np.ndarray] = None  # N x S x S uint8, see distill.TeacherMaps

    def sample_seed(self, epoch: int, index: int) -> int:
        return (self.seed * 1_000_003 + epoch * 10_007 + index) * 2_654_435_761 % (2 ** 32)

    def train_batch(self, indices, epoch: int):
        """(inputs, mask targets, teacher targets or None), augmented alike."""
        images, masks, soft = [], [], []
        for i in indices:
            teacher = None if self.teacher_maps is None else self.teacher_maps[i]
            out = self.augmenter(self.arrays.images[i], self.arrays.masks[i], self.sample_seed(epoch, i), teacher)
            images.append(out[0])
            masks.append(out[1])
            soft.extend(out[2:])
        x = preprocess(np.stack(images), self.card)
        y = torch.from_numpy(np.stack(masks)[:, None].astype(np.float32))
        y_soft = torch.from_numpy(np.stack(soft)[:, None].astype(np.float32) / 255.0).to(self.device) if soft else None
        return x.to(self.device), y.to(self.device), y_soft

    def val_batches(self, arrays: data_mod.PairArrays, batch: int):
        for start in range(0, len(arrays), batch):
            x = preprocess(arrays.images[start:start + batch], self.card)
            y = torch.from_numpy(arrays.masks[start:start + batch][:, None].astype(np.float32))
            yield x.to(self.device), y.to(self.device)

    def forward(self, net: nn.Module, inputs) -> dict:
        return net(inputs)


class CachedBatches(Batches):
    """Batches of cached frozen features (``feature_cache.FeatureCache``), each drawn under
    one of the cached views, with the image and mask under the same view."""

    def __init__(self, arrays, card, model: nn.Module, seed: int, device, val_arrays, folder, views):
        super().__init__(arrays, card, Augmenter("none", card.input_size), seed, device)
        self.model = model
        tag = "keys" + "-".join(str(b) for b in getattr(model, "key_blocks", ()))
        sha = model.backbone_sha256()
        self.train_cache = FeatureCache(folder, "train", sha, card.input_size, tag, arrays.stems, views)
        self.val_cache = FeatureCache(folder, "val", sha, card.input_size, tag, val_arrays.stems, ("identity",))
        self.val_arrays = val_arrays

    def iter_build(self, should_stop=None) -> Iterator[str]:
        """Fill the caches (resumable); yields a progress line every 40 rows.
        Returns early when ``should_stop()``: the rows written so far stay cached."""
        for cache, arrays in ((self.val_cache, self.val_arrays), (self.train_cache, self.arrays)):
            started, first = time.monotonic(), None
            for done, total in cache.iter_build(arrays.images, self._encode):
                first = done if first is None else first
                if should_stop and should_stop():
                    return
                if done % 40 < 4 or done == total:
                    rate = (time.monotonic() - started) / max(done - first + 4, 1)
                    yield f"caching frozen features {cache.dir.name}: {done}/{total} ({rate:.2f} s each)"

    @torch.no_grad()
    def _encode(self, images: np.ndarray) -> torch.Tensor:
        from models.blocks import resize_to

        x = preprocess(images, self.card).to(self.device)
        return self.model.forward_features(resize_to(x, self.model.grid_size(x.shape[-2:])))

    def train_batch(self, indices, epoch: int):
        views = [self.train_cache.views[random.Random(self.sample_seed(epoch, i)).randrange(len(self.train_cache.views))]
                 for i in indices]
        feats = self.train_cache.get(indices, views)
        images = np.stack([apply_view(self.arrays.images[i], v) for i, v in zip(indices, views)])
        masks = np.stack([apply_view(self.arrays.masks[i], v) for i, v in zip(indices, views)])
        y = torch.from_numpy(np.ascontiguousarray(masks[:, None]).astype(np.float32))
        return (feats.to(self.device), preprocess(images, self.card).to(self.device)), y.to(self.device), None

    def val_batches(self, arrays, batch: int):
        for start in range(0, len(arrays), batch):
            rows = range(start, min(start + batch, len(arrays)))
            feats = self.val_cache.get(rows, ["identity"] * len(rows))
            x = preprocess(arrays.images[start:start + batch], self.card)
            y = torch.from_numpy(arrays.masks[start:start + batch][:, None].astype(np.float32))
            yield (feats.to(self.device), x.to(self.device)), y.to(self.device)

    def forward(self, net: nn.Module, inputs) -> dict:
        return net(*inputs)


# -- validation -----------------------------------------------------------------------

@torch.no_grad()
def validate(net: nn.Module, batches: Batches, val_arrays, batch: int = 8, device=None) -> Dict:
    """Mean per-image metrics on the validation arrays (at the training size)."""
    was_training = net.training
    net.eval()
    scores = MeanScores()
    for inputs, target in batches.val_batches(val_arrays, batch):
        with _autocast(batches.device, enabled=False):
            out = batches.forward(net, inputs)
        scores.update(torch.sigmoid(out["logits"].float()), target)
    net.train(was_training)
    return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in scores.result().items()}


def _autocast(device, enabled: bool):
    if device.type == "cuda" and enabled:
        return torch.autocast("cuda", dtype=torch.float16)
    return torch.autocast("cpu", enabled=False)


# -- the loop -------------------------------------------------------------------------

def _plain(obj):
    """JSON-able copy (for headers and the state file)."""
    return json.loads(json.dumps(obj, default=str))


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


def _sampler_indices(n: int, world: int, rank: int, seed: int, epoch: int) -> List[int]:
    from torch.utils.data import DistributedSampler

    sampler = DistributedSampler(range(n), num_replicas=world, rank=rank, shuffle=True, seed=seed,
                                 drop_last=False)
    sampler.set_epoch(epoch)
    return list(sampler)


def _batches_of(indices: List[int], batch: int) -> List[List[int]]:
    """Full batches; a last short batch is kept only when it has >= 2 samples (BatchNorm)."""
    out = [indices[i:i + batch] for i in range(0, len(indices), batch)]
    if len(out) > 1 and len(out[-1]) < 2:
        out.pop()
    return out


def iter_train(config: TrainConfig, should_stop: Optional[Callable[[], bool]] = None) -> Iterator[TrainEvent]:
    """Train, yielding events. ``should_stop()`` (checked every step) ends the run
    cleanly: validation, checkpoints, then a "done" event with ``stopped_early``."""
    started = time.monotonic()
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    device = resolve_device(config.device)
    distributed = _init_distributed(device)
    world, rank, local_rank = dist_info()
    if device.type == "cuda" and distributed:
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    is_main = rank == 0
    out_dir = Path(config.out)
    preset = get_preset(config.model, batch=config.batch, lr=config.lr, augment=config.augment,
                        schedule=config.schedule)
    loss_fn = LOSSES[preset.loss]

    # data and split
    pairs = data_mod.find_pairs(config.data)
    state = _load_state(out_dir) if config.resume else None
    if state is not None:
        val_stems = list(state["val_stems"])
    else:
        _, val_stems = data_mod.split_stems([p.stem for p in pairs], config.val_fraction, config.split_seed)
    val_set = set(val_stems)
    train_pairs = [p for p in pairs if p.stem not in val_set]
    val_pairs = [p for p in pairs if p.stem in val_set]
    if not train_pairs:
        raise UserError(f"{config.data}: too few pairs to train ({len(pairs)})")

    seed_everything(config.seed)
    model = build_model(config)
    size = config.size or models.base_card(config.model).input_size
    card = norm_card(config.model, size)
    model.to(device).train()
    yield TrainEvent("start", message=f"loading {len(train_pairs)} training and {len(val_pairs)} validation pairs "
                                      f"at {size}px", elapsed_s=time.monotonic() - started)
    cache_dir = out_dir if is_main else None  # one writer under torchrun
    train_arrays = data_mod.PairArrays.cached(train_pairs, size, cache_dir and cache_dir / f"train-{size}px.npz")
    val_arrays = data_mod.PairArrays.cached(val_pairs, size, cache_dir and cache_dir / f"val-{size}px.npz")

    messages: List[str] = []
    if config.cache_features and has_frozen_features(model):
        batches: Batches = CachedBatches(train_arrays, card, model, config.seed, device, val_arrays,
                                         config.feature_cache or out_dir, config.views)
        for line in batches.iter_build(should_stop):
            yield TrainEvent("start", message=line, elapsed_s=time.monotonic() - started)
        if config.cache_only or not batches.train_cache.complete():  # what is cached stays
            cancelled = not batches.train_cache.complete()
            yield TrainEvent("done", message="cancelled while caching frozen features" if cancelled
                             else f"frozen features cached in {batches.train_cache.dir.parent}",
                             stopped_early=cancelled, elapsed_s=time.monotonic() - started)
            return
        net: nn.Module = _HeadOnly(model)
        augment_name = f"views {', '.join(config.views)} (cached frozen features)"
    else:
        batches = Batches(train_arrays, card, Augmenter(preset.augment, size), config.seed, device)
        net = model
        augment_name = preset.augment
        if config.teacher_maps:
            from .distill import TeacherMaps

            teacher = TeacherMaps(config.teacher_maps, config.feature_cache or out_dir, size, config.device,
                                  config.backbone_weights)
            for line in teacher.iter_build(train_pairs):
                yield TrainEvent("start", message=line, elapsed_s=time.monotonic() - started)
            batches.teacher_maps = teacher.maps

    distiller = None
    if config.teacher:
        from .distill import Distiller

        distiller = Distiller.from_checkpoint(config.teacher, model, device)

    optimizer = make_optimizer(preset, list(model.parameters()) + (distiller.parameters() if distiller else []))
    use_amp = config.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    train_net = net
    if distributed:
        from torch.nn.parallel import DistributedDataParallel as DDP

        train_net = DDP(net, device_ids=[device.index] if device.type == "cuda" else None)

    per_rank = len(_sampler_indices(len(train_arrays), world, rank, config.seed, 0))
    steps_per_epoch = len(_batches_of(list(range(per_rank)), preset.batch))
    total_epochs = config.epochs or (None if config.time_budget_min else preset.epochs)
    epoch, step_in_epoch, global_step = 0, 0, 0
    commands = [config.command]
    best_dice, best_epoch, history, wall_before = -1.0, -1, [], 0.0
    if state is not None:
        _resume_weights(model, out_dir, architecture_of(config))
        if distiller is not None and "distiller" in state:
            distiller.load_state_dict(state["distiller"])
        optimizer.load_state_dict(state["optimizer"])
        if state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        _set_rng_state(state["rng"])
        epoch, step_in_epoch, global_step = state["epoch"], state["step_in_epoch"], state["global_step"]
        total_epochs = config.epochs or state.get("total_epochs") or total_epochs
        best_dice, best_epoch = state["best_dice"], state["best_epoch"]
        history, wall_before = list(state["history"]), float(state["wall_time_s"])
        commands = list(state.get("commands", [])) + [config.command]
    baseline: Dict = {}
    if config.init_checkpoint and is_main and len(val_arrays):
        if state is not None and state.get("baseline_metrics"):
            baseline = dict(state["baseline_metrics"])
        else:  # the start weights on the same validation items, for the "did it improve" guard
            baseline = validate(net, batches, val_arrays, config.val_batch)
            yield TrainEvent("baseline", metrics=baseline, elapsed_s=time.monotonic() - started,
                             message=f"start checkpoint: validation dice {baseline.get('dice', float('nan')):.4f}")
    budget_s = config.time_budget_min * 60 if config.time_budget_min else None
    # With a time budget and no --epochs, the planned length is re-estimated after every
    # epoch from the last epoch's duration, so the schedule anneals within the budget even
    # when the machine gets faster or slower (such runs are not bit-repeatable; pass
    # --epochs for that).
    fit_to_budget = budget_s is not None and not config.epochs
    planned = total_epochs or preset.epochs
    if fit_to_budget and state is not None and len(history) >= 2:
        # resumed with a (new) budget: re-estimate the length from the last epoch's duration;
        # for a run that had finished, the schedule restarts from there (a warm restart)
        epoch_s = max(history[-1]["elapsed_s"] - history[-2]["elapsed_s"], 1e-3)
        planned = max(epoch + 1, epoch + int((budget_s - (time.monotonic() - started)) // (epoch_s * 1.05)))
    elif fit_to_budget and state is not None:
        planned = max(planned, epoch + 1)

    def training_facts(done_epochs: float) -> dict:
        return _plain({
            "data": str(Path(config.data).resolve()), "epochs": round(done_epochs, 3), "planned_epochs": planned,
            "steps": global_step, "wall_time_s": round(wall_before + time.monotonic() - started, 1),
            "command": commands[0], "resumed_with": commands[1:], "seed": config.seed, "split_seed": config.split_seed,
            "val_fraction": config.val_fraction, "val_stems_count": len(val_stems), "val_stems": val_stems,
            "train_count": len(train_pairs), "size": size, "batch": preset.batch * world, "world_size": world,
            "device": device.type, "amp": use_amp, "augment": augment_name, "best_epoch": best_epoch,
            "preset": dataclasses.asdict(preset), "teacher": config.teacher or "",
            "init_checkpoint": config.init_checkpoint or "", "baseline_metrics": baseline,
            "teacher_maps": config.teacher_maps or "",
        })

    if is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "split.json").write_text(json.dumps(
            {"data": str(Path(config.data).resolve()), "split_seed": config.split_seed,
             "val_fraction": config.val_fraction, "val_stems": val_stems}, indent=1))

    stop = False
    stopped_early = False
    last_val_s = 0.0
    loss_value = float("nan")
    metrics: Dict = history[-1]["metrics"] if history else {}
    while not stop and epoch < planned:
        epoch_started = time.monotonic()
        order = _batches_of(_sampler_indices(len(train_arrays), world, rank, config.seed, epoch), preset.batch)
        b = step_in_epoch
        for b in range(step_in_epoch, len(order)):
            lr = lr_at(preset, epoch + b / len(order), planned)
            for group in optimizer.param_groups:
                group["lr"] = lr
            inputs, target, teacher_target = batches.train_batch(order[b], epoch)
            with _autocast(device, use_amp):
                out = batches.forward(train_net, inputs)
                loss = deep_supervision(out, target, loss_fn) if preset.deep_supervision else loss_fn(out["logits"], target)
                if distiller is not None:
                    loss = loss + distiller.loss(out, inputs, target, epoch, planned)
                if teacher_target is not None:
                    loss = loss + bce_dice(out["logits"], teacher_target)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            global_step += 1
            loss_value = float(loss.detach())
            if not math.isfinite(loss_value):
                messages.append(f"loss is {loss_value} at step {global_step}")
            if global_step % config.log_every == 0:
                yield TrainEvent("step", epoch, global_step, len(order), planned, loss_value, lr,
                                 best_dice=best_dice, elapsed_s=time.monotonic() - started)
            elapsed = time.monotonic() - started
            want_stop = bool(should_stop and should_stop())
            want_stop |= bool(config.max_steps and global_step >= config.max_steps)
            want_stop |= bool(budget_s and elapsed + last_val_s * 1.2 >= budget_s)
            if _any_rank(want_stop, distributed):
                stop = stopped_early = True
                break
        finished_epoch = not stop or b + 1 >= len(order)
        if stop and b + 1 < len(order):
            step_in_epoch = b + 1  # resume mid-epoch
        else:
            epoch, step_in_epoch = epoch + 1, 0
        if fit_to_budget and finished_epoch:
            epoch_s = time.monotonic() - epoch_started + last_val_s
            remaining = budget_s - (time.monotonic() - started)
            planned = max(epoch, epoch + int(remaining // (epoch_s * 1.05)))

        # validation + checkpoints (rank 0)
        val_started = time.monotonic()
        if is_main:
            metrics = validate(net, batches, val_arrays, config.val_batch) if len(val_arrays) else {}
            done_epochs = epoch + (step_in_epoch / len(order) if step_in_epoch else 0.0)
            history.append({"epoch": round(done_epochs, 3), "step": global_step, "loss": loss_value,
                            "lr": lr_at(preset, done_epochs, planned), "metrics": metrics,
                            "elapsed_s": round(wall_before + time.monotonic() - started, 1)})
            dice = metrics.get("dice", float("nan"))
            improved = isinstance(dice, float) and math.isfinite(dice) and dice > best_dice
            if improved:
                best_dice, best_epoch = dice, epoch
            _save(model, out_dir, config, training_facts(done_epochs), metrics, improved)
            _save_state(out_dir, {
                "epoch": epoch, "step_in_epoch": step_in_epoch, "global_step": global_step,
                "total_epochs": planned, "best_dice": best_dice, "best_epoch": best_epoch,
                "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict() if use_amp else {},
                "rng": _rng_state(), "history": _plain(history), "val_stems": val_stems,
                "wall_time_s": wall_before + time.monotonic() - started,
                "distiller": distiller.state_dict() if distiller is not None else {},
                "baseline_metrics": baseline, "commands": commands,
            })
        _barrier(distributed)
        last_val_s = time.monotonic() - val_started
        yield TrainEvent("epoch", epoch, global_step, len(order), planned, loss_value,
                         lr_at(preset, epoch, planned), metrics, best_dice, time.monotonic() - started,
                         message="; ".join(messages[-1:]))
        messages.clear()  # each message is shown once
        if budget_s and time.monotonic() - started + (time.monotonic() - epoch_started) * 0.05 >= budget_s:
            stop = stopped_early = stopped_early or epoch < planned
    yield TrainEvent("done", epoch, global_step, 0, planned, loss_value, 0.0, metrics, best_dice,
                     time.monotonic() - started, checkpoint=str(out_dir / "best.pt"), stopped_early=stopped_early)
    if distributed:
        import torch.distributed as dist

        dist.destroy_process_group()


def train(config: TrainConfig, on_event: Optional[Callable[[TrainEvent], None]] = None,
          should_stop: Optional[Callable[[], bool]] = None) -> TrainEvent:
    """Run :func:`iter_train` to the end; returns the "done" event."""
    last = None
    for event in iter_train(config, should_stop):
        if on_event is not None:
            on_event(event)
        last = event
    return last


# -- files ----------------------------------------------------------------------------

def extra_header(model: nn.Module) -> dict:
    extra = {}
    if getattr(model, "checkpoint_exclude", None) and hasattr(model, "backbone_sha256"):
        extra.update(backbone_sha256=model.backbone_sha256(),
                     backbone_source=str(getattr(model, "backbone_source", "see model card")))
    return extra


def _variant(model: nn.Module, config: TrainConfig) -> dict:
    return _plain(dict(getattr(model, "variant", None) or config.variant or {}))


def _save(model, out_dir: Path, config: TrainConfig, training: dict, metrics: dict, improved: bool) -> None:
    kwargs = dict(architecture=architecture_of(config), variant=_variant(model, config), training=training,
                  metrics=metrics, extra=extra_header(model))
    save_checkpoint(model, out_dir / "last.pt", **kwargs)
    if improved:
        save_checkpoint(model, out_dir / "best.pt", **kwargs)


def _save_state(out_dir: Path, state: dict) -> None:
    tmp = out_dir / f".{STATE_FILE}.tmp-{os.getpid()}"
    torch.save(state, tmp)
    os.replace(tmp, out_dir / STATE_FILE)


def _load_state(out_dir: Path) -> Optional[dict]:
    path = out_dir / STATE_FILE
    if not path.is_file() or not (out_dir / "last.pt").is_file():
        print(f"note: nothing to resume in {out_dir}; starting afresh", file=sys.stderr)
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(f"{path} cannot be read to resume ({type(err).__name__}: {err})") from None


def read_own_checkpoint(path, architecture: Optional[str] = None):
    """read_checkpoint that also accepts headers whose "torch" field is a TorchVersion
    (a str subclass, harmless) as written by save_checkpoint before the fix."""
    from torch.torch_version import TorchVersion

    with torch.serialization.safe_globals([TorchVersion]):
        return read_checkpoint(path, expected_architecture=architecture)


def _resume_weights(model: nn.Module, out_dir: Path, name: str) -> None:
    header, state = read_own_checkpoint(out_dir / "last.pt", name)
    load_into(model, state, out_dir / "last.pt", name)
