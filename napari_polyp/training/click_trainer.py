"""Train the click refiner (``models/click_refiner.py``) with iterative click simulation.

    napari-polyp train-clicks --data polyp=DIR --data skin=DIR --out runs/clicks --minutes 30

The recipe follows RITM (Sofiiuk et al., 2022), cut into named steps:

    load_sets → build (refiner, teachers) → (make_batch → start_masks → simulate → step)* → validate → save

- **make_batch**: training pairs augmented on the device (``device_augment``); a share of them
  is cropped around the lesion, the zoom-in view the click session refines at.
- **start_masks**: what an annotator starts from: a shipped network's probability (on a
  coarsened, duller copy of the image, so that it errs on its own training images as it
  does on new ones), the truth with a network's kind of errors (``perturb_masks``), or
  nothing (a lesion the network missed), or a neighbouring structure taken in / a part left
  out along the image's edges (``structure_masks``); a share is made binary (hand edits).
- **simulate**: one or two clicks in the start mask's errors, then 0 to ``max_rounds`` rounds
  of the refiner's own prediction (no gradient) with a click at its deepest error; the
  mask input of each round is the round before's probability.
- **step**: BCE + Dice on the last round's output, AdamW, mixed precision on a GPU.
- **validate**: on each set's validation split (the training split's seeded 10 %), starting
  from the first teacher's mask (unseen images: its real errors) and from nothing; Dice after
  0-5 protocol clicks (deepest point of the larger error). ``best.pt`` is the best mean Dice
  over clicks 1-3.

The learning rate follows the run's progress (steps, or time with ``--minutes``), so a
resumed run (``--resume``, from ``last.pt`` and ``last.state.pt``) continues its schedule.
"""
from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn

import models
from models.checkpoint import load_into, read_checkpoint, save_checkpoint
from napari_polyp.errors import UserError
from napari_polyp.inference import normalise, resolve_device

from . import data as data_mod
from .batchnorm import train_mode
from .click_simulation import (
    band_masks,
    click_maps,
    crop_batch,
    degrade_for_teacher,
    dice,
    focus_crops,
    iou,
    masktrack_priors,
    near_truth_masks,
    next_clicks,
    object_crops,
    perturb_masks,
    structure_masks,
)
from .device_augment import augment_batch, device_preset, draw
from .losses import bce_dice

ARCHITECTURE = "click-refiner"
TEACHERS = {"polyp": ("ea-dk", "microaunet"), "skin": ("eam-net",)}  # start masks of each task
VAL_CLICKS = 5
STATE_FILE = "last.state.pt"


@dataclass
class ClickTrainConfig:
    data: Sequence[str]  # "TASK=FOLDER" (polyp | skin), folders of images/ and masks/
    out: str
    size: int = 352
    batch: int = 16
    lr: float = 3e-4
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    steps: int = 20_000  # the schedule's length when there is no time budget
    minutes: Optional[float] = None  # time budget (the schedule follows the time)
    max_steps: Optional[int] = None  # stop after this many steps (tests)
    init: Optional[str] = "models/checkpoints/ea-dk.pt"  # encoder start: its 'backbone.' weights
    backbone_weights: Optional[str] = None  # or ImageNet EfficientNet-Lite0 weights
    max_rounds: int = 3
    crop_share: float = 0.4
    focus_share: float = 0.0  # of the cropped samples, a close-up inside the lesion's box (``focus_crops``)
    empty_share: float = 0.12
    teacher_share: float = 0.4
    near_truth_share: float = 0.0  # a good mask with one small error (``near_truth_masks``)
    band_share: float = 0.0  # a good mask off by a band along one stretch of edge (``band_masks``)
    structure_share: float = 0.0  # a neighbouring structure taken in / a part left out (``structure_masks``)
    # batches refined with no click from a deformed true mask (``masktrack_priors``): propagation's step
    no_click_share: float = 0.0
    freeze_bn: bool = False  # batch-norm statistics kept as loaded (small CPU batches would drift them)
    binary_share: float = 0.25
    augment: str = "strong"
    val_every: int = 400
    val_batch: int = 16
    val_limit: Optional[int] = None  # first N validation images of each set (a CPU run's validation)
    teachers: Dict[str, Tuple[str, ...]] = field(default_factory=lambda: dict(TEACHERS))
    device: str = "auto"
    amp: bool = True
    seed: int = 0
    threads: Optional[int] = None
    resume: bool = False
    command: str = ""


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# -- data ------------------------------------------------------------------------------------

