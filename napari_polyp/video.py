"""Carry the masks a person fixed on a few key frames through the rest of a video.

    from napari_polyp.video import propagate
    masks = propagate(frames, key_masks, probabilities=None)  # list of HxW bool, one per frame
    masks.sources[i], masks.confidence[i], masks.quality[i], masks.stops, masks.summary()

``frames``: a sequence or lazy array (``napari_polyp.io.video.VideoFrames``, numpy, dask) of
HxWx3 uint8, read one frame at a time; ``key_masks``: {frame index: HxW bool}, the frames a
person fixed, returned as given; ``probabilities`` (optional): the per-frame network's HxW
probability for every frame (a sequence or lazy array), fused in and used for the quality score.

Every other frame is filled by carrying the nearest keys' masks forward and backward, one
frame at a time (MaskTrack's idea, Perazzi et al. 2017):

1. dense optical flow (OpenCV DIS, medium preset) between the two frames, on grey frames
   downscaled so their longer side is ``FLOW_SIDE`` px, in the mask's box grown by
   ``FLOW_MARGIN``; the previous frame's probability is warped by it. The flow's *match* is
   the correlation of the current frame with the previous one moved by the flow, around the
   warped mask;
2. where the match is below ``refine_below`` (``NCC_HIGH``), the click refiner
   (``models/click_refiner.py``) refines the warped mask with no clicks (the warped mask its
   prior, a crop around it as the click session's zoom-in), mixed with the warped mask in
   proportion to the match (refined alone below ``REFINE_ONLY``). Where the flow matches
   well the refiner is not run: with no clicks it pulls any prior towards its own estimate,
   which costs a good prior a few points of Dice (``benchmarks/propagate.py --refiner-check``);
3. optionally the per-frame network's probability is blended in (``fuse``).

Between two keys both directions reach every frame; they are blended by distance (the nearer
key weighs more), each weighted by its confidence (the product of its steps' matches), as
signed distances to the masks' borders (:func:`blend`). A direction stops, and the result
says so (``stops``): at a scene cut (the colour histograms of two consecutive frames differ by
more than ``CUT_DISTANCE``), where its confidence falls below ``min_confidence`` (off by
default), where the mask vanishes, and, when the network's ``probabilities`` are given to take
over, at a step whose match is below ``min_match`` (the frame does not look like the previous
one moved). Without them the first such step is carried on at confidence 0 (the refiner alone
decides the frame) and the result says so too (``doubts``): an empty frame is the worst answer,
and a frame at confidence 0 comes first in review; a second such step stops the direction. A
frame between two keys that one direction reached past such a step is at confidence 0 too where
the other, itself unsure (below ``SURE``), disagrees with it (Dice below ``DIRECTIONS_AGREE``). A
frame that no direction reaches takes the network's mask when ``probabilities`` are given, else
stays empty; ``sources`` says which.

The result is a :class:`Propagation`: a plain list of HxW bool masks with, per frame, where
its mask came from, its confidence and a quality score without ground truth
(:func:`frame_quality`; ``worst_first`` orders the filled frames for review).
:func:`smooth_probabilities` smooths a whole video's per-frame probabilities in time.
"""
from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from .conventions import DEFAULT_THRESHOLD
from .inference.flow import FLOW_SIDE, FlowWarp, grey, small_rgb
from .errors import UserError

CUT_DISTANCE = 0.6  # Bhattacharyya distance of two consecutive frames' colour histograms: above, a cut
MIN_CONFIDENCE = 0.0  # a direction stops once its confidence (product of its steps' matches) is below
MIN_MATCH = 0.5  # with the network to take over, a direction stops at a step whose flow match is below
# (a correlation around the mask); without it, it carries on past one such step: on cvc612-seq the frame
# after a jump scored 0.84 carried, 0 empty; past two, 0.00 (docs/video_propagation.md, "Carrying on past a jump")
THRESHOLD = DEFAULT_THRESHOLD  # a propagated probability at or above it is the mask
MIN_AREA_SHARE = 2e-5  # a carried mask smaller than this share of the frame has vanished
MAX_SEGMENT_BYTES = 1 << 30  # a segment's forward probabilities kept for the blend (uint8), at most
NCC_LOW, NCC_HIGH = 0.5, 0.95  # flow match (correlation around the mask): no trust .. full trust
SMOOTH_WEIGHT = 0.5  # temporal smoothing: the warped previous probability's share at a perfect match
BLEND_SOFTNESS = 1.0  # px of signed distance: the blended shape's probability ramp
REFINE_ONLY = 0.8  # below this match the refined mask replaces the warped one; above, they are mixed
DIRECTIONS_AGREE, SURE = 0.5, 0.5  # a frame between two keys is doubtful (confidence 0) where one direction
# reached it past a jump, the other at a confidence under SURE, and their masks overlap under DIRECTIONS_AGREE
# (Dice): the blend follows the unsure one, which nothing bears out (cvc612-seq, keys 5 and 19: frames 13
# and 14 blended to 0.07 and 0.31 Dice at confidence > 0, and Accept range took them)


