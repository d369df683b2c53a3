"""The model card: what a network is, expects and costs, as plain data (no torch).

In its own module, below the cards (``models/cards.py``) and the registry
(``models/_registry.py``): the registry reads the cards, and the cards need nothing of the
registry, so neither imports the other.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Dict, Tuple

# what a card's ``kind`` says the network does
SEGMENTER, CLICK_REFINER = "segmenter", "click-refiner"

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
    display_name: str = ""  # how the app names it ("EA-DK", "MicroAUNet"); "" -> the name
    # SEGMENTER: image -> mask (the five networks the app offers); CLICK_REFINER: image, current
    # mask and the user's clicks -> mask (``napari_polyp.corrections.clicks``)
    kind: str = SEGMENTER
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