@dataclass
class ClickSet:
    """One task's pairs on the device: training and validation images and masks."""

    task: str
    folder: str
    train_images: torch.Tensor  # N x 3 x S x S uint8
    train_masks: torch.Tensor  # N x 1 x S x S uint8 {0,1}
    val_images: torch.Tensor
    val_masks: torch.Tensor
    val_stems: List[str]


def parse_data(items: Sequence[str]) -> List[Tuple[str, str]]:
    out = []
    for item in items:
        task, sep, folder = item.partition("=")
        if not sep or task not in TEACHERS:
            raise UserError(f"--data {item!r}: give TASK=FOLDER with TASK one of {', '.join(TEACHERS)}")
        out.append((task, folder))
    return out


def load_sets(config: ClickTrainConfig, device) -> List[ClickSet]:
    sets = []
    for task, folder in parse_data(config.data):
        pairs = data_mod.find_pairs(folder)
        if len(pairs) < 4:
            raise UserError(f"{folder}: {len(pairs)} image/mask pairs; the refiner needs at least 4")
        train_stems, val_stems = data_mod.split_stems([p.stem for p in pairs], 0.1, 0)
        tensors = []
        for stems in (train_stems, val_stems):
            arrays = data_mod.PairArrays(data_mod.select(pairs, stems), config.size)
            tensors.append(torch.from_numpy(arrays.images).to(device).permute(0, 3, 1, 2).contiguous())
            tensors.append(torch.from_numpy(arrays.masks).to(device)[:, None].contiguous())
        sets.append(ClickSet(task, str(folder), *tensors, val_stems))
        say(f"{task}: {folder}: {len(train_stems)} training and {len(val_stems)} validation pairs at {config.size} px")
    return sets


# -- networks ------------------------------------------------------------------------------

def build_refiner(config: ClickTrainConfig) -> nn.Module:
    """The refiner; its encoder starts from ``config.init`` (a segmentation checkpoint's
    'backbone.' weights, or a click-refiner checkpoint's whole weights)."""
    pretrained = config.backbone_weights is not None
    model = models.create_model(ARCHITECTURE, checkpoint=False, pretrained_backbone=pretrained,
                                backbone_weights=config.backbone_weights)
    if config.init:
        header, state = read_checkpoint(config.init)
        if header.get("architecture") == ARCHITECTURE:
            load_into(model, state, config.init, ARCHITECTURE)
        else:
            encoder = {k[len("backbone."):]: v.float() for k, v in state.items() if k.startswith("backbone.")}
            missing, unexpected = model.encoder.load_state_dict(encoder, strict=False)
            if unexpected or len(missing) == len(model.encoder.state_dict()):
                raise UserError(f"{config.init}: its 'backbone.' weights do not fit the refiner's "
                                f"EfficientNet-Lite0 encoder ({len(unexpected)} unexpected, {len(missing)} missing)")
    return model


def build_teachers(config: ClickTrainConfig, tasks, device) -> Dict[str, List[Tuple[nn.Module, object]]]:
    """The shipped networks whose masks start the simulation, per task, with their cards."""
    out = {}
    for task in tasks:
        out[task] = []
        for name in config.teachers.get(task, ()):
            net = models.create_model(name).to(device).eval()
            for p in net.parameters():
                p.requires_grad_(False)
            out[task].append((net, models.get_card(name)))
    return out


@torch.no_grad()
def teacher_probability(teacher, x: torch.Tensor) -> torch.Tensor:
    """A teacher's probability on Bx3xHxW [0, 1] images, at their size."""
    net, card = teacher
    side = card.input_size
    inp = torch.nn.functional.interpolate(x, size=(side, side), mode="bilinear", align_corners=False)
    logits = net(normalise(inp, card))["logits"].float()
    return torch.sigmoid(torch.nn.functional.interpolate(logits, size=x.shape[-2:], mode="bilinear",
                                                          align_corners=False))


def refiner_input(x: torch.Tensor, mask: torch.Tensor, clicks: torch.Tensor) -> torch.Tensor:
    """The refiner's 6 channels: normalised image, current mask, positive and negative discs."""
    card = models.base_card(ARCHITECTURE)
    return torch.cat([normalise(x, card), mask, click_maps(clicks, x.shape[-2:])], 1)


def no_clicks(n: int, device) -> torch.Tensor:
    """[n, 1, 3] clicks of sign 0: the refiner reads empty click discs."""
    return torch.zeros(n, 1, 3, dtype=torch.long, device=device)


# -- one training step ------------------------------------------------------------------------