@dataclass(frozen=True)
class Stop:
    """Where one direction of propagation stopped, and why."""

    key: int  # the key frame whose mask it carried (numbered as ``propagate``'s ``frame_numbers``)
    direction: str  # "forward" | "backward"
    frame: int  # the first frame it did not fill
    reason: str  # "scene cut" | "low confidence" | "mask vanished"
    detail: str = ""

    def message(self) -> str:
        return (f"propagation {self.direction} from key frame {self.key} stopped at frame {self.frame}: "
                f"{self.reason}" + (f" ({self.detail})" if self.detail else ""))


@dataclass(frozen=True)
class Doubt:
    """Where one direction carried on past a step the optical flow does not explain."""

    key: int
    direction: str
    frame: int
    detail: str

    def message(self) -> str:
        return (f"propagation {self.direction} from key frame {self.key} carried on past frame {self.frame} "
                f"at confidence 0 ({self.detail}): check the frames from there first")


@dataclass
class FrameQuality:
    """How far a filled frame can be trusted, without ground truth: ``score`` in [0, 1] is the
    lowest of the parts that could be measured (None: not measured)."""

    score: float
    network_agreement: Optional[float] = None  # Dice of the propagated and the network's masks
    directions_agreement: Optional[float] = None  # Dice of the forward and backward masks
    certainty: float = 1.0  # soft Dice of the probability with its own mask (1: all 0 or 1)
    confidence: float = 1.0  # the carrying direction(s)' confidence

    def to_dict(self) -> dict:
        return {k: (None if v is None else round(float(v), 4)) for k, v in self.__dict__.items()}


class Propagation(list):
    """The masks, one HxW bool per frame (a plain list), with how each was made:

    ``sources[i]``: "key", "forward", "backward", "both" (blended), "network" (not reached:
    the network's mask) or "none" (not reached, no network: empty); ``from_keys[i]``: the
    (forward, backward) keys that reached it (None where one did not); ``confidence[i]``
    (1 for keys, 0 where not reached); ``quality[i]``: a :class:`FrameQuality` for filled
    frames, None for keys; ``stops``: every :class:`Stop`; ``doubts``: every :class:`Doubt` (a
    step carried on that the flow does not explain); ``seconds``: wall time.
    """

    def __init__(self, masks=()):
        super().__init__(masks)
        n = len(self)
        self.sources: List[str] = ["none"] * n
        self.from_keys: List[Tuple[Optional[int], Optional[int]]] = [(None, None)] * n
        self.confidence: List[float] = [0.0] * n
        self.quality: List[Optional[FrameQuality]] = [None] * n
        self.stops: List[Stop] = []
        self.doubts: List[Doubt] = []
        self.seconds = 0.0
        self.refined = True
        self.refiner_runs = 0

    @property
    def filled(self) -> List[int]:
        """Frames that are not keys."""
        return [i for i, s in enumerate(self.sources) if s != "key"]

    def worst_first(self) -> List[int]:
        """Filled frames, the lowest quality score first (frames not reached come first)."""
        return sorted(self.filled, key=lambda i: (self.quality[i].score if self.quality[i] else -1.0, i))

    def summary(self) -> str:
        keys = [i for i, s in enumerate(self.sources) if s == "key"]
        counts = {s: self.sources.count(s) for s in ("forward", "backward", "both", "network", "none")}
        parts = [f"{len(self)} frames, {len(keys)} key{'s' if len(keys) != 1 else ''}"]
        parts += [f"{v} {k}" for k, v in counts.items() if v]
        lines = ["; ".join(parts)]
        lines += [s.message() for s in self.doubts + self.stops]
        return "\n".join(lines)


