"""How sure a mean over a few images is: bootstrap intervals for the figures this project reports.

The sets are small (etis20 and cvc612-seq n = 20, PH2 validation 16, a clinic's 20 corrections),
and one image moves a mean by up to 0.05 there, or NoC@90 over 90 images by 0.2: a figure
without its interval invites reading one image's luck as progress (docs/benchmarks.md,
"Intervals"). Both functions resample images, the unit that varies from one set to the next.

- :func:`mean_interval`: a mean and its interval (BCa bootstrap, Efron 1987, through
  ``scipy.stats.bootstrap``: it corrects the percentile interval for the skew of small sets of
  bounded scores, where a hand-written percentile bootstrap would not).
- :func:`paired_interval`: the mean change from ``before`` to ``after`` on the same images and its
  interval (the images resampled as pairs: the spread between images cancels, which is what
  makes two methods on one set comparable at all).
- ``groups``: frames of one scene are not independent (etis20 is four scenes, cvc612-seq one), so
  both can resample whole scenes instead (a cluster bootstrap, percentile ends): the interval of a
  centre's scenes, not of its frames. Under two scenes there is none. :func:`scene_groups` finds the
  scenes as the fine-tune's folds do (``finetune_rules.scene_runs``).

Seeded, so a benchmark prints the same interval twice. What an interval cannot know: failures
the set does not hold. A failure that strikes one image in twenty is absent from a third of the
sets of 20 (0.95^20 = 0.36), and their intervals sit above the true mean (etis20's seven failed frames are one scene's:
its interval is of those 20 frames, not of the centre).
"""
from __future__ import annotations

import math
import warnings
from typing import List, NamedTuple, Optional, Sequence

import numpy as np

LEVEL = 0.95
RESAMPLES = 4000  # the BCa interval's ends move by under 0.002 Dice between seeds at n = 20
SEED = 0


class Interval(NamedTuple):
    """A mean over ``n`` items and its ``level`` interval (``low`` = ``high`` = mean when every item
    is the same; NaN ends when fewer than two items)."""

    mean: float
    low: float
    high: float
    n: int
    level: float = LEVEL
    groups: int = 0  # scenes resampled whole (0: the items, each on its own)

    def excludes_zero(self) -> bool:
        """For a paired change: the whole interval lies on one side of no change."""
        return self.low > 0 or self.high < 0

    def format(self, digits: int = 3, signed: bool = False) -> str:
        """``0.690 [0.571, 0.795]``; ``signed`` for a change (``+0.012 [-0.004, +0.030]``)."""
        spec = f"{'+' if signed else ''}.{digits}f"
        scenes = f" in {self.groups} scene{'s' if self.groups != 1 else ''}" if self.groups else ""
        if not math.isfinite(self.low):
            return f"{self.mean:{spec}} (n = {self.n}{scenes}: no interval)"
        return f"{self.mean:{spec}} [{self.low:{spec}}, {self.high:{spec}}]"

    def as_dict(self, digits: int = 4) -> dict:
        """For JSON: rounded, and an end that does not exist as null (JSON has no NaN)."""
        def number(value: float):
            return round(value, digits) if math.isfinite(value) else None

        record = {"mean": number(self.mean), "low": number(self.low), "high": number(self.high),
                  "n": self.n, "level": self.level}
        return {**record, "groups": self.groups} if self.groups else record

    @classmethod
    def from_dict(cls, record: dict) -> "Interval":
        """The inverse of :meth:`as_dict` (null ends back to NaN)."""
        def number(key: str) -> float:
            value = record.get(key)
            return float("nan") if value is None else float(value)

        return cls(number("mean"), number("low"), number("high"), int(record["n"]),
                   float(record.get("level", LEVEL)), int(record.get("groups", 0)))


