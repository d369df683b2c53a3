"""The "Clean up mask" dock widget: one button per clean-up action.

Each action works on the active Labels layer (for a T x H x W layer: the frame
the viewer shows) and writes only the pixels it changes through
``Labels.data_setitem``, so every action is one step of the layer's own undo
history: napari's Undo (Ctrl+Z on the layer) or the Undo button here takes it back.
The actions themselves are the pure functions of
:mod:`napari_polyp.corrections.cleanup`.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
from qtpy.QtWidgets import (
    QFormLayout,
    QGridLayout,
    QHBoxLayout,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from .. import layers as L
from ._common import text_label


def apply_to_labels(layer, action, frame: tuple = (), **kwargs) -> int:
    """Apply a clean-up ``action`` to one plane of a Labels layer, undoably.

    Returns the number of pixels changed (0: nothing recorded in the history)."""
    plane = np.asarray(layer.data[frame] if frame else layer.data)
    result = action(plane, **kwargs)
    changed = np.nonzero(result != plane)
    if changed[0].size == 0:
        return 0
    indices = tuple(np.full(changed[0].shape, f, dtype=np.intp) for f in frame) + changed
    layer.data_setitem(indices, result[changed])  # one undo step, records old values
    return int(changed[0].size)


class CleanupWidget(QWidget):
    """Fill holes, remove small objects, keep largest, smooth, grow/shrink; Undo.

    ``preferred()``: the mask to act on when the active layer is not a mask (the workspace
    passes the open Review item's mask: after Strokes the stroke layer is active)."""

    def __init__(self, napari_viewer, parent=None, preferred=None):
        super().__init__(parent)
        from ..corrections import cleanup

        self.viewer = napari_viewer
        self.preferred = preferred
        self.cleanup = cleanup
        root = QVBoxLayout(self)

        form = QFormLayout()
        self.min_size_spin = QSpinBox()
        self.min_size_spin.setRange(1, 10_000_000)
        self.min_size_spin.setValue(64)
        self.min_size_spin.setSuffix(" px")
        self.min_size_spin.setToolTip("Objects with fewer pixels than this are removed")
        form.addRow("smallest object", self.min_size_spin)
        self.radius_spin = QSpinBox()
        self.radius_spin.setRange(1, 50)
        self.radius_spin.setValue(2)
        self.radius_spin.setSuffix(" px")
        self.radius_spin.setToolTip("Disk radius of the opening + closing that smooths the boundary")
        form.addRow("smoothing radius", self.radius_spin)
        root.addLayout(form)

        grid = QGridLayout()
        self.buttons = {}
        specs = [
            ("Fill holes", "Fill background enclosed by the object"),
            ("Remove small objects", "Remove objects smaller than the 'smallest object' size"),
            ("Keep largest", "Keep only the largest connected object"),
            ("Smooth", "Opening then closing with a disk of the 'smoothing radius'"),
            ("Grow 1 px", "Move the boundary out by one pixel"),
            ("Shrink 1 px", "Move the boundary in by one pixel"),
        ]
        for i, (name, tip) in enumerate(specs):
            button = QPushButton(name)
            button.setToolTip(tip + " (current frame of a video; undo with Ctrl+Z or Undo)")
            button.clicked.connect(lambda _=False, n=name: self.run_action(n))
            grid.addWidget(button, i // 2, i % 2)
            self.buttons[name] = button
        root.addLayout(grid)

        row = QHBoxLayout()
        self.undo_button = QPushButton("Undo")
        self.undo_button.setToolTip("Undo the last change to the mask (same as Ctrl+Z on the layer)")
        self.undo_button.clicked.connect(self.undo)
        self.redo_button = QPushButton("Redo")
        self.redo_button.clicked.connect(self.redo)
        row.addWidget(self.undo_button)
        row.addWidget(self.redo_button)
        root.addLayout(row)
        self.status_label = text_label("select a Labels layer (a mask)")
        root.addWidget(self.status_label)
        root.addStretch(1)

        self.viewer.layers.selection.events.active.connect(self._on_active_changed)
        self._on_active_changed()

    def labels_layer(self):
        """The active layer if it is a mask, else the preferred mask, else the topmost mask.
        Never a reference comparison, refine strokes or other overlay (``layers.is_editable_mask``):
        those are marks to look at, not a mask to clean."""
        active = self.viewer.layers.selection.active
        if L.is_editable_mask(active):
            return active
        preferred = self.preferred() if self.preferred is not None else None
        if L.is_editable_mask(preferred):
            return preferred
        for layer in reversed(self.viewer.layers):
            if L.is_editable_mask(layer):
                return layer
        return None

    def _on_active_changed(self, event=None) -> None:
        layer = self.labels_layer()
        for button in self.buttons.values():
            button.setEnabled(layer is not None)
        self.status_label.setText(f"acts on '{layer.name}'" if layer is not None
                                  else "select a Labels layer (a mask)")

    def _kwargs(self, name: str) -> dict:
        if name == "Remove small objects":
            return {"min_size": self.min_size_spin.value()}
        if name == "Smooth":
            return {"radius": self.radius_spin.value()}
        return {}

    def run_action(self, name: str) -> Optional[int]:
        """Apply one action (by its button name); returns pixels changed, None without a layer."""
        layer = self.labels_layer()
        if layer is None:
            self.status_label.setText("no Labels layer: run a network or add a Labels layer first")
            return None
        shown = L.current_frame(self.viewer, layer)
        frame = () if shown is None else (shown,)
        changed = apply_to_labels(layer, self.cleanup.ACTIONS[name], frame, **self._kwargs(name))
        where = f" (frame {frame[0]})" if len(frame) == 1 else ""
        self.status_label.setText(f"{name} on '{layer.name}'{where}: {changed} pixel(s) changed" if changed
                                  else f"{name} on '{layer.name}'{where}: nothing to change")
        return changed

    def undo(self) -> None:
        layer = self.labels_layer()
        if layer is not None:
            layer.undo()
            self.status_label.setText(f"undone on '{layer.name}'")

    def redo(self) -> None:
        layer = self.labels_layer()
        if layer is not None:
            layer.redo()
            self.status_label.setText(f"redone on '{layer.name}'")