# -- the contract -------------------------------------------------------------------------

def propagate(frames, key_masks: Dict[int, np.ndarray], probabilities=None, *, refine: bool = True,
              runner=None, threads: Optional[int] = None, fuse: float = 0.0,
              min_confidence: float = MIN_CONFIDENCE, min_match: Optional[float] = None,
              cut_distance: float = CUT_DISTANCE,
              flow_side: int = FLOW_SIDE, refine_below: float = NCC_HIGH,
              progress: Optional[Callable[[int, int], None]] = None,
              frame_numbers: Optional[Sequence[int]] = None) -> Propagation:
    """Fill every frame that is not a key by carrying the key masks (see the module docstring).

    ``refine=False`` carries the mask by optical flow alone (no refiner); ``runner``: the
    refiner's runner (default: the shipped click refiner, ``refiner_runner(threads=threads)``),
    any object with ``input_size`` and ``run(x) -> {"logits": 1x1xSxS}``; ``fuse`` in [0, 1]:
    the share of the network's probability in each filled frame (needs ``probabilities``);
    ``refine_below``: a step is refined when the flow's match around the mask (a correlation,
    see ``FlowWarp.warp``) is below this (above 1: every step); a direction stops at a step
    whose match is below ``min_match`` (default: ``MIN_MATCH`` with ``probabilities``; else the
    second step below ``NCC_LOW``), once its confidence is below ``min_confidence``, or at a
    scene cut (``cut_distance``); ``progress(done, total)`` is called after each frame filled.
    ``frame_numbers``: the number each frame has for the person reading the messages (stops,
    doubts, errors), when ``frames`` is a stretch of a longer video (default: its position).
    Bad input raises one :class:`UserError`.
    """
    start = time.perf_counter()
    n = _frame_count(frames)
    keys = _checked_keys(key_masks, n)
    number = _numbering(frame_numbers, n)
    if probabilities is not None and _frame_count(probabilities, "probabilities") != n:
        raise UserError(f"probabilities has {_frame_count(probabilities, 'probabilities')} frames, "
                        f"the video {n}: give one probability map per frame")
    if not 0.0 <= float(fuse) <= 1.0:
        raise UserError(f"fuse is {fuse}: it is the network's share, between 0 and 1")
    if fuse and probabilities is None:
        raise UserError("fuse needs the network's probabilities (probabilities=...)")
    reader = _Reader(frames, n)
    hw = reader.shape_hw(keys[0])
    for k in keys:
        _check_key_mask(number(k), key_masks[k], hw)
    if refine and runner is None:
        from .inference.refiner import refiner_runner

        runner = refiner_runner(threads=threads)
    if min_match is None:  # stop where the network can take over; an empty frame is the worst answer
        min_match = MIN_MATCH if probabilities is not None else -1.0
    carrier = _Carrier(reader, runner if refine else None, flow_side, cut_distance, min_confidence,
                       refine_below, min_match, number)
    network = _Probabilities(probabilities, hw) if probabilities is not None else None

    result = Propagation([None] * n)
    result.refined = bool(refine)
    for k in keys:
        result[k] = _given_mask(key_masks[k])
        result.sources[k], result.from_keys[k], result.confidence[k] = "key", (k, k), 1.0
    total, done = n - len(keys), [0]

    def tick():
        done[0] += 1
        if progress is not None:
            progress(done[0], total)

    bounds = [None] + keys + [None]
    for left, right in zip(bounds[:-1], bounds[1:]):
        lo = 0 if left is None else left + 1
        hi = n if right is None else right
        if hi <= lo:
            continue
        forward: Dict[int, Tuple[np.ndarray, float]] = {}
        keep = left is not None and right is not None and _segment_fits(hi - lo, hw)
        if left is not None:
            for t, prob, conf in carrier.carry(left, result[left], range(lo, hi), "forward", result):
                if keep:
                    forward[t] = (_to_uint8(prob), conf)
                else:  # no key after it, or too long to keep: filled now
                    _fill(result, t, prob, conf, (left, None), "forward", network, fuse)
                    tick()
        if right is None:
            continue
        for t, prob, conf in carrier.carry(right, result[right], range(hi - 1, lo - 1, -1), "backward", result):
            if t in forward:
                fprob, fconf = forward.pop(t)
                fprob = fprob.astype(np.float32) / 255.0
                # by distance (the nearer key weighs more), each direction by its confidence
                wf, wb = max(fconf, 1e-3) * (right - t), max(conf, 1e-3) * (t - left)
                shape, mean = blend(fprob, prob, wf / (wf + wb))
                agreement = _dice(fprob >= THRESHOLD, prob >= THRESHOLD)
                both = (wf * fconf + wb * conf) / (wf + wb)
                if min(fconf, conf) <= 0.0 and max(fconf, conf) < SURE and agreement < DIRECTIONS_AGREE:
                    both = 0.0  # one came past a jump, the other is unsure and does not bear it out
                _fill(result, t, shape, both, (left, right), "both", network, fuse, agreement=agreement,
                      certainty_of=mean)
                tick()
            elif result[t] is None:
                _fill(result, t, prob, conf, (None, right), "backward", network, fuse)
                tick()
            elif left is not None and t - left > right - t:  # a long segment: the nearer key's
                _fill(result, t, prob, conf, (None, right), "backward", network, fuse)
        for t, (fprob, fconf) in forward.items():  # the backward pass stopped before these
            _fill(result, t, fprob.astype(np.float32) / 255.0, fconf, (left, None), "forward", network, fuse)
            tick()

    for t in range(n):  # frames no direction reached
        if result[t] is None:
            if network is not None:
                result[t] = network[t] >= THRESHOLD
                result.sources[t] = "network"
                result.quality[t] = FrameQuality(score=0.0, network_agreement=1.0, confidence=0.0)
            else:
                result[t] = np.zeros(hw, bool)
                result.sources[t] = "none"
                result.quality[t] = FrameQuality(score=0.0, confidence=0.0)
            tick()
    result.seconds = time.perf_counter() - start
    result.refiner_runs = carrier.refiner_runs
    return result


