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

import contextlib
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
from models.checkpoint import CheckpointError, load_into, load_problem, read_checkpoint, save_checkpoint
from napari_polyp.errors import UserError
from napari_polyp.inference import resolve_device

from . import data as data_mod
from .augment import Augmenter, check_preset, cpu_path_note
from .batchnorm import train_mode
from .batches import Batches, CachedBatches
from .cutmix import cutmix
from .device_augment import DeviceBatches
from .distill import TEACHER_ARCHITECTURE, Distiller, TeacherMaps, build_teacher_model
from .losses import LOSSES, bce_dice, deep_supervision
from .metrics import MeanScores
from .presets import get_preset, lr_at, make_optimizer
from .weight_average import WeightAverage

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
    val_stems: Optional[list] = None  # the validation stems, chosen by the caller (fine-tuning); None: split
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
    augment_on_device: bool = False  # augment whole batches on the device (device_augment.py; for GPUs)
    schedule: Optional[str] = None  # learning-rate schedule override (presets.lr_at)
    optimizer: Optional[str] = None  # optimiser override (presets.OPTIMIZERS)
    cache_features: bool = True  # frozen-backbone networks: encode each image once
    views: tuple = ("identity", "hflip")  # cached views (feature_cache.VIEWS) of each training image
    feature_cache: Optional[str] = None  # folder of the frozen-feature cache (default: out)
    cache_only: bool = False  # fill the frozen-feature cache, then stop (no training)
    crop_tokens: int = 0  # cached features: train on random windows of this many tokens a side (0: whole)
    ema_decay: float = 0.0  # > 0: validate and save a moving average of the weights (weight_average.py)
    freeze_bn: bool = False  # batch-norm layers in eval mode: their loaded statistics kept (batchnorm.py)
    cutmix: float = 0.0  # > 0: each training sample gets a neighbour's box with this probability (cutmix.py)
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


def architecture_of(config: TrainConfig) -> str:
    return TEACHER_ARCHITECTURE if config.teacher_kind else config.model


def check_names(config: TrainConfig, augment: str) -> None:
    """A variant or augmentation the project does not know is the user's typo: say so before
    any data is read (a traceback after minutes of loading helps nobody)."""
    named = config.variant.get("variant")
    variants = models.base_card(config.model).variants if not config.teacher_kind else ()
    if named is not None and variants and named not in variants:
        raise UserError(f"{config.model} has no variant {named!r}; its variants: {', '.join(variants)}")
    check_preset(augment)
    if not 0.0 <= config.cutmix <= 1.0:
        raise UserError(f"--cutmix is a probability, between 0 and 1 (got {config.cutmix:g})")


def build_model(config: TrainConfig):
    """The network, with start weights when ``init_checkpoint`` is given. A ``--variant`` the
    network refuses (an unknown name, a value out of range) is one line naming it."""
    try:
        return _build_model(config)
    except CheckpointError:
        raise
    except (TypeError, ValueError) as err:
        if not config.variant:
            raise
        chosen = ",".join(f"{k}={v}" for k, v in config.variant.items())
        raise UserError(f"--variant {chosen} does not fit {config.model}: {err}") from err


def _build_model(config: TrainConfig):
    pretrained = config.pretrained_backbone or config.backbone_weights is not None
    if config.teacher_kind:
        return build_teacher_model(config.teacher_kind, config.init_checkpoint, pretrained, config.backbone_weights)
    if config.init_checkpoint:
        return models.create_model(config.model, checkpoint=config.init_checkpoint,
                                   pretrained_backbone=pretrained, backbone_weights=config.backbone_weights,
                                   new_parts_ok=True, **config.variant)
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


# -- validation -----------------------------------------------------------------------

