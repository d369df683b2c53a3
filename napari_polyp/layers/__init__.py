"""Prediction outputs as napari layers, and re-thresholding without the network.

For an image layer called ``NAME`` a run creates (or updates):

- ``NAME mask``: Labels (1 = lesion), editable with napari's paint/erase/fill;
- ``NAME probability``: Image, hidden, float in [0, 1];
- ``NAME: where NETWORK looked (PAPER TERM)``: one Image per attention map of the
  model (plain words from :mod:`napari_polyp.display`), at the image's size,
  hidden until shown, contrast per map, a colour bar, additive blending.

A video (T x H x W x 3) gets T-stacked layers; a frame that has not been
predicted yet reads as 0. The masks of a video are a zarr array in memory
(:func:`label_planes`: one compressed chunk a frame, only the frames written); probabilities and
attention of a video live in a sparse :class:`FrameStack` (float16) that holds
only the predicted frames.

The probabilities behind each mask are kept (per Labels layer, in ``_edits``),
so :func:`rethreshold` re-derives the mask at a new threshold without
running the network. Manual edits are tracked as the pixels where the Labels
data differs from the last mask derived from the probabilities; they are never
dropped without asking: ``resolve_edits(EditsFound) -> "discard" | "keep" |
"cancel"`` decides ("keep", the default when nobody is asked, re-thresholds
only the pixels nobody edited).

One concern per module, this package re-exports what the rest of the code uses:

- ``_frames``: frames of an image layer (count, the one on screen, pixels) and ``FrameStack``;
- ``_edits``: the state behind each mask, manual edits, ``rethreshold``;
- ``_prediction``: the layers of a run (mask, probability, attention, disagreement);
- ``_live``: the layers Live plays in.
"""
from ..conventions import ROLE  # metadata key: "mask" | "probability" | "attention" | "disagreement" | ...
from ._edits import (
    CANCEL,
    DISCARD,
    KEEP,
    MASK_ROLES,
    EditsFound,
    PredictionState,
    ResolveEdits,
    has_manual_edits,
    is_editable_mask,
    is_mask_role,
    prediction_state,
    rethreshold,
    unwrap,
)
from ._frames import (
    FrameStack,
    current_frame,
    frame_count,
    image_frame,
    label_frame_axis,
    label_planes,
    spatial_shape,
)
from ._live import end_live_view, live_layer, live_view_layer, show_live_frame, start_live_view
from ._prediction import (
    ATTENTION_COLORMAP,
    add_disagreement_layer,
    add_prediction_layers,
    attention_layers,
    layer_names,
    show_saved_mask,
)

__all__ = [
    "ATTENTION_COLORMAP",
    "CANCEL",
    "DISCARD",
    "EditsFound",
    "FrameStack",
    "KEEP",
    "MASK_ROLES",
    "PredictionState",
    "ROLE",
    "ResolveEdits",
    "add_disagreement_layer",
    "add_prediction_layers",
    "attention_layers",
    "current_frame",
    "end_live_view",
    "frame_count",
    "label_planes",
    "has_manual_edits",
    "image_frame",
    "is_editable_mask",
    "is_mask_role",
    "label_frame_axis",
    "layer_names",
    "live_layer",
    "live_view_layer",
    "prediction_state",
    "rethreshold",
    "show_live_frame",
    "show_saved_mask",
    "spatial_shape",
    "start_live_view",
    "unwrap",
]