def _fill(result: Propagation, t: int, prob: np.ndarray, conf: float, from_keys, source: str,
          network, fuse: float, agreement: Optional[float] = None,
          certainty_of: Optional[np.ndarray] = None) -> None:
    net = network[t] if network is not None else None
    if net is not None and fuse:
        prob = (1.0 - fuse) * prob + fuse * net
        certainty_of = None if certainty_of is None else (1.0 - fuse) * certainty_of + fuse * net
    mask = prob >= THRESHOLD
    result[t] = mask
    result.sources[t], result.from_keys[t], result.confidence[t] = source, from_keys, float(conf)
    result.quality[t] = frame_quality(prob if certainty_of is None else certainty_of, net, conf, agreement,
                                      mask=mask)


def blend(forward: np.ndarray, backward: np.ndarray, weight: float) -> Tuple[np.ndarray, np.ndarray]:
    """Two directions' probabilities at one frame blended, ``weight`` the forward one's share.

    The shape is blended as signed distances to the two masks' borders (a mask drawn larger at
    one key grows steadily towards it, rather than switching at the midpoint as a vote would):
    returns (a probability whose 0.5 level is that shape, the weighted mean probability)."""
    import cv2

    def signed_distance(p):
        inside = (p >= THRESHOLD).astype(np.uint8)
        return (cv2.distanceTransform(1 - inside, cv2.DIST_L2, 5)
                - cv2.distanceTransform(inside, cv2.DIST_L2, 5))

    distance = weight * signed_distance(forward) + (1.0 - weight) * signed_distance(backward)
    shape = 1.0 / (1.0 + np.exp(np.clip(distance / BLEND_SOFTNESS, -30, 30)))
    return shape.astype(np.float32), weight * forward + (1.0 - weight) * backward


# -- the quality score --------------------------------------------------------------------

