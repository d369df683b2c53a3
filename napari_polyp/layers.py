"""Prediction outputs as napari layers, and re-thresholding without the network.

For an image layer called ``NAME`` a run creates (or updates):

- ``NAME mask``: Labels (1 = lesion), editable with napari's paint/erase/fill;
- ``NAME probability``: Image, hidden, float in [0, 1];
- ``NAME: where NETWORK looked (PAPER TERM)``: one Image per attention map of the
  model (plain words from :mod:`napari_polyp.display`), at the image's size,
  hidden until shown, contrast per map, a colour bar, additive blending.

A video (T x H x W x 3) gets T-stacked layers; a frame that has not been
predicted yet reads as 0. The masks of a video are a ``np.zeros`` array,
whose pages the OS only commits once a frame is written; probabilities and
attention of a video live in a sparse :class:`FrameStack` (float16) that holds
only the predicted frames.

The probabilities behind each mask are kept (per Labels layer, in this
module), so :func:`rethreshold` re-derives the mask at a new threshold without
running the network. Manual edits are tracked as the pixels where the Labels
data differs from the last mask derived from the probabilities; they are never
dropped without asking: ``resolve_edits(EditsFound) -> "discard" | "keep" |
"cancel"`` decides ("keep", the default when nobody is asked, re-thresholds
only the pixels nobody edited).
"""
from __future__ import annotations

import datetime as _dt
import weakref
from dataclasses import dataclass, field
from typing import Callable, Dict, Mapping, Optional

import numpy as np

from .conventions import ROLE  # metadata key: "mask" | "probability" | "attention" | "disagreement" | ...
from .corrections.metrics import dice_iou
from .display import mask_colormap, outline
from .jobs import frame_reader
from .prediction import binary_mask
from .resample import resize_map

ATTENTION_COLORMAP = "inferno"

DISCARD, KEEP, CANCEL = "discard", "keep", "cancel"


# -- image layers: frames -------------------------------------------------------
def frame_count(image_layer) -> Optional[int]:
    """Number of frames of a T x H x W (x 3) image (or Labels) layer, None for a single 2D one."""
    spatial = image_layer.data.ndim - (1 if getattr(image_layer, "rgb", False) else 0)  # Labels have no .rgb
    if spatial == 2:
        return None
    if spatial == 3:
        return int(image_layer.data.shape[0])
    raise ValueError(f"layer {image_layer.name!r} has {spatial} spatial dimensions; "
                     "napari-polyp segments 2D images and T x H x W stacks")


def spatial_shape(image_layer) -> tuple:
    shape = image_layer.data.shape
    return tuple(shape[-3:-1] if image_layer.rgb else shape[-2:])


def image_frame(image_layer, frame: Optional[int] = None) -> np.ndarray:
    """One frame (or the image) of a layer as HxWx3 uint8, ready for a Predictor."""
    return frame_reader(image_layer.data)(frame)


def current_frame(viewer, image_layer) -> Optional[int]:
    """The frame of ``image_layer`` the viewer shows now (None for a 2D image)."""
    n = frame_count(image_layer)
    if n is None:
        return None
    point = image_layer.world_to_data(viewer.dims.point)
    return int(np.clip(round(float(point[0])), 0, n - 1))


def label_frame_axis(viewer) -> None:
    """Name the frame axis of a video "frame" (napari's default label is "-3"); labels the user
    set are kept."""
    ndim = viewer.dims.ndim
    if ndim < 3:
        return
    labels = list(viewer.dims.axis_labels)
    axis = ndim - 3  # layers are right-aligned: a T x H x W stack's T is the third axis from the end
    if labels[axis] == str(axis - ndim):
        labels[axis] = "frame"
        viewer.dims.axis_labels = labels


