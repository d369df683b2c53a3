"""The Review widget's edits beyond napari's brush: drafts that survive a crash, and
refining the mask from strokes.

A mixin of :class:`.review.ReviewWidget`; the drafts are :class:`napari_polyp.corrections.drafts.Drafts`
of the corrections folder, the refinement :func:`napari_polyp.corrections.refine.refine`.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from .. import layers as L


class ReviewEdits:
    """Drafts and refine-from-strokes of the Review widget (a mixin of ``ReviewWidget``)."""

    def write_draft(self) -> bool:
        """Write the open item's edited mask as its draft (nothing when it has no unsaved edits)."""
        labels = self.labels_layer()
        if self._drafts is None or self.current is None or labels is None or not self.is_dirty():
            return False
        try:
            self._drafts.save(self.session.stem(self.current), np.asarray(labels.data))
        except OSError as err:  # a full disk must not stop the editing: said once, in the status line
            self.status_label.setText(f"⚠ could not write the draft: {err}")
            return False
        return True

    def _discard_draft(self, index: Optional[int]) -> None:
        self._draft_timer.stop()
        if self._drafts is not None and index is not None and self.session is not None:
            self._drafts.discard(self.session.stem(index))

    def _offer_draft(self, labels) -> None:
        """A draft left by a crash (or a closed window) for the item now shown, else the mask of a
        save of it that was cut short before its record: restore or discard."""
        self.draft_offer.setVisible(False)
        if self._drafts is None or self.current is None:
            return
        index = self.current
        stem = self.session.stem(index)
        draft = self._drafts.load(stem)
        if draft is not None and self._differs(draft.mask, labels):
            changed = int(np.count_nonzero(draft.mask != np.asarray(labels.data)))
            self.draft_offer.ask(f"Unsaved edits of this mask from {draft.saved_at} ({changed} pixels) were kept "
                                 "as a draft.", [("Restore", lambda: self.restore_draft(index, draft.mask)),
                                                 ("Discard", lambda: self._discard_draft(index))])
            return
        found = self.session.dataset.unconfirmed_mask(stem)
        if found is not None and self._differs(found[0], labels):
            mask, path = found
            # its file stays in masks/ until the item is saved; a save then keeps it in history/
            self.draft_offer.ask(f"A save of this item was cut short before the manifest recorded it; its mask "
                                 f"is still in {path.parent.name}/{path.name}.",
                                 [("Restore", lambda: self.restore_draft(index, mask)),
                                  ("Discard", lambda: self.draft_offer.setVisible(False))])

    @staticmethod
    def _differs(mask: np.ndarray, labels) -> bool:
        return mask.shape == np.shape(labels.data) and not np.array_equal(mask, labels.data)

    def restore_draft(self, index: int, mask: np.ndarray) -> int:
        """Put a draft into the open mask (one undo step); returns the pixels changed."""
        from .cleanup import apply_to_labels

        labels = self.labels_layer()
        if labels is None or index != self.current:
            return 0
        changed = apply_to_labels(labels, lambda _plane: np.asarray(mask, np.uint8))
        self._update_reference()
        self.status_label.setText(f"draft restored: {changed} pixels (Ctrl+Z on the mask undoes it); save to keep it")
        return changed

    def strokes_layer(self, create: bool = False):
        """The stroke layer of the open item (1 = lesion, 2 = background), made on request."""
        return self.layers.make_strokes() if create else self.layers.strokes()

    def refine(self) -> int:
        """Re-segment the open mask from the strokes (network probability as the prior); one undo step.
        Returns the pixels changed (0 when nothing changed or something was wrong: see the status)."""
        from ..corrections.refine import StrokeError, refine, strokes_from_labels
        from .cleanup import apply_to_labels

        labels, strokes, image = self.labels_layer(), self.layers.strokes(), self.image_layer()
        state = L.prediction_state(labels) if labels is not None else None
        if labels is None or strokes is None or image is None:
            self._report_error("draw strokes first: Strokes, then paint 1 on the lesion and 2 on background")
            return 0
        probability = np.asarray(state.probability, np.float32) if state is not None else \
            np.asarray(labels.data, np.float32)  # a saved mask: its own pixels are the prior
        try:
            marks = strokes_from_labels(strokes.data, L.spatial_shape(image))
            changed = apply_to_labels(labels, lambda _mask: refine(L.image_frame(image), probability, marks))
        except StrokeError as err:
            self._report_error(str(err))
            return 0
        self._update_reference()
        self.viewer.layers.selection.active = strokes
        # the strokes stay the active layer, for more strokes: their Ctrl+Z takes back a stroke
        self.status_label.setText(f"refined: {changed} pixels changed (to undo it, select the mask layer "
                                  "and press Ctrl+Z; here Ctrl+Z takes back a stroke)")
        return changed
