"""Live on a video: ``NAME live view`` plays in place of the video, and ``NAME live`` keeps the
outline of the last frame shown, while the frame slider stays on that frame."""
from __future__ import annotations

from typing import Optional

import numpy as np

from ..conventions import ROLE
from ..display import mask_colormap, outline
from ._frames import spatial_shape
from ._prediction import _find, layer_names


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
    ``napari_polyp.inference.live``) in ``NAME live view`` and move napari's frame slider to ``frame``."""
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
    if mask is not None and image_layer in viewer.layers:
        _hide_when_the_frame_moves(viewer, live_layer(viewer, image_layer, mask.shape))


def _hide_when_the_frame_moves(viewer, outline_layer) -> None:
    """The outline is of one frame (a 2-D layer, shown on every frame): hidden once the frame
    slider leaves that frame (it had stood on whichever frame one moved to)."""
    frame_point = tuple(viewer.dims.point)

    def on_step(_event=None):
        if tuple(viewer.dims.point) == frame_point and outline_layer in viewer.layers:
            return
        viewer.dims.events.current_step.disconnect(on_step)
        if outline_layer in viewer.layers:
            outline_layer.visible = False

    viewer.dims.events.current_step.connect(on_step)