# -- sparse frame stack for per-frame float maps -------------------------------
class FrameStack:
    """A T x H x W array whose frames are stored only once set; others read as 0.

    napari takes it as Image layer data (shape, dtype, ndim, size, __getitem__).
    """

    ndim = 3

    def __init__(self, frames: int, hw, dtype=np.float16):
        self.shape = (int(frames), int(hw[0]), int(hw[1]))
        self.dtype = np.dtype(dtype)
        self.frames: Dict[int, np.ndarray] = {}

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    def __len__(self) -> int:
        return self.shape[0]

    def frame(self, t: int) -> np.ndarray:
        t = int(t) % self.shape[0]
        found = self.frames.get(t)
        return found if found is not None else np.zeros(self.shape[1:], self.dtype)

    def __setitem__(self, t, value) -> None:
        if not isinstance(t, (int, np.integer)):
            raise TypeError("FrameStack frames are set one at a time: stack[t] = HxW array")
        value = np.asarray(value, dtype=self.dtype)
        if value.shape != self.shape[1:]:
            raise ValueError(f"frame shape {value.shape} != {self.shape[1:]}")
        self.frames[int(t) % self.shape[0]] = value

    def __getitem__(self, key):
        key = key if isinstance(key, tuple) else (key,)
        if any(k is Ellipsis for k in key):
            at = key.index(Ellipsis)
            key = key[:at] + (slice(None),) * (self.ndim - len(key) + 1) + key[at + 1:]
        key = key + (slice(None),) * (self.ndim - len(key))
        first, rest = key[0], key[1:]
        if isinstance(first, (int, np.integer)):
            return self.frame(first)[rest]
        indices = range(*first.indices(self.shape[0])) if isinstance(first, slice) \
            else np.arange(self.shape[0])[np.asarray(first)].ravel()
        if len(indices) == 0:
            return np.zeros((0,) + self.shape[1:], self.dtype)[(slice(None),) + rest]
        return np.stack([self.frame(t) for t in indices])[(slice(None),) + rest]

    def __array__(self, dtype=None, copy=None):
        out = self[:]
        return out.astype(dtype) if dtype is not None else out


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


def show_saved_mask(labels_layer, mask: np.ndarray, image_layer, metadata: Mapping) -> None:
    """Put a saved (hand-checked) mask into an existing mask layer: new data and metadata,
    placed like ``image_layer``, and no probabilities behind it (a threshold leaves it alone)."""
    _reuse(labels_layer, labels_layer.name, np.asarray(mask, dtype=np.uint8), image_layer)
    labels_layer.metadata = {ROLE: "mask", **metadata}
    _STATES.pop(unwrap(labels_layer), None)


def _set_state(labels_layer, state: PredictionState) -> None:
    _STATES[unwrap(labels_layer)] = state


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


# -- layers of a run -----------------------------------------------------------
def layer_names(image_name: str) -> dict:
    return {
        "mask": f"{image_name} mask",
        "probability": f"{image_name} probability",
        "attention": f"{image_name} attention: ",
        "disagreement": f"{image_name} disagreement",
        "live": f"{image_name} live",
        "live_view": f"{image_name} live view",
    }


def _find(viewer, name: str, role: str):
    if name in viewer.layers:
        layer = viewer.layers[name]
        if layer.metadata.get(ROLE) == role:
            return layer
    return None


def _now() -> str:
    return _dt.datetime.now().astimezone().isoformat(timespec="seconds")


def _run_metadata(image_layer, meta: Mapping, threshold: float, role: str) -> dict:
    out = {
        "model": meta.get("model", ""),
        "checkpoint_sha256": meta.get("checkpoint_sha256", ""),
        "threshold": float(threshold),
        "time": meta.get("time") or _now(),
        "image_layer": image_layer.name,
        ROLE: role,
    }
    source = image_layer.metadata.get("source_path")
    if source:
        out["source_path"] = source
    for key, value in meta.items():
        out.setdefault(key, value)
    return out


def _place_like(layer, image_layer) -> None:
    """Same world placement as the image (scale/translate of the spatial + frame axes)."""
    layer.scale = image_layer.scale
    layer.translate = image_layer.translate


