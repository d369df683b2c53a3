"""A guard for napari 0.9's OpenGL canvas: hide the 2-D layers while a video layer goes.

Qt (a timer), so it lives with the widgets; the Segment widget installs it on its viewer.
"""
from __future__ import annotations

import weakref

from qtpy.QtCore import QTimer

from .. import layers as L

_GUARDED: "weakref.WeakSet" = weakref.WeakSet()
REDRAW_PAUSE_MS = 100  # how long the other layers stay hidden after the frame axis goes


def would_drop_dimensions(layer, others) -> bool:
    """Whether removing ``layer`` leaves the viewer with fewer dimensions (e.g. the only video
    among 2-D layers): ``others`` are the layers that stay."""
    others = list(others)
    return bool(others) and layer.ndim > max(other.ndim for other in others)


def guard_dimension_drop(viewer) -> None:
    """Work around a crash of napari 0.9's OpenGL canvas (a segfault in glDrawArrays under Mesa,
    3 of 3 in a real session): when the only layer with a frame axis (a video) is removed while
    2-D layers are visible, the next draw of those layers happens before they are re-sliced for
    the fewer dimensions. They are hidden before the removal and shown again once the viewer has
    re-sliced (:data:`REDRAW_PAUSE_MS` later). Installed once per viewer."""
    real = L.unwrap(viewer)
    if real in _GUARDED:
        return
    _GUARDED.add(real)
    layers = real.layers

    def hide_until_resliced(event) -> None:
        index = getattr(event, "index", None)
        if not isinstance(index, int) or not 0 <= index < len(layers):
            return
        leaving = layers[index]
        others = [layer for i, layer in enumerate(layers) if i != index]
        if not would_drop_dimensions(leaving, others):
            return
        hidden = [layer for layer in others if layer.visible]
        for layer in hidden:
            layer.visible = False
        def show_again():
            for layer in hidden:
                if layer in layers:
                    layer.visible = True
        QTimer.singleShot(REDRAW_PAUSE_MS, show_again)

    layers.events.removing.connect(hide_until_resliced)
