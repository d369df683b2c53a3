"""A second network checks the first one's mask, and overrules it only where they see entirely different things.

    predictor = SecondOpinion(Predictor("ea-dk", tta=True), Predictor("dino-keys"))
    prediction = predictor.predict(image)   # EA-DK's mask, unless DINO-keys sees none of it
    prediction.second_opinion               # "dino-keys agrees" / "dino-keys overruled ea-dk: ..."

At another centre the default network can be sure of the wrong thing: at etis20 EA-DK takes a lump
of yellow debris for the polyp in six consecutive frames (Dice 0 on each), where DINO-keys, on
DINOv2's self-supervised keys, finds the flat polyp beside it. Averaging the two networks'
probabilities trades the home figure for the other centre's (docs/generalisation.md). The second
opinion changes nothing where they agree at all: only when none of the first network's regions is
one the second sees (its mean probability there under :data:`SEEN`) is the mask the second
network's, boundary and all; where the second sees nothing either, the first network's answer stands.
The same predictor serves the Segment tab, ``napari-polyp predict --second-opinion``, ``evaluate``
and ``benchmarks/generalisation.py``.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
from scipy import ndimage

from ..conventions import DEFAULT_THRESHOLD
from .prediction import Prediction, PredictorBase, TTA_FLIPS, binary_mask

# A region of the first network's mask is one the second network "sees" where the second's mean
# probability over it reaches this. Measured with EA-DK (+TTA) checked by DINO-keys: 0.15-0.25 leave
# Kvasir-SEG validation and cvc612-seq as they are and move one etis20 frame (0.2 and 0.25 alike); from
# 0.3 it overrules EA-DK on Kvasir-SEG images where DINO-keys is merely unsure (docs/generalisation.md,
# "A second opinion").
SEEN = 0.2
AGREES = "agrees"  # how ``checked`` ends its words where the first network's mask stands
_EIGHT = np.ones((3, 3), bool)  # regions of a mask are 8-connected, as in ``corrections.cleanup``


def overrules(first: np.ndarray, second: np.ndarray, threshold: float = DEFAULT_THRESHOLD,
              seen: float = SEEN) -> bool:
    """Whether the second network's probability (HxW) overrules the first's: the second finds
    something, and none of the first's regions (at ``threshold``) has a mean second-network
    probability of ``seen`` or more. An empty first mask has no region the second sees."""
    second_mask = binary_mask(second, threshold).astype(bool)
    if not second_mask.any():
        return False
    regions, count = ndimage.label(binary_mask(first, threshold), structure=_EIGHT)
    if count == 0:
        return True
    means = ndimage.mean(np.asarray(second, np.float32), regions, np.arange(1, count + 1))
    return bool(np.max(means) < seen)


def checked(first: Prediction, second: Prediction, threshold: float = DEFAULT_THRESHOLD) -> Prediction:
    """The first prediction, or the second's probability where it overrules it (:func:`overrules`);
    either way with ``second_opinion`` saying which happened. The rest stays the first network's:
    its name and checkpoint (the checked pair stands for it; ``second_opinion`` names the other)
    and its attention maps, which show where it looked when it was overruled."""
    if not overrules(first.probability, second.probability, threshold):
        return replace(first, second_opinion=f"{second.model} {AGREES}",
                       seconds=first.seconds + second.seconds)
    said = (f"{second.model} overruled {first.model}: it sees none of {first.model}'s mask"
            if binary_mask(first.probability, threshold).any() else
            f"{second.model} found what {first.model} did not")
    return replace(first, probability=second.probability, second_opinion=said, overruled=True,
                   seconds=first.seconds + second.seconds)


def fits(first_card, second_card, tta: bool, max_cpu_ms: float = None) -> bool:
    """Whether the check is on by default: both networks (the first's TTA views counted) still
    answer within the default network's budget on one CPU thread (``models.MAX_DEFAULT_CPU_MS``),
    as for TTA (``prediction.tta_fits``)."""
    if max_cpu_ms is None:
        from models import MAX_DEFAULT_CPU_MS as max_cpu_ms
    views = len(TTA_FLIPS) if tta else 1
    return first_card.cpu_ms * views + second_card.cpu_ms <= max_cpu_ms


def default_check(card, tta: bool) -> str:
    """The network that checks ``card``'s masks by default, "" none: its task's checking network
    (``models.second_opinion_for``) where ``card`` is trained and both fit the budget (:func:`fits`).
    The Segment tab's default for a network's own checkpoint, and the benchmarks' start."""
    import models

    second = models.second_opinion_for(card.name)
    if second is None or not card.trained or not fits(card, models.get_card(second), tta):
        return ""
    return second


def with_second_opinion(predictor, device: str = "auto", engine=None, threads=None) -> "SecondOpinion":
    """``predictor`` checked by its task's checking network (``models.second_opinion_for``) with
    its default checkpoint, served as the app serves it; a UserError where there is none."""
    import models

    from ..errors import UserError
    from .predictors import default_predictor_factory

    second = models.second_opinion_for(predictor.model_name)
    if second is None:
        raise UserError(f"no network checks {predictor.model_name}'s masks: a second opinion is there for "
                        + ", ".join(f"{task} networks ({name})" for task, name in models.SECOND_OPINION.items())
                        + " other than the checking network itself, when it has a trained checkpoint")
    return SecondOpinion(predictor, default_predictor_factory(second, str(models.default_checkpoint(second)), device,
                                                              engine=engine, threads=threads))


class SecondOpinion(PredictorBase):
    """A predictor whose masks the ``second`` predictor checks (:func:`checked`). It stands for the
    first one: its name, card, checkpoint and engine are the first network's. The two may be any
    predictors (built, served, or a test's own with ``predict(image)`` alone)."""

    def __init__(self, first, second):
        self.first, self.second = first, second

    def __getattr__(self, name):  # model_name, card, checkpoint_sha256, engine, tta, ...: the first's
        if name in ("first", "second"):
            raise AttributeError(name)
        return getattr(self.first, name)

    def warm_up(self) -> None:
        for member in (self.first, self.second):
            if hasattr(member, "warm_up"):
                member.warm_up()

    def predict(self, image: np.ndarray, attention: bool = True) -> Prediction:
        asked = {} if attention else {"attention": False}
        return checked(self.first.predict(image, **asked), self.second.predict(image, **asked))

    def _predict_rgb(self, images: np.ndarray, attention: bool) -> list:  # predict_batch: a video's frames
        firsts, seconds = (_batch(member, images, attention) for member in (self.first, self.second))
        return [checked(a, b) for a, b in zip(firsts, seconds)]


def _batch(predictor, images: np.ndarray, attention: bool) -> list:
    if hasattr(predictor, "predict_batch"):
        return predictor.predict_batch(images, attention=attention)
    return [predictor.predict(image) for image in images]