def _orphan(viewer, role: str, image_layer):
    """An output layer of ``role`` above ``image_layer`` whose own image layer is gone (closed,
    or replaced by another file).

    Re-used for the next image instead of adding a new layer: adding a layer costs napari
    tens of milliseconds, and the layer list stays as long as the user made it. Only layers
    already above the image qualify: moving a layer and then changing its data crashes
    napari 0.9's OpenGL canvas (seen under Mesa), and a layer below the image would hide."""
    names = {layer.name for layer in viewer.layers}
    above = list(viewer.layers)[viewer.layers.index(image_layer) + 1:]
    for layer in above:
        owner = layer.metadata.get("image_layer")
        if layer.metadata.get(ROLE) == role and owner and owner not in names and owner != image_layer.name:
            if role == "mask" and (prediction_state(layer) is None or has_manual_edits(layer)):
                continue  # hand-edited (or foreign) masks are the user's work: never recycled
            return layer
    return None


def _reuse(layer, name: str, data, image_layer):
    """Give an existing output layer a new name, new data and the image's placement."""
    layer.name = name
    layer.data = data
    layer.metadata = {ROLE: layer.metadata.get(ROLE)}
    _place_like(layer, image_layer)
    return layer


def _per_frame_target(viewer, name: str, role: str, n: Optional[int], hw, dtype, make_kwargs: dict, image_layer):
    """Find, re-use or create the Image layer ``name``; returns it (data: array for 2D, FrameStack for T frames).

    A layer of another shape (the image layer now holds another image) gets new ``.data``
    rather than being removed and added again."""
    layer = _find(viewer, name, role)
    expected = tuple(hw) if n is None else (n,) + tuple(hw)
    fresh = (lambda: np.zeros(hw, np.float32)) if n is None else (lambda: FrameStack(n, hw, dtype))
    if layer is not None and tuple(layer.data.shape) != expected:
        layer.data = fresh()
        _place_like(layer, image_layer)
    if layer is None:
        layer = _orphan(viewer, role, image_layer)
        if layer is not None:
            return _reuse(layer, name, fresh(), image_layer)
        layer = viewer.add_image(fresh(), name=name, contrast_limits=(0.0, 1.0), metadata={ROLE: role},
                                 **make_kwargs)
        _place_like(layer, image_layer)
    return layer


def _set_float_frame(layer, frame: Optional[int], values: np.ndarray, on_screen: bool = True) -> None:
    if frame is None:
        data = layer.data
        if isinstance(data, np.ndarray) and data.shape == values.shape and data.dtype == np.float32 \
                and data.flags.writeable:
            data[...] = values  # in place: assigning .data makes napari re-derive dims and transforms
            layer.refresh()
        else:
            layer.data = np.asarray(values, dtype=np.float32)
    else:
        layer.data[frame] = values
        if on_screen:  # another frame is read when the slider gets there: no redraw now
            layer.refresh()


def _on_screen(viewer, image_layer, frame: Optional[int]) -> bool:
    return frame is None or current_frame(viewer, image_layer) == frame


