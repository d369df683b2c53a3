"""Model registry and model cards, in the spirit of timm's ``register_model``.

Each architecture file registers a builder function together with a
:class:`ModelCard` that says what the network expects (input size,
normalisation) and where it comes from (paper, backbone). The card's
checkpoint fields are filled in at lookup time from the checkpoint that
``create_model(name)`` would load, so a card never claims a training run that
is not on disk.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Callable, Dict, Optional, Tuple

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ModelCard:
    name: str
    title: str
    arxiv: str  # arXiv id, or venue where there is none
    task: str  # "polyp" | "skin" | "any" (a click refiner serves both)
    input_size: int  # native square input side in pixels
    normalization: str = "imagenet"  # "imagenet": (x-mean)/std; "minmax": per-image min-max to [0,1]
    mean: Tuple[float, float, float] = IMAGENET_MEAN
    std: Tuple[float, float, float] = IMAGENET_STD
    backbone: str = "none"
    params: int = 0  # default variant, counted (tests check it)
    gflops: float = 0.0  # default variant at input_size, batch 1, measured by `napari-polyp bench`
    # median latency of the default variant at input_size, batch 1, one CPU thread, on the
    # project's reference machine (2-core x86-64; `benchmarks/bench_all.py`): picks defaults
    cpu_ms: float = 0.0
    variants: Tuple[str, ...] = ()
    default_variant: str = ""
    attention_maps: Tuple[str, ...] = ()
    notes: str = ""
    # SEGMENTER: image -> mask (the five networks the app offers); CLICK_REFINER: image, current
    # mask and the user's clicks -> mask (``napari_polyp.corrections.clicks``)
    kind: str = "segmenter"
    # variant arguments a checkpoint that does not name them was trained with (an older layout)
    legacy_checkpoint_variant: Dict = field(default_factory=dict)
    # filled from the checkpoint that create_model(name) loads by default
    checkpoint: str = "untrained"  # path, or "untrained"
    checkpoint_sha256: str = ""
    training: Dict = field(default_factory=dict)  # data, epochs, wall time, metrics
    checkpoint_variant: Dict = field(default_factory=dict)  # the variant arguments the checkpoint was built with

    @property
    def trained(self) -> bool:
        return self.checkpoint != "untrained"

    @property
    def validation_dice(self) -> float:
        dice = self.training.get("metrics", {}).get("dice")
        return float(dice) if isinstance(dice, (int, float)) else float("nan")

    @property
    def other_centre_scores(self) -> Dict[str, float]:
        """{set: Dice} at other centres (etis20, cvc612-seq: never trained on), as the shipped
        checkpoint's header records them (benchmarks/ship_checkpoint.py); {} when it records none."""
        sets = self.training.get("metrics", {}).get("other_centres")
        if not isinstance(sets, dict):
            return {}
        return {str(name): float(v["dice"]) for name, v in sets.items()
                if isinstance(v, dict) and isinstance(v.get("dice"), (int, float)) and not isinstance(v["dice"], bool)}

    @property
    def other_centre_dice(self) -> float:
        """The mean of :attr:`other_centre_scores` (NaN without figures)."""
        scores = list(self.other_centre_scores.values())
        return sum(scores) / len(scores) if scores else float("nan")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def summary(self) -> str:
        """One short paragraph for a widget tooltip or `napari-polyp models`."""
        state = "trained" if self.trained else "untrained: predictions are not meaningful"
        dice = self.training.get("metrics", {}).get("dice")
        quality = f", validation Dice {dice:.3f}" if isinstance(dice, float) else ""
        elsewhere = self.other_centre_scores
        if elsewhere:
            quality += ", other centres " + ", ".join(f"{k} {v:.3f}" for k, v in elsewhere.items())
        named = self.checkpoint_variant.get("variant")
        variant = f"variant {named}; " if named and named != self.default_variant else ""
        return (
            f"{self.title} ({self.arxiv}); task: {self.task}; input {self.input_size}px; {variant}"
            f"backbone: {self.backbone}; {self.params / 1e6:.3g} M params; "
            f"{self.gflops:.3g} GFLOPs; {state}{quality}"
        )


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
    from .cards import CARDS

    def wrap(builder: Callable) -> Callable:
        if CARDS.get(card.name) is not card:
            raise ValueError(f"model {card.name!r}: register its card in models/cards.py")
        if card.name in _REGISTRY:
            raise ValueError(f"model {card.name!r} is registered twice")
        _REGISTRY[card.name] = _Entry(builder, card)
        return builder

    return wrap


SEGMENTER, CLICK_REFINER = "segmenter", "click-refiner"


def list_models(kind: Optional[str] = SEGMENTER) -> list:
    """Registered network names of one kind (default: the segmentation networks); ``None``: all."""
    from .cards import CARDS

    return sorted(name for name, card in CARDS.items() if kind is None or card.kind == kind)


def get_entry(name: str) -> _Entry:
    """The network's builder and card; imports its architecture file (and torch) on first use."""
    if name not in _REGISTRY:
        import importlib

        from .cards import module_of

        base_card(name)  # an unknown name: the message lists the known ones
        importlib.import_module(f"{__package__}.{module_of(name)}")
    return _REGISTRY[name]


def base_card(name: str) -> ModelCard:
    from .cards import CARDS

    try:
        return CARDS[name]
    except KeyError:
        raise KeyError(
            f"unknown model {name!r}; available: {', '.join(list_models(None))}"
        ) from None


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