def frame_quality(probability: np.ndarray, network_probability: Optional[np.ndarray] = None,
                  confidence: float = 1.0, directions_agreement: Optional[float] = None,
                  mask: Optional[np.ndarray] = None) -> FrameQuality:
    """A filled frame's quality without ground truth: the lowest of the agreement of the
    propagated and the network's masks (when the network's probability is given), of the
    forward and backward masks (between two keys), the certainty of the probability (soft Dice
    with its own mask: 1 when every pixel is 0 or 1) and the carrying confidence."""
    probability = np.asarray(probability, np.float32)
    mask = probability >= THRESHOLD if mask is None else mask
    certainty = _soft_dice(probability, mask)
    agreement = None
    if network_probability is not None:
        agreement = _dice(mask, np.asarray(network_probability) >= THRESHOLD)
    parts = [certainty, float(confidence)] + [p for p in (agreement, directions_agreement) if p is not None]
    return FrameQuality(score=float(min(parts)), network_agreement=agreement,
                        directions_agreement=directions_agreement, certainty=certainty,
                        confidence=float(confidence))


# -- temporal smoothing ---------------------------------------------------------------------

def smooth_probabilities(frames, probabilities, weight: float = SMOOTH_WEIGHT, *,
                         flow_side: int = FLOW_SIDE, cut_distance: float = CUT_DISTANCE) -> Iterator[np.ndarray]:
    """The per-frame network's probabilities of a whole video, smoothed in time: each frame's
    blended with the previous smoothed one warped to it by optical flow, the previous one's
    share ``weight`` times the flow's match over the frame (0 at a scene cut). Yields one HxW
    float32 per frame, in order (a video is never held whole)."""
    if not 0.0 <= float(weight) < 1.0:
        raise UserError(f"the smoothing weight is {weight}: the previous frame's share, from 0 up to (not) 1")
    n = _frame_count(frames)
    if _frame_count(probabilities, "probabilities") != n:
        raise UserError(f"probabilities has {_frame_count(probabilities, 'probabilities')} frames, the video {n}")
    reader = _Reader(frames, n)
    network = _Probabilities(probabilities, reader.shape_hw(0))
    carrier = _Carrier(reader, None, flow_side, cut_distance, 0.0)
    previous = None
    for t in range(n):
        current = network[t]
        if previous is not None and weight:
            distance = _hist_distance(reader.histogram(t - 1, flow_side), reader.histogram(t, flow_side))
            if distance <= cut_distance:
                warped, ncc = carrier.flow.warp(previous, reader.small(t - 1, flow_side),
                                                reader.small(t, flow_side), whole=True)
                share = weight * float(np.clip((ncc - NCC_LOW) / (NCC_HIGH - NCC_LOW), 0.0, 1.0))
                current = (1.0 - share) * current + share * warped
        previous = current.astype(np.float32)
        yield previous


# -- carrying one direction ----------------------------------------------------------------