def add_prediction_layers(viewer, image_layer, probability: np.ndarray, attention: Mapping[str, np.ndarray],
                          meta: Mapping, threshold: float, *, frame: Optional[int] = None,
                          resolve_edits: Optional[ResolveEdits] = None):
    """Create or update the mask, probability and attention layers of ``image_layer``.

    probability / attention maps: HxW floats in [0,1] at the image's size (one
    frame). ``frame`` is required for a T-frame layer. ``meta``: model,
    checkpoint_sha256, (time; defaults to now) and any extra keys. Returns the
    Labels layer; on "cancel" from ``resolve_edits`` nothing changes.
    """
    n = frame_count(image_layer)
    if n is not None and frame is None:
        raise ValueError(f"{image_layer.name!r} has {n} frames: say which frame this prediction is for")
    if n is None:
        frame = None
    hw = spatial_shape(image_layer)
    probability = np.asarray(probability, dtype=np.float32)
    if probability.shape != hw:
        raise ValueError(f"probability shape {probability.shape} != image shape {hw}")
    names = layer_names(image_layer.name)
    new_mask = binary_mask(probability, threshold)

    labels = _find(viewer, names["mask"], "mask")
    expected = hw if n is None else (n,) + hw
    if labels is not None and tuple(labels.data.shape) != expected:
        # another image in the same layer: the old mask belongs to the old image
        _reuse(labels, names["mask"], np.zeros(expected, np.uint8), image_layer)
        _STATES.pop(unwrap(labels), None)
    if labels is None:
        labels = _orphan(viewer, "mask", image_layer)
        if labels is not None:
            _reuse(labels, names["mask"], np.zeros(expected, np.uint8), image_layer)
            _STATES.pop(unwrap(labels), None)
    state = prediction_state(labels) if labels is not None else None
    edited, decision = None, DISCARD
    if labels is not None:
        edited = _edited_pixels(labels, state, frame)
        if edited.any():
            decision = _decide(resolve_edits, EditsFound(
                labels.name, int(edited.sum()), () if frame is None else (frame,), "new prediction"))
            if decision == CANCEL:
                return labels
            if decision == KEEP:
                new_mask = np.where(edited, np.asarray(_labels_frame(labels, frame)), new_mask).astype(np.uint8)
    run_meta = _run_metadata(image_layer, meta, threshold, "probability")
    on_screen = _on_screen(viewer, image_layer, frame)

    prob_layer = _per_frame_target(viewer, names["probability"], "probability", n, hw, np.float16,
                                   {"visible": False, "colormap": "gray"}, image_layer)
    _set_float_frame(prob_layer, frame, probability, on_screen)
    prob_layer.metadata.update(_frame_metadata(prob_layer.metadata, run_meta, frame))

    _show_attention(viewer, image_layer, attention, run_meta, n, hw, frame, on_screen)

    if labels is None:
        data = np.zeros(expected, np.uint8)  # for T frames: pages committed only as frames are written
        labels = viewer.add_labels(data, name=names["mask"], opacity=0.5, metadata={ROLE: "mask"})
        from .display import style_mask

        style_mask(labels)  # cyan: napari's first label colour vanishes on red mucosa
        _place_like(labels, image_layer)
        state = PredictionState(probability=prob_layer.data, threshold=float(threshold))
        _set_state(labels, state)
    elif state is None:
        state = PredictionState(probability=prob_layer.data, threshold=float(threshold))
        _set_state(labels, state)
    state.probability = prob_layer.data
    state.threshold = float(threshold)
    if edited is not None:
        _remember_edits(state, frame, edited, decision)
    _write_mask(labels, frame, new_mask)
    state.derived[frame] = binary_mask(probability, threshold)
    state.thresholds[frame] = float(threshold)
    labels.metadata.update(_frame_metadata(labels.metadata, {**run_meta, ROLE: "mask"}, frame))
    if on_screen or labels.data.ndim == 2:
        labels.refresh()
    return labels


def attention_layers(viewer, image_layer) -> list:
    """The attention layers of ``image_layer`` (any network)."""
    return [layer for layer in viewer.layers if layer.metadata.get(ROLE) == "attention"
            and layer.metadata.get("image_layer") == image_layer.name]


def _show_attention(viewer, image_layer, attention: Mapping[str, np.ndarray], run_meta: dict, n, hw, frame,
                    on_screen: bool) -> None:
    """One layer per map, named in plain words with the network and the paper's term, hidden
    until asked for, contrast set per map. The maps of another network (image or video) go:
    they would sit beside the new ones unnamed."""
    from . import display

    model = str(run_meta.get("model") or "")
    names = []
    for map_name, amap in attention.items():
        amap = np.asarray(amap, dtype=np.float32)
        if amap.shape != hw:
            amap = resize_map(amap, hw)
        name = display.attention_layer_name(image_layer.name, model, map_name)
        names.append(name)
        existing = _find(viewer, name, "attention")
        layer = _per_frame_target(viewer, name, "attention", n, hw, np.float16,
                                  {"colormap": ATTENTION_COLORMAP, "blending": "additive", "opacity": 0.6,
                                   "visible": False}, image_layer)
        _set_float_frame(layer, frame, amap, on_screen)
        if existing is None or on_screen:
            layer.contrast_limits = display.auto_contrast(amap)
        layer.metadata.update(_frame_metadata(layer.metadata, {
            **run_meta, ROLE: "attention", "attention_map": map_name,
            "description": " — ".join(display.attention_title(model, map_name))}, frame))
        _show_colorbar(layer)
    for layer in attention_layers(viewer, image_layer):
        if layer.name not in names:
            viewer.layers.remove(layer)