def mean_interval(values: Sequence[float], level: float = LEVEL, resamples: int = RESAMPLES,
                  seed: int = SEED, groups: Optional[Sequence] = None) -> Interval:
    """The mean of ``values`` and its BCa bootstrap interval at ``level``; with ``groups`` (a scene
    label per value), whole scenes resampled instead (:func:`_scene_interval`)."""
    data = _finite(values)
    if groups is not None:
        return _scene_interval(data, groups, level, resamples, seed)
    mean = float(data.mean()) if data.size else float("nan")
    if data.size < 2:
        return Interval(mean, float("nan"), float("nan"), int(data.size), level)
    if np.ptp(data) == 0:  # every item the same: nothing to resample (BCa divides by the spread)
        return Interval(mean, mean, mean, int(data.size), level)
    from scipy.stats import bootstrap

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a degenerate jackknife falls back to NaN ends, handled below
        result = bootstrap((data,), np.mean, confidence_level=level, n_resamples=resamples,
                           method="BCa", random_state=np.random.default_rng(seed), vectorized=True)
    low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
    if not (math.isfinite(low) and math.isfinite(high)):  # a few distinct values: the plain percentile ends
        draws = np.random.default_rng(seed).choice(data, size=(resamples, data.size)).mean(axis=1)
        low, high = (float(v) for v in np.quantile(draws, [(1 - level) / 2, (1 + level) / 2]))
    return Interval(mean, min(low, mean), max(high, mean), int(data.size), level)


def paired_interval(before: Sequence[float], after: Sequence[float], level: float = LEVEL,
                    resamples: int = RESAMPLES, seed: int = SEED, groups: Optional[Sequence] = None) -> Interval:
    """The mean of ``after - before`` over the same items, in the same order, and its interval."""
    before, after = np.asarray(before, float), np.asarray(after, float)
    if before.shape != after.shape:
        raise ValueError(f"paired figures need the same items: {before.size} before, {after.size} after")
    return mean_interval(after - before, level=level, resamples=resamples, seed=seed, groups=groups)


def _scene_interval(data: np.ndarray, groups: Sequence, level: float, resamples: int, seed: int) -> Interval:
    """Cluster bootstrap: draw as many scenes as there are, with replacement, and take the mean over
    every item of the drawn scenes (scenes of many frames weigh more, as in the plain mean);
    percentile ends (BCa needs a jackknife over scenes, unstable with a handful of them)."""
    labels = list(groups)
    if len(labels) != data.size:
        raise ValueError(f"one scene label per item: {len(labels)} labels for {data.size} items")
    mean = float(data.mean()) if data.size else float("nan")
    names = sorted(set(labels), key=labels.index)
    index = np.array([names.index(label) for label in labels])
    sums, counts = np.bincount(index, weights=data, minlength=len(names)), np.bincount(index, minlength=len(names))
    if len(names) < 2:
        return Interval(mean, float("nan"), float("nan"), int(data.size), level, len(names))
    draws = np.random.default_rng(seed).integers(0, len(names), size=(resamples, len(names)))
    means = sums[draws].sum(axis=1) / counts[draws].sum(axis=1)
    low, high = (float(v) for v in np.quantile(means, [(1 - level) / 2, (1 + level) / 2]))
    return Interval(mean, min(low, mean), max(high, mean), int(data.size), level, len(names))


def scene_groups(stems: Sequence[str], images: Sequence[np.ndarray]) -> List[int]:
    """A scene number for each item: ``stems`` in their natural order (frame10 after frame9) cut into
    runs of alike neighbours, as the fine-tune's folds cut a clinic's frames (``finetune_rules``)."""
    from .finetune_rules import item_looks, natural_key, scene_runs

    order = sorted(range(len(stems)), key=lambda i: natural_key(stems[i]))
    ordered = [stems[i] for i in order]
    looks = item_looks(ordered, [images[i] for i in order])
    scene_of = {stem: number for number, run in enumerate(scene_runs(ordered, looks)) for stem in run}
    return [scene_of[stem] for stem in stems]


def _finite(values: Sequence[float]) -> np.ndarray:
    data = np.asarray(list(values), dtype=float).ravel()
    if not np.all(np.isfinite(data)):
        raise ValueError("a figure to bootstrap must be finite for every item (a NaN or inf score is a bug upstream)")
    return data