class _Carrier:
    """Carries one key's mask frame by frame (see the module docstring)."""

    def __init__(self, reader: "_Reader", runner, flow_side: int, cut_distance: float,
                 min_confidence: float, refine_below: float = NCC_HIGH, min_match: float = MIN_MATCH,
                 number: Callable[[int], int] = int):
        self.reader, self.runner, self.number = reader, runner, number
        self.flow_side, self.cut_distance = int(flow_side), float(cut_distance)
        self.min_confidence, self.refine_below = float(min_confidence), float(refine_below)
        self.min_match = float(min_match)
        self.flow = FlowWarp()
        self.last_measures: dict = {}
        self.refiner_runs = 0

    def carry(self, key: int, key_mask: np.ndarray, order: Sequence[int], direction: str,
              said: "Propagation") -> Iterator[Tuple[int, np.ndarray, float]]:
        """Yield (frame, probability, confidence) for each frame of ``order`` (consecutive, away
        from ``key``) until the end or a stop (appended to ``said.stops``; a step carried on that
        the flow does not explain to ``said.doubts``)."""
        stops, no = said.stops, self.number  # positions for the arrays, numbers for the words
        prob = np.asarray(key_mask, np.float32)
        prev = self.reader.small(key, self.flow_side)
        prev_hist = self.reader.histogram(key, self.flow_side)
        confidence, doubted = 1.0, None  # doubted: the frame of a step the flow did not explain
        for t in order:
            small = self.reader.small(t, self.flow_side)
            hist = self.reader.histogram(t, self.flow_side)
            distance = _hist_distance(prev_hist, hist)
            before = t - 1 if direction == "forward" else t + 1
            if distance > self.cut_distance:
                stops.append(Stop(no(key), direction, no(t), "scene cut",
                                  f"frames {no(before)} and {no(t)} differ by {distance:.2f} in colour "
                                  f"(Bhattacharyya distance), above {self.cut_distance:.2f}"))
                return
            frame = self.reader.frame(t)
            warped, ncc = self.flow.warp(prob, prev, small)
            match = float(np.clip((ncc - NCC_LOW) / (NCC_HIGH - NCC_LOW), 0.0, 1.0))
            if self.runner is not None and ncc < self.refine_below:
                # the refiner where the flow is unsure; the warped mask kept where it is sure
                keep = float(np.clip((ncc - REFINE_ONLY) / (NCC_HIGH - REFINE_ONLY), 0.0, 1.0))
                refined = keep * warped + (1.0 - keep) * self._refine(frame, warped)
            else:
                refined = _sharpen(warped)
            confidence *= match
            self.last_measures = {"frame": t, "cut_distance": distance, "ncc": ncc, "match": match,
                                  "confidence": confidence}
            unexplained = (f"frame {no(t)} does not match frame {no(before)} moved by the optical flow: "
                           f"correlation {ncc:.2f} around the mask")
            if ncc < self.min_match:
                stops.append(Stop(no(key), direction, no(t), "low confidence",
                                  f"{unexplained}, below {self.min_match:.2f}"))
                return
            if ncc < NCC_LOW and doubted is not None:
                stops.append(Stop(no(key), direction, no(t), "low confidence",
                                  f"the second step the flow does not explain, after frame {no(doubted)}: "
                                  f"{unexplained}, below {NCC_LOW:.2f}"))
                return
            if ncc < NCC_LOW:  # past one such step the refiner finds the lesion again from the carried mask
                said.doubts.append(Doubt(no(key), direction, no(t), f"{unexplained}, below {NCC_LOW:.2f}"))
                doubted = t
            if confidence < self.min_confidence:
                stops.append(Stop(no(key), direction, no(t), "low confidence",
                                  f"{confidence:.2f}, below {self.min_confidence:.2f}, after frame {no(t)} matched "
                                  f"frame {no(before)} moved by the optical flow with a correlation of {ncc:.2f}"))
                return
            if (refined >= THRESHOLD).sum() < max(1, MIN_AREA_SHARE * refined.size):
                stops.append(Stop(no(key), direction, no(t), "mask vanished", "the carried mask is empty here"))
                return
            prob, prev, prev_hist = refined, small, hist
            yield t, prob, confidence

    def _refine(self, frame: np.ndarray, prob: np.ndarray) -> np.ndarray:
        self.refiner_runs += 1
        return refine_mask(frame, prob, self.runner)


def refine_mask(image: np.ndarray, probability: np.ndarray, runner) -> np.ndarray:
    """The click refiner with no clicks: ``probability`` (HxW in [0, 1], the prior) refined on
    ``image`` (HxWx3 uint8), seen in a crop around the prior's mask (:func:`refiner_crop`); the
    probability outside the crop is kept."""
    from .inference.refiner import refiner_input, sigmoid
    from .inference.resample import resize_map

    top, left, bottom, right = refiner_crop(probability >= THRESHOLD)
    size = int(runner.input_size)
    x = refiner_input(image[top:bottom, left:right], probability[top:bottom, left:right], [], size)
    if hasattr(runner, "run"):  # ONNX Runtime, or a stand-in
        logits = np.asarray(runner.run(x)["logits"])
    else:  # the torch runner takes a tensor
        import torch

        with torch.inference_mode():
            logits = runner(torch.from_numpy(x))["logits"].float().numpy()
    out = np.array(probability, np.float32, copy=True)
    out[top:bottom, left:right] = resize_map(sigmoid(logits[0, 0]), (bottom - top, right - left))
    return out


def _sharpen(prob: np.ndarray) -> np.ndarray:
    """Undo the blur of repeated interpolation: steeper around 0.5 (a flow-only step)."""
    return np.clip(0.5 + 2.0 * (prob - 0.5), 0.0, 1.0)