def _show_colorbar(layer) -> None:
    colorbar = getattr(layer, "colorbar", None)  # napari >= 0.5
    if colorbar is not None and not colorbar.visible:
        colorbar.visible = True


def live_layer(viewer, image_layer, hw=None):
    """The 2-D Labels layer ``NAME live``: the outline of the last frame Live showed (created on first use)."""
    name = layer_names(image_layer.name)["live"]
    layer = _find(viewer, name, "live")
    hw = tuple(hw or spatial_shape(image_layer))
    if layer is None:
        layer = viewer.add_labels(np.zeros(hw, np.uint8), name=name, opacity=1.0,
                                  metadata={ROLE: "live", "image_layer": image_layer.name})
        layer.colormap = mask_colormap()
        layer.scale, layer.translate = image_layer.scale[-2:], image_layer.translate[-2:]
    elif layer.data.shape != hw:
        layer.data = np.zeros(hw, np.uint8)
    return layer


def live_view_layer(viewer, image_layer, picture: Optional[np.ndarray] = None):
    """The 2-D RGB layer ``NAME live view`` that plays the video while Live runs (made on first use)."""
    name = layer_names(image_layer.name)["live_view"]
    layer = _find(viewer, name, "live_view")
    if layer is None:
        picture = np.zeros(spatial_shape(image_layer) + (3,), np.uint8) if picture is None else picture
        layer = viewer.add_image(picture, name=name, rgb=True,
                                 metadata={ROLE: "live_view", "image_layer": image_layer.name})
        layer.scale, layer.translate = image_layer.scale[-2:], image_layer.translate[-2:]
    return layer


def start_live_view(viewer, image_layer) -> list:
    """Put ``NAME live view`` in place of the video while Live plays: the video layer and its
    live outline are hidden, because napari re-slices every visible layer of the video at each
    frame on the UI thread. Both layers are made now (adding a layer stalls napari for a
    while), and kept afterwards (removing one runs a full garbage collection, ~0.6 s).
    Returns the layers hidden, for :func:`end_live_view`."""
    active = viewer.layers.selection.active
    outline_layer = live_layer(viewer, image_layer)
    hidden = [layer for layer in (image_layer, outline_layer) if layer.visible]
    for layer in hidden:
        layer.visible = False
    live_view_layer(viewer, image_layer).visible = True
    if active is not None and active in viewer.layers:
        viewer.layers.selection.active = active  # napari selects a new layer: give the user's choice back
    return hidden


def show_live_frame(viewer, image_layer, frame: int, picture: np.ndarray):
    """Show ``picture`` (HxWx3 uint8: ``frame`` of the video with its mask outlined, see
    ``napari_polyp.live``) in ``NAME live view`` and move napari's frame slider to ``frame``."""
    layer = live_view_layer(viewer, image_layer, picture)
    if layer.data.shape == picture.shape:
        layer.data[...] = picture  # in place: the texture is updated, not re-made
        # no thumbnail (and layer-list repaint) per frame: 7-20 ms of the UI thread's ~50 here
        layer.refresh(thumbnail=False, highlight=False, extent=False)
    else:
        layer.data = picture
    axis = viewer.dims.ndim - image_layer.ndim  # layers are right-aligned in the world's axes
    viewer.dims.set_point(axis, image_layer.translate[0] + frame * image_layer.scale[0])
    return layer


