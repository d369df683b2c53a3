"""Model registry, in the spirit of timm's ``register_model``.

Each architecture file registers a builder function together with its
:class:`ModelCard` (defined in ``models/_card.py``, written in ``models/cards.py``) that
says what the network expects (input size, normalisation) and where it comes from
(paper, backbone). The card's
checkpoint fields are filled in at lookup time from the checkpoint that
``create_model(name)`` would load, so a card never claims a training run that
is not on disk.
"""
from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass
from typing import Callable, Dict, Optional

# IMAGENET_MEAN/STD: architecture files import them from here, beside register_model
from ._card import IMAGENET_MEAN, IMAGENET_STD, SEGMENTER, ModelCard  # noqa: F401
from .cards import CARDS, module_of


@dataclass(frozen=True)
class _Entry:
    builder: Callable
    card: ModelCard


_REGISTRY: Dict[str, _Entry] = {}


def register_model(card: ModelCard) -> Callable:
    """Decorator: ``@register_model(cards.NAME)`` over a builder, in the architecture file.

    The builder takes ``pretrained_backbone: bool``, ``backbone_weights`` (a local
    file/folder or None) and the variant keyword arguments, and returns an
    ``nn.Module`` whose forward returns ``{"logits", "attention", ...}``.
    """

    def wrap(builder: Callable) -> Callable:
        if CARDS.get(card.name) is not card:
            raise ValueError(f"model {card.name!r}: register its card in models/cards.py")
        if card.name in _REGISTRY:
            raise ValueError(f"model {card.name!r} is registered twice")
        _REGISTRY[card.name] = _Entry(builder, card)
        return builder

    return wrap


def list_models(kind: Optional[str] = SEGMENTER) -> list:
    """Registered network names of one kind (default: the segmentation networks); ``None``: all."""
    return sorted(name for name, card in CARDS.items() if kind is None or card.kind == kind)


def get_entry(name: str) -> _Entry:
    """The network's builder and card; imports its architecture file (and torch) on first use."""
    if name not in _REGISTRY:
        base_card(name)  # an unknown name: the message lists the known ones
        importlib.import_module(f"{__package__}.{module_of(name)}")
    return _REGISTRY[name]


def base_card(name: str) -> ModelCard:
    try:
        return CARDS[name]
    except KeyError:
        raise KeyError(_unknown(name, None)) from None


class UnknownModelError(ValueError):
    """A network name the user typed that no card has (one line for the user, no traceback)."""


def check_model_name(name: str, kind: Optional[str] = SEGMENTER) -> None:
    """The one check of a network name a user typed (a command's ``--model``, the app's Python
    entry): an unknown one is one line naming the choices, before any data, weights or torch
    are loaded."""
    if name not in list_models(kind):
        raise UnknownModelError(_unknown(name, kind))


def _unknown(name: str, kind: Optional[str]) -> str:
    return f"unknown model {name!r}; available: {', '.join(list_models(kind))}"


# the card fields a checkpoint header's "profile" (napari_polyp.bench.checkpoint_profile) may state
_PROFILE_FIELDS = {"params": int, "gflops": float, "cpu_ms": float, "backbone": str}


def _measured_fields(header: dict) -> dict:
    """The well-typed fields of the header's profile (a header comes from a file: trust no type)."""
    profile = header.get("profile")
    if not isinstance(profile, dict):
        return {}
    fields = {}
    for key, kind in _PROFILE_FIELDS.items():
        value = profile.get(key)
        numeric = isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0
        if (kind is str and isinstance(value, str)) or (kind is not str and numeric):
            fields[key] = kind(value)
    return fields


def card_with_checkpoint(card: ModelCard, path: Optional[str], header: Optional[dict]) -> ModelCard:
    if path is None or header is None:
        return card
    training = header.get("training", {})
    # the checkpoint's own variant, measured when it was shipped, outranks the card's default variant
    return dataclasses.replace(
        card,
        **_measured_fields(header),
        # a network runs at the size it was trained at
        input_size=int(training.get("size") or card.input_size),
        checkpoint=str(path),
        checkpoint_sha256=header.get("sha256", ""),
        checkpoint_variant=dict(header["variant"]) if isinstance(header.get("variant"), dict) else {},
        training=dict(header.get("training", {}), metrics=header.get("metrics", {})),
    )
