"""The layers of a run: mask, probability and attention maps of one image (or frame), the
disagreement of two networks, and a saved mask put back into its layer."""
from __future__ import annotations

import datetime as _dt
from typing import Mapping, Optional

import numpy as np

from ..conventions import ROLE  # metadata key: "mask" | "probability" | "attention" | "disagreement" | ...
from ..corrections.metrics import dice_iou
from ..inference.prediction import binary_mask
from ..inference.resample import resize_map
from ._edits import (
    CANCEL,
    DISCARD,
    KEEP,
    EditsFound,
    PredictionState,
    ResolveEdits,
    _decide,
    _edited_pixels,
    _forget_state,
    _labels_frame,
    _remember_edits,
    _set_state,
    _write_mask,
    has_manual_edits,
    prediction_state,
)
from ._frames import FrameStack, current_frame, frame_count, label_planes, spatial_shape

ATTENTION_COLORMAP = "inferno"


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
    """Same world placement as the image (scale/translate of the spatial + frame axes).

    Only what differs is set: napari re-derives the dims and redraws on every assignment, even of
    the same values (~20 ms a layer, seven layers an item: 0.15 s of each Review item's wait)."""
    if not np.array_equal(np.asarray(layer.scale), np.asarray(image_layer.scale)):
        layer.scale = image_layer.scale
    if not np.array_equal(np.asarray(layer.translate), np.asarray(image_layer.translate)):
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
        _reuse(labels, names["mask"], label_planes(hw, n), image_layer)
        _forget_state(labels)
    if labels is None:
        labels = _orphan(viewer, "mask", image_layer)
        if labels is not None:
            _reuse(labels, names["mask"], label_planes(hw, n), image_layer)
            _forget_state(labels)
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
        labels = viewer.add_labels(label_planes(hw, n), name=names["mask"], opacity=0.5, metadata={ROLE: "mask"})
        from ..display import style_mask

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
    from .. import display

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


def _frame_metadata(existing: Mapping, run_meta: dict, frame: Optional[int]) -> dict:
    """Run metadata; for a frame of a video also a per-frame record under "frames"."""
    out = dict(run_meta)
    if frame is not None:
        frames = dict(existing.get("frames", {}))
        frames[int(frame)] = {k: run_meta[k] for k in ("model", "checkpoint_sha256", "threshold", "time")}
        out["frames"] = frames
        out["predicted_frames"] = sorted(frames)
    return out


def show_saved_mask(labels_layer, mask: np.ndarray, image_layer, metadata: Mapping) -> None:
    """Put a saved (hand-checked) mask into an existing mask layer: new data and metadata,
    placed like ``image_layer``, and no probabilities behind it (a threshold leaves it alone)."""
    _reuse(labels_layer, labels_layer.name, np.asarray(mask, dtype=np.uint8), image_layer)
    labels_layer.metadata = {ROLE: "mask", **metadata}
    _forget_state(labels_layer)


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
        layer = viewer.add_labels(label_planes(hw, n), name=name, opacity=0.7,
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