def end_live_view(viewer, image_layer, hidden, mask: Optional[np.ndarray] = None) -> None:
    """After Live: the view is hidden, the layers it stood in for come back at the last frame
    shown, and ``mask`` (that frame's mask, if one was shown) is outlined in ``NAME live``."""
    hidden = [layer for layer in hidden if layer in viewer.layers]
    if mask is not None and image_layer in viewer.layers:
        outline_layer = live_layer(viewer, image_layer, mask.shape)
        outline_layer.data[...] = outline(mask)  # in place while hidden: drawn once, when shown
        if outline_layer not in hidden:
            hidden.append(outline_layer)
    view = _find(viewer, layer_names(image_layer.name)["live_view"], "live_view")
    if view is not None:
        view.visible = False
    for layer in hidden:
        layer.visible = True


def _frame_metadata(existing: Mapping, run_meta: dict, frame: Optional[int]) -> dict:
    """Run metadata; for a frame of a video also a per-frame record under "frames"."""
    out = dict(run_meta)
    if frame is not None:
        frames = dict(existing.get("frames", {}))
        frames[int(frame)] = {k: run_meta[k] for k in ("model", "checkpoint_sha256", "threshold", "time")}
        out["frames"] = frames
        out["predicted_frames"] = sorted(frames)
    return out


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


# -- compare two networks ---------------------------------------------------------
def add_disagreement_layer(viewer, image_layer, probability_a: np.ndarray, probability_b: np.ndarray,
                           threshold: float, model_a: str, model_b: str, *, frame: Optional[int] = None):
    """Labels ``NAME disagreement``: 1 where only model A says lesion, 2 where only B does.

    Also a hidden ``NAME |pA-pB|`` Image. Returns the Labels layer; its metadata
    holds the models, the threshold, the disagreeing fraction and the Dice of A vs B.
    """
    n = frame_count(image_layer)
    frame = None if n is None else (0 if frame is None else int(frame))
    hw = spatial_shape(image_layer)
    a = binary_mask(probability_a, threshold).astype(bool)
    b = binary_mask(probability_b, threshold).astype(bool)
    diff = np.zeros(hw, np.uint8)
    diff[a & ~b] = 1
    diff[b & ~a] = 2
    dice, _ = dice_iou(a, b)  # the project's one definition (both empty: 1)
    name = layer_names(image_layer.name)["disagreement"]
    expected = hw if n is None else (n,) + hw
    layer = _find(viewer, name, "disagreement")
    if layer is not None and tuple(layer.data.shape) != expected:
        viewer.layers.remove(layer)
        layer = None
    if layer is None:
        layer = viewer.add_labels(np.zeros(expected, np.uint8), name=name, opacity=0.7,
                                  metadata={ROLE: "disagreement"})
        _place_like(layer, image_layer)
    _write_mask(layer, frame, diff)
    meta = {
        ROLE: "disagreement", "image_layer": image_layer.name, "model_a": model_a, "model_b": model_b,
        "threshold": float(threshold), "time": _now(), "disagreement_fraction": float((diff > 0).mean()),
        "dice_a_vs_b": dice, "labels": {1: f"only {model_a}", 2: f"only {model_b}"},
    }
    layer.metadata.update(meta if frame is None else _frame_metadata(
        layer.metadata, {**meta, "model": f"{model_a} vs {model_b}", "checkpoint_sha256": ""}, frame))
    layer.refresh()

    abs_name = f"{image_layer.name} |pA-pB|"
    abs_layer = _per_frame_target(viewer, abs_name, "probability_difference", n, hw, np.float16,
                                  {"visible": False, "colormap": "magma"}, image_layer)
    abs_layer.metadata.update({ROLE: "probability_difference", "image_layer": image_layer.name,
                               "model_a": model_a, "model_b": model_b})
    _set_float_frame(abs_layer, frame, np.abs(np.asarray(probability_a, np.float32) - np.asarray(probability_b, np.float32)))
    return layer