def refiner_crop(mask: np.ndarray) -> Tuple[int, int, int, int]:
    """(top, left, bottom, right) the refiner sees: a square around the mask grown as the click
    session's zoom-in grows it, or the whole frame (no mask, or a crop that would cover most)."""
    from .inference.refiner import CROP_MARGIN, FULL_IMAGE_SHARE, MIN_CROP

    h, w = mask.shape
    if not mask.any():
        return 0, 0, h, w
    rows, cols = np.nonzero(mask.any(1))[0], np.nonzero(mask.any(0))[0]
    top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    side = max(bottom - top, right - left) * (1 + 2 * CROP_MARGIN)
    side = int(min(max(side, MIN_CROP), max(h, w)))
    if side * side > FULL_IMAGE_SHARE * h * w:
        return 0, 0, h, w
    centre_r, centre_c = (top + bottom) / 2, (left + right) / 2
    top = int(np.clip(round(centre_r - side / 2), 0, max(h - side, 0)))
    left = int(np.clip(round(centre_c - side / 2), 0, max(w - side, 0)))
    return top, left, min(top + side, h), min(left + side, w)


# -- reading frames ------------------------------------------------------------------------

class _Reader:
    """Frames one at a time, checked (HxWx3, one size), the last few kept. A backward pass reads
    ahead in forward order (a chunk ending at the frame asked for), so a video file is decoded
    forward rather than sought frame by frame."""

    CHUNK = 16  # frames read ahead in forward order for a backward pass
    CHUNK_BYTES = 256 << 20  # ... at most this many bytes of frames

    def __init__(self, frames, n: int):
        self.frames, self.n = frames, n
        self.hw: Optional[Tuple[int, int]] = None
        self._cache: "OrderedDict[int, np.ndarray]" = OrderedDict()
        self._small: "OrderedDict[Tuple[int, int], Tuple[np.ndarray, np.ndarray]]" = OrderedDict()

    def shape_hw(self, index: int) -> Tuple[int, int]:
        if self.hw is None:
            self.hw = self.frame(index).shape[:2]
        return self.hw

    def _chunk(self) -> int:
        if self.hw is None:
            return 1
        return int(max(1, min(self.CHUNK, self.CHUNK_BYTES // (3 * self.hw[0] * self.hw[1]))))

    def frame(self, index: int) -> np.ndarray:
        if index in self._cache:
            self._cache.move_to_end(index)
            return self._cache[index]
        chunk = self._chunk()
        if index + 1 in self._cache and chunk > 1:  # going backward: read the chunk before, forward
            for i in range(max(0, index - chunk + 1), index):
                if i not in self._cache:
                    self._keep(i, self._read(i), 2 * chunk)
        image = self._read(index)
        self._keep(index, image, 2 * chunk)
        return image

    def _keep(self, index: int, image: np.ndarray, limit: int) -> None:
        self._cache[index] = image
        self._cache.move_to_end(index)
        while len(self._cache) > max(limit, 2):
            self._cache.popitem(last=False)

    def _read(self, index: int) -> np.ndarray:
        try:
            raw = self.frames[index]
        except UserError:
            raise
        except Exception as err:  # noqa: BLE001 -- a lazy array's own error: one message
            raise UserError(f"frame {index} cannot be read ({type(err).__name__}: {err}); nothing was "
                            "propagated") from None
        image = np.asarray(raw)
        if image.ndim != 3 or image.shape[2] != 3:
            raise UserError(f"frame {index} has shape {image.shape}: propagation needs H×W×3 frames")
        if image.dtype != np.uint8:
            from .io.images import as_rgb_uint8

            image = as_rgb_uint8(image)
        if self.hw is not None and image.shape[:2] != self.hw:
            raise UserError(f"frame {index} is {image.shape[1]}×{image.shape[0]} px, earlier frames "
                            f"{self.hw[1]}×{self.hw[0]}: every frame must have one size")
        return image

    def small(self, index: int, side: int) -> np.ndarray:
        """The frame in grey, its longer side ``side`` px (never enlarged)."""
        return self._small_and_histogram(index, side)[0]

    def histogram(self, index: int, side: int) -> np.ndarray:
        """The frame's colour histogram (at the small size)."""
        return self._small_and_histogram(index, side)[1]

    def _small_and_histogram(self, index: int, side: int) -> Tuple[np.ndarray, np.ndarray]:
        key = (index, side)
        if key in self._small:
            self._small.move_to_end(key)
            return self._small[key]
        small = small_rgb(self.frame(index), side)
        self._small[key] = (grey(small), _histogram(small))
        while len(self._small) > 4 * self.CHUNK:
            self._small.popitem(last=False)
        return self._small[key]


class _Probabilities:
    def __init__(self, probabilities, hw):
        self.probabilities, self.hw = probabilities, hw

    def __getitem__(self, index: int) -> np.ndarray:
        p = np.asarray(self.probabilities[index], np.float32)
        if p.shape != tuple(self.hw):
            raise UserError(f"the probability of frame {index} has shape {p.shape}, the frames are "
                            f"{self.hw[0]}×{self.hw[1]} px")
        return np.clip(np.nan_to_num(p), 0.0, 1.0)


def _histogram(rgb_small: np.ndarray) -> np.ndarray:
    """The frame's colour histogram (8 bins a channel), normalised."""
    import cv2

    hist = cv2.calcHist([rgb_small], [0, 1, 2], None, [8, 8, 8], [0, 256] * 3)
    return cv2.normalize(hist, hist).astype(np.float32)


def _hist_distance(a: np.ndarray, b: np.ndarray) -> float:
    import cv2

    return float(cv2.compareHist(a, b, cv2.HISTCMP_BHATTACHARYYA))


# -- input checks ----------------------------------------------------------------------------

def _frame_count(frames, what: str = "frames") -> int:
    if frames is None:
        raise UserError(f"{what} is None: give the video's frames (a sequence or an array T×H×W×3)")
    try:
        n = len(frames)
    except TypeError:
        raise UserError(f"{what} has no length: give a sequence or an array of frames") from None
    if n == 0:
        raise UserError(f"{what} is empty: the video has no frames")
    if n == 1 and what == "frames":
        raise UserError("the video has one frame: there is no other frame to carry a mask to")
    return int(n)


def _numbering(frame_numbers, n: int) -> Callable[[int], int]:
    if frame_numbers is None:
        return int
    numbers = [int(f) for f in frame_numbers]
    if len(numbers) != n:
        raise UserError(f"frame_numbers has {len(numbers)} numbers for {n} frames: give one number per frame")
    return numbers.__getitem__


def _checked_keys(key_masks, n: int) -> List[int]:
    if not isinstance(key_masks, dict) or not key_masks:
        raise UserError("no key frames: give key_masks as {frame index: H×W bool mask}, at least one")
    keys = []
    for k in key_masks:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
            raise UserError(f"key frame index {k!r} is not a whole number")
        if not 0 <= int(k) < n:
            raise UserError(f"key frame {k} is out of range: the video has {n} frames (0 to {n - 1})")
        keys.append(int(k))
    return sorted(keys)


def _check_key_mask(k: int, mask, hw) -> None:
    mask = np.asarray(mask)
    if mask.shape != tuple(hw):
        raise UserError(f"the mask of key frame {k} has shape {mask.shape}, the frames are "
                        f"{hw[0]}×{hw[1]} px: they must match")
    if not mask.any():
        raise UserError(f"the mask of key frame {k} is empty: there is nothing to carry from it")


def _given_mask(mask) -> np.ndarray:
    mask = np.asarray(mask)
    return mask.copy() if mask.dtype == bool else mask > 0


def _segment_fits(frames: int, hw) -> bool:
    return frames * hw[0] * hw[1] <= MAX_SEGMENT_BYTES


def _to_uint8(prob: np.ndarray) -> np.ndarray:
    return np.round(np.clip(prob, 0.0, 1.0) * 255.0).astype(np.uint8)


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else float(2 * np.logical_and(a, b).sum() / total)


def _soft_dice(prob: np.ndarray, mask: np.ndarray) -> float:
    total = float(prob.sum()) + float(mask.sum())
    return 1.0 if total == 0 else float(2 * prob[mask].sum() / total)
