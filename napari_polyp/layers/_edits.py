"""The state behind each mask (its probabilities, the masks derived from them) and manual
edits: found, kept or discarded as ``resolve_edits`` decides, and re-thresholding."""
from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import Callable, Dict, Optional

import numpy as np

from ..conventions import ROLE
from ..inference.prediction import binary_mask

DISCARD, KEEP, CANCEL = "discard", "keep", "cancel"


# -- the state behind each mask -------------------------------------------------
@dataclass
class PredictionState:
    """What a mask was derived from: its probabilities and the last derived mask per frame."""

    probability: object  # HxW float32 array, or a FrameStack for T frames
    threshold: float
    derived: Dict[Optional[int], np.ndarray] = field(default_factory=dict)  # frame (None: 2D) -> mask
    # Pixels ever edited by hand (kept on "keep"): an edit stays an edit even when a later
    # threshold happens to derive the same value there, so it is never silently lost.
    edits: Dict[Optional[int], np.ndarray] = field(default_factory=dict)
    kept_edit_pixels: int = -1  # edited pixels when the user last chose "keep" (not asked again for those)
    thresholds: Dict[Optional[int], float] = field(default_factory=dict)  # frame -> threshold of its mask

    def probability_frame(self, frame: Optional[int]) -> np.ndarray:
        source = self.probability if frame is None else self.probability.frame(frame)
        return np.asarray(source, dtype=np.float32)


_STATES: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def unwrap(obj):
    """The layer itself: napari hands plugin widgets a viewer proxy whose layers are
    fresh proxy objects (wrapt.ObjectProxy) on every access, so state is keyed by the object underneath."""
    try:
        from wrapt import ObjectProxy
    except ImportError:  # pragma: no cover - napari depends on wrapt
        return obj
    while isinstance(obj, ObjectProxy):
        obj = obj.__wrapped__
    return obj


# Labels layers that hold a mask to edit: a network's mask, or one the user made or opened (no role).
# Never a reference comparison, refine strokes, a disagreement map or a live outline.
MASK_ROLES = ("mask", None)


def is_mask_role(role) -> bool:
    """Whether a Labels layer with this ``ROLE`` metadata is a mask (clean-up, undo act on it)."""
    return role in MASK_ROLES


def is_editable_mask(layer) -> bool:
    """A Labels layer holding a mask (see :data:`MASK_ROLES`)."""
    from napari.layers import Labels

    return isinstance(layer, Labels) and is_mask_role((layer.metadata or {}).get(ROLE))


def prediction_state(labels_layer) -> Optional[PredictionState]:
    return _STATES.get(unwrap(labels_layer))


def _set_state(labels_layer, state: PredictionState) -> None:
    _STATES[unwrap(labels_layer)] = state


def _forget_state(labels_layer) -> None:
    """The layer holds another mask now: no probabilities behind it (a threshold leaves it alone)."""
    _STATES.pop(unwrap(labels_layer), None)


@dataclass(frozen=True)
class EditsFound:
    """Passed to ``resolve_edits``: the mask has manual edits the new mask would overwrite."""

    layer_name: str
    pixels: int  # edited pixels, over all frames concerned
    frames: tuple  # frames with edits (() for a 2D image)
    action: str  # "re-threshold" | "new prediction"

    def message(self) -> str:
        where = f" in {len(self.frames)} frame(s)" if self.frames else ""
        return (f"'{self.layer_name}' has {self.pixels} manually edited pixel(s){where}. "
                f"The {self.action} would replace them.")


ResolveEdits = Callable[[EditsFound], str]


def _decide(resolve_edits: Optional[ResolveEdits], found: EditsFound) -> str:
    decision = KEEP if resolve_edits is None else resolve_edits(found)
    if decision not in (DISCARD, KEEP, CANCEL):
        raise ValueError(f"resolve_edits must answer 'discard', 'keep' or 'cancel', not {decision!r}")
    return decision


def _labels_frame(labels_layer, frame: Optional[int]) -> np.ndarray:
    return labels_layer.data if frame is None else labels_layer.data[frame]


def _edited_pixels(labels_layer, state: Optional[PredictionState], frame: Optional[int]) -> np.ndarray:
    """Boolean map of pixels whose label differs from what the probabilities gave (0 where never derived)."""
    current = np.asarray(_labels_frame(labels_layer, frame))
    last = state.derived.get(frame) if state is not None else None
    edited = current != 0 if last is None else current != last
    earlier = state.edits.get(frame) if state is not None else None
    return edited if earlier is None else edited | earlier


def _remember_edits(state: PredictionState, frame: Optional[int], edited: np.ndarray, decision: str) -> None:
    if decision == KEEP and edited.any():
        state.edits[frame] = edited
    else:
        state.edits.pop(frame, None)


def _write_mask(labels_layer, frame: Optional[int], mask: np.ndarray) -> None:
    if frame is None:
        labels_layer.data[...] = mask
    else:
        labels_layer.data[frame] = mask


# -- re-threshold ---------------------------------------------------------------
def rethreshold(labels_layer, threshold: float, resolve_edits: Optional[ResolveEdits] = None) -> str:
    """Re-derive ``labels_layer``'s mask at ``threshold`` from the stored probabilities.

    No network call. Returns "unchanged" (same threshold), "updated", "kept-edits"
    (edited pixels kept, the rest re-derived) or "cancelled".
    """
    state = prediction_state(labels_layer)
    if state is None:
        raise ValueError(f"{labels_layer.name!r} was not made by a napari-polyp prediction in this session")
    threshold = float(threshold)
    # Frames predicted while the control showed another value may differ: compare per frame.
    frames = sorted((f for f in state.derived if state.thresholds.get(f) != threshold),
                    key=lambda f: -1 if f is None else f)
    if not frames:
        return "unchanged"
    edits = {f: _edited_pixels(labels_layer, state, f) for f in frames}
    edited_frames = [f for f in frames if edits[f].any()]
    decision = DISCARD
    if edited_frames:
        pixels = int(sum(edits[f].sum() for f in edited_frames))
        if pixels == state.kept_edit_pixels:
            decision = KEEP  # the same edits the user already chose to keep: do not ask again
        else:
            decision = _decide(resolve_edits, EditsFound(
                labels_layer.name, pixels, tuple(f for f in edited_frames if f is not None), "re-threshold"))
        if decision == CANCEL:
            return "cancelled"
        state.kept_edit_pixels = pixels if decision == KEEP else -1
    for f in frames:
        derived = binary_mask(state.probability_frame(f), threshold)
        mask = derived
        if decision == KEEP and edits[f].any():
            mask = np.where(edits[f], np.asarray(_labels_frame(labels_layer, f)), derived).astype(np.uint8)
        _remember_edits(state, f, edits[f], decision)
        _write_mask(labels_layer, f, mask)
        state.derived[f] = derived
        state.thresholds[f] = threshold
    state.threshold = threshold
    labels_layer.metadata["threshold"] = threshold
    if "frames" in labels_layer.metadata:
        labels_layer.metadata["frames"] = {
            t: {**rec, "threshold": threshold} for t, rec in labels_layer.metadata["frames"].items()}
    labels_layer.refresh()
    return "kept-edits" if decision == KEEP and edited_frames else "updated"


def has_manual_edits(labels_layer) -> bool:
    state = prediction_state(labels_layer)
    return state is not None and any(_edited_pixels(labels_layer, state, f).any() for f in state.derived)
