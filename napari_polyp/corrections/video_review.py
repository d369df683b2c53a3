"""Review on video, headless: a frame a person saved is a key; Propagate carries a key's mask to
the frames after (or before) it; the frames it filled are accepted in one step.

    video = VideoReview(session)              # session: a ReviewSession of a video's frames
    session.commit(12, fixed_mask, "corrected")   # frame 12 is a key now
    for event in video.propagate(12, +1):     # napari_polyp.jobs events: Progress, Note, Finished
        ...
    video.state(13)                           # "propagated from key 12"
    video.accept_range(12, +1)                # every frame filled from key 12, saved "accepted"

The propagation is :func:`napari_polyp.video.propagate` (optical flow, the click refiner with
no clicks, blended between two keys) on the frames from the key to the next key (included,
so the two are blended) or at most ``limit`` frames. A propagated mask is a prediction with the
provenance "propagation from key k"; accepting it records ``propagated_from: k`` in the
manifest, so a fine-tune (or a person) can tell the frames a person fixed from the ones carried.
The widget is :mod:`napari_polyp.widgets.review_video`.
"""
from __future__ import annotations

from typing import Callable, Dict, Iterator, List, Optional, Set

import numpy as np

from ..errors import UserError
from ..conventions import DEFAULT_THRESHOLD
from ..jobs import Event, Finished, ModelChoice, Note, Predicted, Provenance, with_progress

PROPAGATE_FRAMES = 25  # frames one Propagate fills at most (a second of video at 25 fps)
PROPAGATION = ModelChoice("propagation", checkpoint="flow + click-refiner")  # a carried mask's "network"
KEY_STATUSES = ("accepted", "corrected")  # a frame saved with one of these by a person is a key