class Simulator:
    """Batches, start masks and simulated clicks for one run (seeded)."""

    def __init__(self, config: ClickTrainConfig, sets: List[ClickSet], teachers, device):
        self.config, self.sets, self.teachers, self.device = config, sets, teachers, device
        self.aug = device_preset(config.augment)
        self.generator = torch.Generator(device=device).manual_seed(config.seed)
        self.rng = np.random.default_rng(config.seed)
        # batches of one task, drawn by the square root of the sets' sizes: the small skin set
        # (144 images beside 810) still gets ~30 % of the steps
        sizes = np.sqrt(np.array([len(s.train_images) for s in sets], dtype=float))
        self.set_weights = sizes / sizes.sum()

    def make_batch(self, step: int):
        """(set, images in [0, 1], truth) of one task, augmented and partly cropped to the lesion."""
        k = int(self.rng.choice(len(self.sets), p=self.set_weights))
        chosen = self.sets[k]
        rows = torch.from_numpy(self.rng.choice(len(chosen.train_images), self.config.batch)).to(self.device)
        seeds = self.rng.integers(0, 2 ** 31, self.config.batch)
        params = torch.from_numpy(np.stack([draw(self.aug, int(s)) for s in seeds]).astype(np.float32))
        x, y = augment_batch(chosen.train_images[rows], chosen.train_masks[rows], params.to(self.device), self.aug)
        crop = torch.rand(len(x), device=self.device, generator=self.generator) < self.config.crop_share
        if bool(crop.any()):
            theta = object_crops(y, self.generator)
            if self.config.focus_share > 0:
                focus = torch.rand(len(x), device=self.device, generator=self.generator) < self.config.focus_share
                theta = torch.where(focus.view(-1, 1, 1), focus_crops(y, self.generator), theta)
            xc, yc = crop_batch(x, y, theta)
            x, y = torch.where(crop.view(-1, 1, 1, 1), xc, x), torch.where(crop.view(-1, 1, 1, 1), yc, y)
        return chosen, x, y

    def start_masks(self, task: str, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        c = self.config
        u = torch.rand(len(x), device=self.device, generator=self.generator).view(-1, 1, 1, 1)
        masks = perturb_masks(y, self.generator)
        teachers = self.teachers.get(task) or []
        if teachers:
            teacher = teachers[int(self.rng.integers(len(teachers)))]
            harder = degrade_for_teacher(x, self.generator) if self.rng.random() < 0.7 else x
            with autocast(self.device, self.config.amp):
                from_teacher = teacher_probability(teacher, harder)
            masks = torch.where((u >= c.empty_share) & (u < c.empty_share + c.teacher_share), from_teacher, masks)
        near = c.empty_share + c.teacher_share
        if c.near_truth_share > 0:
            masks = torch.where((u >= near) & (u < near + c.near_truth_share), near_truth_masks(y, self.generator), masks)
        band = near + c.near_truth_share
        if c.band_share > 0:
            masks = torch.where((u >= band) & (u < band + c.band_share), band_masks(y, self.generator), masks)
        structure = band + c.band_share
        chosen = (u >= structure) & (u < structure + c.structure_share)
        if bool(chosen.any()):  # superpixels on the CPU: only when a sample needs them
            masks = torch.where(chosen, structure_masks(x, y, self.rng, self.generator), masks)
        masks = torch.where(u < c.empty_share, torch.zeros_like(masks), masks)
        binary = torch.rand(len(x), device=self.device, generator=self.generator) < c.binary_share
        return torch.where(binary.view(-1, 1, 1, 1), (masks > 0.5).float(), masks)

    def first_clicks(self, start: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One or two clicks drawn in the start mask's errors (weight depth²): [B, n, 3]."""
        clicks = [self.click(start, y, deepest=False)]
        if self.rng.random() < 0.3:
            clicks.append(self.click(start, y, deepest=False))
        return torch.stack(clicks, 1)

    def click(self, pred: torch.Tensor, y: torch.Tensor, deepest: bool) -> torch.Tensor:
        rows, cols, positive, valid = next_clicks((pred > 0.5).float(), y, deepest, self.generator)
        sign = torch.where(positive, 1, -1) * valid
        return torch.stack([rows, cols, sign], 1)

    def simulate(self, net: nn.Module, x, y, start, amp: bool):
        """The last round's input: earlier rounds run the refiner without gradient. A share
        of batches (``no_click_share``) is instead a deformed true mask and no click."""
        if self.config.no_click_share > 0 and self.rng.random() < self.config.no_click_share:
            return refiner_input(x, masktrack_priors(y, self.generator), no_clicks(len(x), x.device))
        clicks = self.first_clicks(start, y)
        mask = start
        rounds = int(self.rng.integers(0, self.config.max_rounds + 1))
        if rounds:
            was_training = net.training
            net.eval()
            with torch.no_grad(), autocast(self.device, amp):
                for _ in range(rounds):
                    mask = torch.sigmoid(net(refiner_input(x, mask, clicks))["logits"].float())
                    deepest = self.rng.random() < 0.7
                    clicks = torch.cat([clicks, self.click(mask, y, deepest)[:, None]], 1)
            train_mode(net, was_training, self.config.freeze_bn)
        return refiner_input(x, mask, clicks)


def autocast(device, enabled: bool):
    if device.type == "cuda" and enabled:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


def lr_at(config: ClickTrainConfig, step: int, progress: float) -> float:
    """Linear warm-up, then a cosine to 1 % over the run's progress (0..1)."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    return config.lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))


# -- validation ------------------------------------------------------------------------------

@torch.no_grad()
def validate(net: nn.Module, sets: List[ClickSet], teachers, config: ClickTrainConfig, device) -> Dict:
    """Dice after 0..VAL_CLICKS protocol clicks, per set and start (the first teacher's mask,
    and nothing); the share of images the first click made worse; the mean over clicks 1-3."""
    was_training = net.training
    net.eval()
    generator = torch.Generator(device=device).manual_seed(12345)
    out, means = {}, []
    for chosen in sets:
        starts = {"empty": None}
        if teachers.get(chosen.task):
            starts["network"] = teachers[chosen.task][0]
        for start_name, teacher in starts.items():
            per_click, worse = [[] for _ in range(VAL_CLICKS + 1)], []
            n = min(len(chosen.val_images), config.val_limit or len(chosen.val_images))
            for lo in range(0, n, config.val_batch):
                x = chosen.val_images[lo:min(lo + config.val_batch, n)].float() / 255
                y = chosen.val_masks[lo:min(lo + config.val_batch, n)].float()
                mask = torch.zeros_like(y) if teacher is None else teacher_probability(teacher, x)
                per_click[0].append(dice(mask, y))
                clicks = torch.zeros(len(x), 0, 3, dtype=torch.long, device=device)
                for k in range(1, VAL_CLICKS + 1):
                    rows, cols, positive, valid = next_clicks((mask > 0.5).float(), y, True, generator)
                    click = torch.stack([rows, cols, torch.where(positive, 1, -1) * valid], 1)
                    clicks = torch.cat([clicks, click[:, None]], 1)
                    with autocast(device, config.amp):
                        mask = torch.sigmoid(net(refiner_input(x, mask, clicks))["logits"].float())
                    per_click[k].append(dice(mask, y))
                worse.append(per_click[1][-1] < per_click[0][-1] - 1e-6)
            curve = [float(torch.cat(v).mean()) for v in per_click]
            key = f"{chosen.task}/{start_name}"
            out[key] = {"dice": [round(v, 4) for v in curve], "n": n,
                        "first_click_worse": round(float(torch.cat(worse).float().mean()), 4)}
            means.append(float(np.mean(curve[1:4])))
        if config.no_click_share > 0:
            out[f"{chosen.task}/no-click"] = no_click_scores(net, chosen, config, device, generator)
            means.append(out[f"{chosen.task}/no-click"]["refined"])
    train_mode(net, was_training, config.freeze_bn)
    out["score"] = round(float(np.mean(means)), 5)
    return out


def no_click_scores(net: nn.Module, chosen: ClickSet, config: ClickTrainConfig, device, generator) -> Dict:
    """Dice of seeded deformed true masks (``masktrack_priors``) before and after one refiner
    pass with no click: how well the refiner carries a mask to the next frame."""
    priors, refined = [], []
    n = min(len(chosen.val_images), config.val_limit or len(chosen.val_images))
    for lo in range(0, n, config.val_batch):
        x = chosen.val_images[lo:min(lo + config.val_batch, n)].float() / 255
        y = chosen.val_masks[lo:min(lo + config.val_batch, n)].float()
        prior = masktrack_priors(y, generator)
        with autocast(device, config.amp):
            mask = torch.sigmoid(net(refiner_input(x, prior, no_clicks(len(x), device)))["logits"].float())
        priors.append(dice(prior, y))
        refined.append(dice(mask, y))
    return {"prior": round(float(torch.cat(priors).mean()), 4), "refined": round(float(torch.cat(refined).mean()), 4),
            "n": n}


# -- the run ----------------------------------------------------------------------------------

def _header_training(config: ClickTrainConfig, sets: List[ClickSet], step: int, elapsed: float) -> dict:
    return {"data": [s.folder for s in sets], "tasks": [s.task for s in sets], "size": config.size,
            "steps": step, "batch": config.batch, "wall_time_s": round(elapsed, 1), "command": config.command,
            "val_stems": {s.task: s.val_stems for s in sets}, "split": "split_stems(stems, 0.1, seed 0)",
            "recipe": {k: getattr(config, k) for k in ("lr", "max_rounds", "crop_share", "focus_share", "empty_share",
                                                       "teacher_share", "near_truth_share", "band_share", "structure_share", "no_click_share", "binary_share", "freeze_bn", "augment", "init")},
            "teachers": {k: list(v) for k, v in config.teachers.items()}}


def _save(net, path, config, sets, step, elapsed, metrics):
    save_checkpoint(net, path, architecture=ARCHITECTURE, variant={"variant": "efficientnet_lite0"},
                    training=_header_training(config, sets, step, elapsed), metrics=metrics)


def train_clicks(config: ClickTrainConfig) -> dict:
    """Run (or resume) a training run; returns the best validation metrics and paths."""
    if config.threads:
        torch.set_num_threads(config.threads)
    device = resolve_device(config.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    torch.manual_seed(config.seed)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    sets = load_sets(config, device)
    net = build_refiner(config).to(device)
    train_mode(net, True, config.freeze_bn)
    teachers = build_teachers(config, {s.task for s in sets}, device)
    sim = Simulator(config, sets, teachers, device)
    optimizer = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=config.lr,
                                  weight_decay=config.weight_decay)
    step, spent, best = 0, 0.0, {"score": -1.0}
    if config.resume and (out / STATE_FILE).is_file():
        step, spent, best = _resume(net, optimizer, out, sim)
        say(f"resumed at step {step} ({spent / 60:.1f} min spent, best {best.get('score')})")
    say(f"training the click refiner on {device} (batch {config.batch}, size {config.size})")
    budget_s = config.minutes * 60 if config.minutes else None
    run_started = time.monotonic() - spent
    losses = []
    while True:
        elapsed = time.monotonic() - run_started
        progress = elapsed / budget_s if budget_s else step / config.steps
        done = progress >= 1.0 or (config.max_steps is not None and step >= config.max_steps)
        if done or (step and step % config.val_every == 0):
            metrics = validate(net, sets, teachers, config, device)
            metrics["loss"] = round(float(np.mean(losses)), 5) if losses else None
            losses = []
            _save(net, out / "last.pt", config, sets, step, elapsed, metrics)
            if metrics["score"] > best["score"]:
                best = dict(metrics, step=step)
                _save(net, out / "best.pt", config, sets, step, elapsed, metrics)
            _save_state(optimizer, out, step, elapsed, best, sim)
            say(f"step {step} ({elapsed / 60:.1f} min): {json.dumps(metrics)}")
        if done:
            break
        for group in optimizer.param_groups:
            group["lr"] = lr_at(config, step, progress)
        chosen, x, y = sim.make_batch(step)
        start = sim.start_masks(chosen.task, x, y)
        inputs = sim.simulate(net, x, y, start, config.amp)
        with autocast(device, config.amp):
            logits = net(inputs)["logits"].float()
        loss = bce_dice(logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(net.parameters(), 5.0)
        optimizer.step()
        losses.append(float(loss.detach()))
        step += 1
    say(f"done: {step} steps in {(time.monotonic() - started) / 60:.1f} min; best {json.dumps(best)}")
    return {"best": best, "best_checkpoint": str(out / "best.pt"), "steps": step}


def _save_state(optimizer, out: Path, step: int, elapsed: float, best: dict, sim: Simulator) -> None:
    state = {"optimizer": optimizer.state_dict(), "step": step, "elapsed": elapsed,
             "best": json.dumps(best), "rng": json.dumps(sim.rng.bit_generator.state),
             "generator": sim.generator.get_state().cpu()}
    tmp = out / (STATE_FILE + ".tmp")
    torch.save(state, tmp)
    tmp.replace(out / STATE_FILE)


def _resume(net, optimizer, out: Path, sim: Simulator):
    header, state = read_checkpoint(out / "last.pt", expected_architecture=ARCHITECTURE)
    load_into(net, state, out / "last.pt", ARCHITECTURE)
    saved = torch.load(out / STATE_FILE, map_location="cpu", weights_only=True)
    optimizer.load_state_dict(saved["optimizer"])
    sim.rng.bit_generator.state = json.loads(saved["rng"])
    sim.generator.set_state(saved["generator"])
    return int(saved["step"]), float(saved["elapsed"]), json.loads(saved["best"])