@torch.no_grad()
def validate(net: nn.Module, batches: Batches, val_arrays, batch: int = 8, device=None,
             freeze_bn: bool = False) -> Dict:
    """Mean per-image metrics on the validation arrays (at the training size); ``net`` is left in
    the mode it came in (with ``freeze_bn``, its batch-norm layers in eval mode)."""
    was_training = net.training
    net.eval()
    scores = MeanScores()
    for inputs, target in batches.val_batches(val_arrays, batch):
        with _autocast(batches.device, enabled=False):
            out = batches.forward(net, inputs)
        scores.update(torch.sigmoid(out["logits"].float()), target)
    train_mode(net, was_training, freeze_bn)
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


class _Run:
    """One training run, cut into named steps in the manner of timm's train.py:

        setup_data → setup_batches → setup_optimizer → resume → measure_baseline → plan
        → (train_one_epoch → validate_and_save)* → done

    Steps that report progress are generators of TrainEvents; the state they share
    lives on the instance (what a resumed run restores is in ``_save_state``'s dict)."""

    def __init__(self, config: TrainConfig, should_stop: Optional[Callable[[], bool]]):
        self.config, self.should_stop = config, should_stop
        self.started = time.monotonic()
        if config.num_threads:
            torch.set_num_threads(config.num_threads)
        self.device = resolve_device(config.device)
        self.distributed = _init_distributed(self.device)
        self.world, self.rank, local_rank = dist_info()
        if self.device.type == "cuda" and self.distributed:
            self.device = torch.device("cuda", local_rank)
            torch.cuda.set_device(self.device)
        self.is_main = self.rank == 0
        self.out_dir = Path(config.out)
        self.preset = get_preset(config.model, batch=config.batch, lr=config.lr, augment=config.augment,
                                 schedule=config.schedule, optimizer=config.optimizer)
        check_names(config, self.preset.augment)
        self.loss_fn = LOSSES[self.preset.loss]
        self.use_amp = config.amp and self.device.type == "cuda"
        self.budget_s = config.time_budget_min * 60 if config.time_budget_min else None
        # counters a resumed run continues from
        self.epoch, self.step_in_epoch, self.global_step = 0, 0, 0
        self.best_dice, self.best_epoch, self.history, self.wall_before = -1.0, -1, [], 0.0
        self.commands = [config.command]
        self.baseline: Dict = {}
        self.messages: List[str] = []
        self.stop = self.stopped_early = False
        self.last_val_s, self.loss_value = 0.0, float("nan")
        self.metrics: Dict = {}

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def event(self, kind: str, **kwargs) -> TrainEvent:
        return TrainEvent(kind, elapsed_s=self.elapsed(), **kwargs)

    # -- setup ---------------------------------------------------------------------------

    def setup_data(self) -> Iterator[TrainEvent]:
        """Pairs, the validation split (a resumed run keeps its own), the model and the arrays."""
        config = self.config
        pairs = data_mod.find_pairs(config.data)
        self.state = _load_state(self.out_dir) if config.resume else None
        if self.state is not None:
            self.val_stems = list(self.state["val_stems"])
        elif config.val_stems is not None:
            self.val_stems = sorted(config.val_stems)
        else:
            _, self.val_stems = data_mod.split_stems([p.stem for p in pairs], config.val_fraction,
                                                     config.split_seed)
        val_set = set(self.val_stems)
        self.train_pairs = [p for p in pairs if p.stem not in val_set]
        val_pairs = [p for p in pairs if p.stem in val_set]
        if not self.train_pairs:
            raise UserError(f"{config.data}: too few pairs to train ({len(pairs)})")
        seed_everything(config.seed)
        self.model = build_model(config)
        self.size = config.size or models.base_card(config.model).input_size
        self.card = norm_card(config.model, self.size)
        train_mode(self.model.to(self.device), True, config.freeze_bn)
        yield self.event("start", message=f"loading {len(self.train_pairs)} training and {len(val_pairs)} "
                                          f"validation pairs at {self.size}px")
        cache_dir = self.out_dir if self.is_main else None  # one writer under torchrun
        size = self.size
        self.train_arrays = data_mod.PairArrays.cached(self.train_pairs, size,
                                                       cache_dir and cache_dir / f"train-{size}px.npz")
        self.val_arrays = data_mod.PairArrays.cached(val_pairs, size, cache_dir and cache_dir / f"val-{size}px.npz")

    def setup_batches(self) -> Iterator[TrainEvent]:
        """Cached frozen features, or augmented images (with teacher maps); returns False
        when the run ends here (``cache_only``, or cancelled while caching)."""
        config = self.config
        if config.cache_features and has_frozen_features(self.model):
            if config.cutmix:  # a box of cached tokens is not a box of pixels: say so before minutes of caching
                raise UserError("--cutmix pastes image boxes; cached frozen features have none "
                                "(train with --no-cache to use it)")
            self.batches: Batches = CachedBatches(self.train_arrays, self.card, self.model, config.seed, self.device,
                                                  self.val_arrays, config.feature_cache or self.out_dir, config.views,
                                                  config.crop_tokens)
            for line in self.batches.iter_build(self.should_stop):
                yield self.event("start", message=line)
            cache = self.batches.train_cache
            if config.cache_only or not cache.complete():  # what is cached stays
                cancelled = not cache.complete()
                yield self.event("done", stopped_early=cancelled,
                                 message="cancelled while caching frozen features" if cancelled
                                 else f"frozen features cached in {cache.dir.parent}")
                return False
            self.net: nn.Module = _HeadOnly(self.model)
            self.augment_name = f"views {', '.join(config.views)} (cached frozen features)" + (
                f", {config.crop_tokens}-token windows" if config.crop_tokens else "")
        else:
            self._setup_image_batches()
        if config.teacher_maps:
            teacher = TeacherMaps(config.teacher_maps, config.feature_cache or self.out_dir, self.size,
                                  config.device, config.backbone_weights)
            for line in teacher.iter_build(self.train_pairs):
                yield self.event("start", message=line)
            self.batches.teacher_maps = teacher.maps
        return True

    def _setup_image_batches(self) -> None:
        """Batches of augmented images (on the CPU, or on the device with ``augment_on_device``)."""
        config = self.config
        if config.augment_on_device:
            self.batches = DeviceBatches(self.train_arrays, self.card, self.preset.augment, config.seed, self.device)
        else:
            self.batches = Batches(self.train_arrays, self.card, Augmenter(self.preset.augment, self.size),
                                   config.seed, self.device)
        self.net = self.model
        where = " (on device)" if config.augment_on_device else cpu_path_note(self.preset.augment)
        self.augment_name = self.preset.augment + where + (
            f", CutMix p={config.cutmix:g}" if config.cutmix else "")

    def setup_optimizer(self) -> None:
        self.distiller = None
        if self.config.teacher:
            self.distiller = Distiller.from_checkpoint(self.config.teacher, self.model, self.device)
        extra = self.distiller.parameters() if self.distiller else []
        self.optimizer = make_optimizer(self.preset, list(self.model.parameters()) + extra)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        self.ema = WeightAverage(self.model, self.config.ema_decay) if self.config.ema_decay else None
        self.train_net = self.net
        if self.distributed:
            from torch.nn.parallel import DistributedDataParallel as DDP

            self.train_net = DDP(self.net, device_ids=[self.device.index] if self.device.type == "cuda" else None)

    def resume(self) -> None:
        """Weights, optimizer, RNG and counters of the run in ``out`` (``config.resume``)."""
        state = self.state
        self.total_epochs = self.config.epochs or (None if self.config.time_budget_min else self.preset.epochs)
        if state is None:
            return
        _resume_weights(self.model, self.out_dir, architecture_of(self.config))
        self._resume_average(state)
        if self.distiller is not None and "distiller" in state:
            self.distiller.load_state_dict(state["distiller"])
        self.optimizer.load_state_dict(state["optimizer"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        _set_rng_state(state["rng"])
        self.epoch, self.step_in_epoch, self.global_step = state["epoch"], state["step_in_epoch"], state["global_step"]
        self.total_epochs = self.config.epochs or state.get("total_epochs") or self.total_epochs
        self.best_dice, self.best_epoch = state["best_dice"], state["best_epoch"]
        self.history, self.wall_before = list(state["history"]), float(state["wall_time_s"])
        self.commands = list(state.get("commands", [])) + [self.config.command]
        self.metrics = self.history[-1]["metrics"] if self.history else {}

    def _resume_average(self, state: dict) -> None:
        """With ``--ema``, last.pt holds the averaged weights: the network's own come from the state."""
        if state.get("raw_weights"):
            tensors = dict(self.model.named_parameters())
            tensors.update(self.model.named_buffers())
            with torch.no_grad():
                for name, tensor in state["raw_weights"].items():
                    tensors[name].copy_(tensor)
        if self.ema is not None:
            if state.get("ema"):
                self.ema.load_state_dict(state["ema"])
            else:  # a run resumed with --ema for the first time: average from where it stands
                self.ema = WeightAverage(self.model, self.config.ema_decay)

    def evaluated(self):
        """The weights that are validated and saved: the moving average with ``--ema``, else the network's own."""
        return self.ema.applied(self.model) if self.ema is not None else contextlib.nullcontext(self.model)

    def measure_baseline(self) -> Iterator[TrainEvent]:
        """Fine-tuning: the start weights on the same validation items (the "did it improve" guard)."""
        if not (self.config.init_checkpoint and self.is_main and len(self.val_arrays)):
            return
        if self.state is not None and self.state.get("baseline_metrics"):
            self.baseline = dict(self.state["baseline_metrics"])
            return
        self.baseline = validate(self.net, self.batches, self.val_arrays, self.config.val_batch,
                                 freeze_bn=self.config.freeze_bn)
        yield self.event("baseline", metrics=self.baseline,
                         message=f"start checkpoint: validation dice {self.baseline.get('dice', float('nan')):.4f}")

    def plan(self) -> None:
        """The planned length. With a time budget and no --epochs it is re-estimated after
        every epoch from the last epoch's duration, so the schedule anneals within the
        budget even when the machine gets faster or slower (such runs are not
        bit-repeatable; pass --epochs for that)."""
        self.fit_to_budget = self.budget_s is not None and not self.config.epochs
        self.planned = self.total_epochs or self.preset.epochs
        if self.fit_to_budget and self.state is not None and len(self.history) >= 2:
            # resumed with a (new) budget: re-estimate the length from the last epoch's duration;
            # for a run that had finished, the schedule restarts from there (a warm restart)
            epoch_s = max(self.history[-1]["elapsed_s"] - self.history[-2]["elapsed_s"], 1e-3)
            fits = int((self.budget_s - self.elapsed()) // (epoch_s * 1.05))
            self.planned = max(self.epoch + 1, self.epoch + fits)
        elif self.fit_to_budget and self.state is not None:
            self.planned = max(self.planned, self.epoch + 1)
        if self.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            (self.out_dir / "split.json").write_text(json.dumps(
                {"data": str(Path(self.config.data).resolve()), "split_seed": self.config.split_seed,
                 "val_fraction": self.config.val_fraction, "val_stems": self.val_stems}, indent=1))

    # -- the loop ------------------------------------------------------------------------

    def train_one_epoch(self) -> Iterator[TrainEvent]:
        """The optimiser steps of one epoch (from mid-epoch when resumed or stopped)."""
        config, preset = self.config, self.preset
        self.epoch_started = time.monotonic()
        order = _batches_of(_sampler_indices(len(self.train_arrays), self.world, self.rank, config.seed, self.epoch),
                            preset.batch)
        self.steps_in_order = len(order)
        b = self.step_in_epoch
        for b in range(self.step_in_epoch, len(order)):
            lr = lr_at(preset, self.epoch + b / len(order), self.planned)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            self._step(order[b])
            if self.global_step % config.log_every == 0:
                yield self.event("step", epoch=self.epoch, step=self.global_step, steps_per_epoch=len(order),
                                 total_epochs=self.planned, loss=self.loss_value, lr=lr, best_dice=self.best_dice)
            if self._want_stop():
                self.stop = self.stopped_early = True
                break
        finished_epoch = not self.stop or b + 1 >= len(order)
        if self.stop and b + 1 < len(order):
            self.step_in_epoch = b + 1  # resume mid-epoch
        else:
            self.epoch, self.step_in_epoch = self.epoch + 1, 0
        if self.fit_to_budget and finished_epoch:
            epoch_s = time.monotonic() - self.epoch_started + self.last_val_s
            remaining = self.budget_s - self.elapsed()
            self.planned = max(self.epoch, self.epoch + int(remaining // (epoch_s * 1.05)))

    def _step(self, indices) -> None:
        inputs, target, teacher_target = self.batches.train_batch(indices, self.epoch)
        if self.config.cutmix:
            inputs, target, teacher_target = cutmix(inputs, target, teacher_target, self.config.cutmix,
                                                    self.batches.sample_seed(self.epoch, indices[0]) + 1)
        with _autocast(self.device, self.use_amp):
            out = self.batches.forward(self.train_net, inputs)
            if self.preset.deep_supervision:
                loss = deep_supervision(out, target, self.loss_fn)
            else:
                loss = self.loss_fn(out["logits"], target)
            if self.distiller is not None:
                loss = loss + self.distiller.loss(out, inputs, target, self.epoch, self.planned)
            if teacher_target is not None:
                loss = loss + bce_dice(out["logits"], teacher_target)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.ema is not None:
            self.ema.update(self.model)
        self.global_step += 1
        self.loss_value = float(loss.detach())
        if not math.isfinite(self.loss_value):
            self.messages.append(f"loss is {self.loss_value} at step {self.global_step}")

    def _want_stop(self) -> bool:
        config = self.config
        want = bool(self.should_stop and self.should_stop())
        want |= bool(config.max_steps and self.global_step >= config.max_steps)
        want |= bool(self.budget_s and self.elapsed() + self.last_val_s * 1.2 >= self.budget_s)
        return _any_rank(want, self.distributed)

    def validate_and_save(self) -> TrainEvent:
        """Validation, last.pt (and best.pt when it improved) and the resume state, on rank 0."""
        val_started = time.monotonic()
        if self.is_main:
            with self.evaluated():
                self.metrics = validate(self.net, self.batches, self.val_arrays, self.config.val_batch,
                                        freeze_bn=self.config.freeze_bn) \
                    if len(self.val_arrays) else {}
            done_epochs = self.epoch + (self.step_in_epoch / self.steps_in_order if self.step_in_epoch else 0.0)
            self.history.append({"epoch": round(done_epochs, 3), "step": self.global_step, "loss": self.loss_value,
                                 "lr": lr_at(self.preset, done_epochs, self.planned), "metrics": self.metrics,
                                 "elapsed_s": round(self.wall_before + self.elapsed(), 1)})
            dice = self.metrics.get("dice", float("nan"))
            improved = isinstance(dice, float) and math.isfinite(dice) and dice > self.best_dice
            if improved:
                self.best_dice, self.best_epoch = dice, self.epoch
            with self.evaluated():
                _save(self.model, self.out_dir, self.config, self.training_facts(done_epochs), self.metrics, improved)
            _save_state(self.out_dir, self.resume_state())
        _barrier(self.distributed)
        self.last_val_s = time.monotonic() - val_started
        event = self.event("epoch", epoch=self.epoch, step=self.global_step, steps_per_epoch=self.steps_in_order,
                           total_epochs=self.planned, loss=self.loss_value,
                           lr=lr_at(self.preset, self.epoch, self.planned), metrics=self.metrics,
                           best_dice=self.best_dice, message="; ".join(self.messages[-1:]))
        self.messages.clear()  # each message is shown once
        if self.budget_s and self.elapsed() + (time.monotonic() - self.epoch_started) * 0.05 >= self.budget_s:
            self.stop = self.stopped_early = self.stopped_early or self.epoch < self.planned
        return event

    def training_facts(self, done_epochs: float) -> dict:
        config = self.config
        return _plain({
            "data": str(Path(config.data).resolve()), "epochs": round(done_epochs, 3), "planned_epochs": self.planned,
            "steps": self.global_step, "wall_time_s": round(self.wall_before + self.elapsed(), 1),
            "command": self.commands[0], "resumed_with": self.commands[1:], "seed": config.seed,
            "split_seed": config.split_seed, "val_fraction": config.val_fraction,
            "val_stems_count": len(self.val_stems), "val_stems": self.val_stems,
            "train_count": len(self.train_pairs), "size": self.size, "batch": self.preset.batch * self.world,
            "world_size": self.world, "device": self.device.type, "amp": self.use_amp, "augment": self.augment_name,
            "best_epoch": self.best_epoch, "preset": dataclasses.asdict(self.preset), "teacher": config.teacher or "",
            "init_checkpoint": config.init_checkpoint or "", "baseline_metrics": self.baseline,
            "teacher_maps": config.teacher_maps or "", "ema_decay": config.ema_decay, "cutmix": config.cutmix,
            "freeze_bn": config.freeze_bn,
        })

    def resume_state(self) -> dict:
        return {
            "epoch": self.epoch, "step_in_epoch": self.step_in_epoch, "global_step": self.global_step,
            "total_epochs": self.planned, "best_dice": self.best_dice, "best_epoch": self.best_epoch,
            "optimizer": self.optimizer.state_dict(), "scaler": self.scaler.state_dict() if self.use_amp else {},
            "rng": _rng_state(), "history": _plain(self.history), "val_stems": self.val_stems,
            "wall_time_s": self.wall_before + self.elapsed(),
            "distiller": self.distiller.state_dict() if self.distiller is not None else {},
            "baseline_metrics": self.baseline, "commands": self.commands,
            "ema": self.ema.state_dict() if self.ema is not None else {},
            # with --ema, last.pt holds the average; resuming needs the network's own weights too
            "raw_weights": {name: t.detach().clone() for name, t in self.ema.shadow_source(self.model).items()}
            if self.ema is not None else {},
        }

    def done(self) -> TrainEvent:
        if self.distributed:
            import torch.distributed as dist

            dist.destroy_process_group()
        return self.event("done", epoch=self.epoch, step=self.global_step, total_epochs=self.planned,
                          loss=self.loss_value, metrics=self.metrics, best_dice=self.best_dice,
                          checkpoint=str(self.out_dir / "best.pt"), stopped_early=self.stopped_early)


def iter_train(config: TrainConfig, should_stop: Optional[Callable[[], bool]] = None) -> Iterator[TrainEvent]:
    """Train, yielding events. ``should_stop()`` (checked every step) ends the run
    cleanly: validation, checkpoints, then a "done" event with ``stopped_early``."""
    run = _Run(config, should_stop)
    yield from run.setup_data()
    if not (yield from run.setup_batches()):
        return
    run.setup_optimizer()
    run.resume()
    yield from run.measure_baseline()
    run.plan()
    while not run.stop and run.epoch < run.planned:
        yield from run.train_one_epoch()
        yield run.validate_and_save()
    yield run.done()


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
    try:
        torch.save(state, tmp)
        os.replace(tmp, out_dir / STATE_FILE)
    finally:  # a disk that filled up mid-write leaves no half file behind
        tmp.unlink(missing_ok=True)


def _load_state(out_dir: Path) -> Optional[dict]:
    path = out_dir / STATE_FILE
    if not path.is_file() or not (out_dir / "last.pt").is_file():
        print(f"note: nothing to resume in {out_dir}; starting afresh", file=sys.stderr)
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # in our words: torch's own text advises loading the file unsafely
        raise CheckpointError(f"{path} cannot be read to resume ({load_problem(err, path)})") from None


def _resume_weights(model: nn.Module, out_dir: Path, name: str) -> None:
    header, state = read_checkpoint(out_dir / "last.pt", expected_architecture=name)
    load_into(model, state, out_dir / "last.pt", name)
