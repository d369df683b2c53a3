"""The layers the Review tab shows: the item's image, its mask, the reference comparison and
the refine strokes, re-used from item to item.

Removing and re-adding a layer costs ~0.5 s under software OpenGL, so the image, mask and
reference layers are given new data instead. Layers are matched by name: through a plugin
dock's viewer proxy the same layer is a new object at each access.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from .. import display
from .. import layers as L

IMAGE_LAYER = "Review"
REFERENCE_LAYER = "Review reference"
STROKES_LAYER = "Review strokes"
MASK_LAYER = L.layer_names(IMAGE_LAYER)["mask"]


class ReviewLayers:
    """The Review tab's layers in ``viewer``; ``mask_visible`` / ``reference_visible`` /
    ``contour`` are the tab's display choices, read each time a layer is (re)styled."""

    def __init__(self, viewer):
        self.viewer = viewer
        self.mask_visible = True
        self.reference_visible = True
        self.contour = False
        self._tool_settings: dict = {}  # the annotator's brush size and mode, carried across items

    def layer(self, name: str):
        return self.viewer.layers[name] if name in self.viewer.layers else None

    def image(self):
        return self.layer(IMAGE_LAYER)

    def labels(self):
        from napari.layers import Labels

        layer = self.layer(MASK_LAYER)
        return layer if isinstance(layer, Labels) else None

    def strokes(self):
        return self.layer(STROKES_LAYER)

    def show_image(self, image: np.ndarray, source_path, frame: Optional[int] = None):
        """The item's image in the ``Review`` layer (made on first use); the view is reset when
        the size changes."""
        from napari.layers import Image

        layer = self.image()
        if layer is not None and not isinstance(layer, Image):
            self.viewer.layers.remove(layer)
            layer = None
        reset = layer is None or tuple(layer.data.shape) != tuple(image.shape)
        if layer is None:
            layer = self.viewer.add_image(image, name=IMAGE_LAYER, rgb=True)
        else:  # new data, even of another size: cheaper than a new layer (and its GL objects)
            layer.data = image
        layer.visible = True
        layer.metadata["source_path"] = str(source_path)
        if frame is not None:
            layer.metadata["frame"] = frame
        else:
            layer.metadata.pop("frame", None)
        if reset:
            self.viewer.reset_view()
        return layer

    def remove_outputs(self, keep_kept_maps: bool = False, network_maps: bool = False, mask: bool = False) -> None:
        """Drop the previous item's strokes and kept maps (kept ones stay while the same item is
        run again). ``network_maps`` drops the probability and attention (a saved mask has none),
        ``mask`` the mask and reference too (an item shown without any mask)."""
        labels = self.labels()
        if labels is not None:
            self._tool_settings = {"mode": labels.mode, "brush_size": labels.brush_size}
        mask_names = {MASK_LAYER, REFERENCE_LAYER}
        for layer in list(self.viewer.layers):
            role = layer.metadata.get(L.ROLE)
            if role == display.KEPT_ATTENTION:
                drop = not keep_kept_maps
            elif layer.name in mask_names:
                drop = mask
            else:
                drop = layer.name == STROKES_LAYER or (
                    network_maps and layer.metadata.get("image_layer") == IMAGE_LAYER)
            if drop:
                self.viewer.layers.remove(layer.name)

    def show_saved_mask(self, mask: np.ndarray, image_layer, meta: dict):
        """A saved mask, in the existing mask layer when there is one."""
        labels = self.labels()
        metadata = {"image_layer": IMAGE_LAYER, **meta}
        if labels is not None:
            L.show_saved_mask(labels, mask, image_layer, metadata)
        else:
            labels = self.viewer.add_labels(np.asarray(mask, dtype=np.uint8), name=MASK_LAYER, opacity=0.5,
                                            metadata={L.ROLE: "mask", **metadata})
            labels.scale, labels.translate = image_layer.scale, image_layer.translate
        return labels

    def hold_mask(self) -> None:
        """While the open item's network runs, the mask layer still holds the previous item's
        mask: hidden and not editable, so no stroke lands on it to be lost when the prediction
        does (``style_mask`` gives it back, with the tool ``remove_outputs`` kept)."""
        labels = self.labels()
        if labels is not None:
            labels.visible = False
            labels.editable = False

    def style_mask(self, labels) -> None:
        """Colour, visibility and the annotator's tool settings; the mask is made the active layer."""
        display.style_mask(labels, self.contour)
        labels.selected_label = 1
        labels.editable = True
        labels.visible = self.mask_visible
        for key in ("brush_size", "mode"):
            if key in self._tool_settings:
                try:
                    setattr(labels, key, self._tool_settings[key])
                except Exception:  # noqa: BLE001 -- a mode that does not apply: keep the default
                    pass
        self.viewer.layers.selection.active = labels

    def show_reference(self, reference: Optional[np.ndarray]) -> None:
        """The reference as true/false positive/negative against the mask shown now."""
        labels = self.labels()
        if reference is None or labels is None or np.shape(labels.data) != reference.shape:
            layer = self.layer(REFERENCE_LAYER)
            if layer is not None and layer.visible:
                layer.visible = False  # never another image's comparison
            return
        data = display.agreement(labels.data, reference)
        layer = self.layer(REFERENCE_LAYER)
        if layer is None:
            layer = self.viewer.add_labels(data, name=REFERENCE_LAYER, opacity=0.6,
                                           metadata={L.ROLE: "reference"})
            layer.colormap = display.agreement_colormap()
            layer.contour = 2
            layer.editable = False
            self.viewer.layers.selection.active = labels  # painting goes on in the mask
        else:
            layer.data = data
        if layer.visible != self.reference_visible:  # napari redraws on every assignment, even of the same value
            layer.visible = self.reference_visible

    def set_mask_visible(self, on: bool) -> None:
        self.mask_visible = on
        if self.labels() is not None:
            self.labels().visible = on

    def set_reference_visible(self, on: bool) -> None:
        self.reference_visible = on
        if self.layer(REFERENCE_LAYER) is not None:
            self.layer(REFERENCE_LAYER).visible = on

    def set_contour(self, on: bool) -> None:
        self.contour = on
        if self.labels() is not None:
            display.style_mask(self.labels(), on)

    def make_strokes(self):
        """The stroke layer of the open item (1 = lesion, 2 = background), made on request."""
        layer = self.strokes()
        image = self.image()
        if layer is None and image is not None:
            layer = self.viewer.add_labels(np.zeros(L.spatial_shape(image), np.uint8), name=STROKES_LAYER,
                                           opacity=0.9, metadata={L.ROLE: "strokes"})
            layer.colormap = display.agreement_colormap()  # 1 green (lesion), 2 magenta (background)
            layer.brush_size = 6
            layer.mode = "paint"
        return layer