class VideoReview:
    """Keys and propagated masks of one video under review (a :class:`ReviewSession` of a video).

    ``propagate_fn``: what fills frames (default :func:`napari_polyp.video.propagate`; tests
    give a cheaper one), called as ``propagate_fn(frames, key_masks, progress=..., frame_numbers=...)``
    (the video's numbers of the frames, for its messages)."""

    def __init__(self, session, propagate_fn: Optional[Callable] = None):
        if session.video is None or not session.items or session.items[0].frame is None:
            raise UserError("propagation works on a video's frames: open a video to review")
        self.session = session
        self.propagate_fn = propagate_fn
        self._propagated: Dict[int, Predicted] = {}  # frame -> its carried mask (this session)
        self._unsure: Set[int] = set()  # carried past a step the flow does not explain (confidence 0)
        self._doubt: Dict[int, float] = {}  # frame -> 1 - the carried mask's quality score (video.frame_quality)
        self.said: list = []  # the last propagation's doubts and stops (napari_polyp.video.Doubt / Stop)

    # -- what each frame is --------------------------------------------------------------
    @property
    def stops(self) -> List[str]:
        """Why the last propagation stopped early or doubted a step, in words."""
        return [said.message() for said in self.said]

    @property
    def stopped(self) -> list:
        """Where each direction of the last propagation stopped (its ``Stop`` records)."""
        from ..video import Stop

        return [said for said in self.said if isinstance(said, Stop)]

    def is_key(self, frame: int) -> bool:
        """Saved by a person: corrected (a carried mask fixed counts too), or accepted as the
        network or a person left it; a carried mask accepted as it was is not a key."""
        record = self.session.record(frame)
        return record is not None and record.status in KEY_STATUSES and (
            record.status == "corrected" or "propagated_from" not in record.extra)

    def keys(self) -> List[int]:
        return [i for i in range(len(self.session)) if self.is_key(i)]

    def propagated(self, frame: int) -> Optional[Predicted]:
        return self._propagated.get(frame)

    def doubt(self, frame: int) -> Optional[float]:
        """How far the frame's carried mask is to be doubted, in [0, 1]: one minus its quality
        score (:func:`napari_polyp.video.frame_quality`, no ground truth); None when not carried,
        or saved since (a person's mask is not in doubt)."""
        if frame not in self._propagated or self.session.record(frame) is not None:
            return None
        return self._doubt.get(frame)

    def most_uncertain_first(self, indices) -> List[int]:
        """The carried frames, most doubted first (fix the worst, it becomes a key, propagate
        again from it), then the others in the session's uncertainty order."""
        carried = sorted((i for i in indices if self.doubt(i) is not None), key=lambda i: (-self.doubt(i), i))
        rest = self.session.most_uncertain_first([i for i in indices if self.doubt(i) is None])
        return carried + rest

    def is_unsure(self, frame: int) -> bool:
        """Whether the frame's carried mask came past a step the optical flow does not explain
        (confidence 0): a person looks at it before it is saved."""
        return frame in self._propagated and frame in self._unsure

    def state(self, frame: int) -> str:
        """"key"; "propagated from key k" (carried, not saved), "doubtful from key k" (carried past a
        step the flow does not explain: :meth:`is_unsure`); "accepted from key k" (carried and
        accepted as it was); else the saved status, "predicted" or "unreviewed"."""
        record = self.session.record(frame)
        if record is not None:
            if self.is_key(frame):
                return "key"
            source = record.extra.get("propagated_from")
            return record.status + (f" from key {source}" if source is not None else "")
        if frame in self._propagated:
            how = "doubtful" if self.is_unsure(frame) else "propagated"
            return f"{how} from key {self._propagated[frame].provenance.propagated_from}"
        return "predicted" if self.session.was_predicted(frame) or self.session.prediction(frame) is not None \
            else "unreviewed"

    def key_behind(self, frame: int, step: int) -> Optional[int]:
        """The nearest key at or behind ``frame`` for a Propagate in direction ``step`` (+1: the
        key before it), None when there is none: what Propagate starts from on a frame that is
        not a key (saving a key moves on to the next frame)."""
        while 0 <= frame < len(self.session):
            if self.is_key(frame):
                return frame
            frame -= step
        return None

    def key_for(self, frame: int, step: int) -> Optional[int]:
        """The key a Propagate in direction ``step`` starts from with ``frame`` open: the frame
        itself, else the key behind it, else the nearest key on its other side (saving a key
        moves on to the next frame: ◀ there means from the key just saved)."""
        behind = self.key_behind(frame, step)
        return behind if behind is not None else self.key_behind(frame, -step)

    def span(self, key: int, step: int, limit: int = PROPAGATE_FRAMES) -> List[int]:
        """The frames a Propagate from ``key`` fills: after it (``step`` +1) or before it (-1),
        up to the next key (excluded) or the video's end, at most ``limit``."""
        if step not in (1, -1):
            raise ValueError("step is +1 (forward) or -1 (backward)")
        out, frame = [], key + step
        while 0 <= frame < len(self.session) and len(out) < limit and not self.is_key(frame):
            out.append(frame)
            frame += step
        return out

    # -- propagate ------------------------------------------------------------------------
    def propagate(self, key: int, step: int, limit: int = PROPAGATE_FRAMES) -> Iterator[Event]:
        """A job (:mod:`napari_polyp.jobs` events) filling :meth:`span` from ``key``; ends with
        ``Finished(frames filled)``. Saved frames in the span are left as they are. What makes
        it impossible (not a key, an empty key) raises :class:`UserError` here, before any job
        starts: the caller says it once, on its own thread."""
        if not self.is_key(key):
            raise UserError(f"frame {key} is not a key: save it (Accept or Corrected) before propagating from it")
        span = [t for t in self.span(key, step, limit) if self.session.record(t) is None]
        if not span:
            return _job_saying(Note(f"nothing to propagate {'after' if step > 0 else 'before'} frame {key}"))
        key_mask = self.session.saved_mask(key) > 0
        if not key_mask.any():
            raise UserError(f"frame {key} is saved with an empty mask (no lesion in view): there is nothing to "
                            "carry from it; propagate from a frame that shows the lesion")
        end = span[-1] + step
        other = end if 0 <= end < len(self.session) and self.is_key(end) else None
        other_mask = self.session.saved_mask(other) > 0 if other is not None else None
        if other_mask is not None and not other_mask.any():
            other = None  # the lesion is out of view there: the span ends before it, nothing blends with it
        order = sorted(span + [key] + ([other] if other is not None else []))
        key_masks = {order.index(key): key_mask}
        if other is not None:
            key_masks[order.index(other)] = other_mask
        return self._job(_Frames(self.session, order), key_masks)

    def _job(self, frames: "_Frames", key_masks: Dict[int, np.ndarray]) -> Iterator[Event]:
        for event in with_progress(lambda progress: self._run(frames, key_masks, progress)):
            if isinstance(event, Finished):  # where and why it stopped, before the result
                yield from (Note(message) for message in self.stops)
            yield event

    def _run(self, frames: "_Frames", key_masks: Dict[int, np.ndarray], progress) -> List[int]:
        run = self.propagate_fn
        if run is None:
            from ..video import propagate as run
        masks = run(frames, key_masks, progress=progress, frame_numbers=frames.order)
        filled = []
        for position, frame in enumerate(frames.order):
            reached = getattr(masks, "sources", None) is None or masks.sources[position] not in ("none", "network")
            if position in key_masks or not reached:
                continue  # a key, or a frame no direction reached (stopped at a cut or low confidence)
            nearest = frames.order[min(key_masks, key=lambda k: abs(k - position))]  # (blended: the nearer key)
            provenance = Provenance(PROPAGATION, source=str(self.session.items[frame].source_path),
                                    propagated_from=nearest)
            self._propagated[frame] = Predicted(np.asarray(masks[position], np.float32), {}, provenance, frame)
            quality = getattr(masks, "quality", None)
            score = quality[position].score if quality is not None and quality[position] is not None else None
            self._doubt[frame] = None if score is None else 1.0 - float(score)
            confidence = getattr(masks, "confidence", None)
            if confidence is not None and confidence[position] <= 0.0:
                self._unsure.add(frame)
            else:
                self._unsure.discard(frame)
            filled.append(frame)
        self.said = list(getattr(masks, "doubts", [])) + list(getattr(masks, "stops", []))
        return filled

    # -- accept -----------------------------------------------------------------------------
    def accept_range(self, key: int, step: int, limit: Optional[int] = None) -> list:
        """Save the propagated, unsaved frames next to ``key`` in the direction ``step`` as
        accepted, up to the next key (at most ``limit``), each with its provenance
        (``propagated_from``); stops at the first frame not propagated, or carried past a step
        the flow does not explain (:meth:`is_unsure`: accept or fix it alone). Returns the
        records written."""
        records = []
        for frame in self.span(key, step, limit or len(self.session)):
            carried = self._propagated.get(frame)
            if carried is None or self.session.record(frame) is not None or self.is_unsure(frame):
                break
            records.append(self.session.commit(frame, carried.mask(DEFAULT_THRESHOLD), "accepted", basis=carried,
                                               threshold=DEFAULT_THRESHOLD, image=self.session.image(frame)))
            del self._propagated[frame]
        return records

    def first_unsure(self, key: int, step: int) -> Optional[int]:
        """The doubtful frame that ends the run of carried frames next to ``key`` (direction
        ``step``), where Accept range stops; None when the run ends otherwise."""
        for frame in self.span(key, step, len(self.session)):  # carried or saved frames, up to the next key
            if self.is_unsure(frame):
                return frame
            if frame not in self._propagated and self.session.record(frame) is None:
                return None
        return None


def _job_saying(*events: Event) -> Iterator[Event]:
    """A job that only says something (a generator, as workers expect)."""
    yield from events


class _Frames:
    """Frames ``order`` of a session's video as a lazy sequence (``propagate``'s input)."""

    def __init__(self, session, order: List[int]):
        self.session, self.order = session, order

    def __len__(self) -> int:
        return len(self.order)

    def __getitem__(self, position: int) -> np.ndarray:
        return self.session.image(self.order[position])
