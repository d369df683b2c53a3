"""The "Review" dock widget: walk a folder of images (or a video's frames) one item at
a time, check or correct each mask from the keyboard, and save the results as a
corrections dataset.

Thin over the headless parts: :class:`napari_polyp.corrections.review.ReviewSession`
(items, status, the network's predictions and which network they belong to, workflow
rules, reference masks, scores, the item table, saving through ``commit``) and
:class:`napari_polyp.corrections.CorrectionsDataset` (crash-safe saving). The network
runs in a thread worker (:mod:`napari_polyp.jobs`). The widget is this module (state, opening,
navigation, saving) and its parts: the controls (:mod:`.review_ui`), the network choice and
prediction jobs (:mod:`.review_network`), drafts and refine (:mod:`.review_edits`), the table
(:class:`.review_table.ItemTable`) and the layers (:class:`.review_layers.ReviewLayers`).

Inside the workspace the network, checkpoint, TTA and threshold are those of its Segment
section (``model_source``): one model picker, one threshold. Changing the network (or its
checkpoint or TTA) drops the predictions of the old one; moving the threshold re-derives
the masks (and the table's Dice) from the kept probabilities.

Keys (napari actions, remappable in Preferences ▸ Shortcuts): see :mod:`.keys`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

import numpy as np
from qtpy.QtCore import QTimer, Signal
from qtpy.QtWidgets import QWidget

from .. import layers as L
from ..errors import UserError
from . import keys
from ._common import PredictorCache, default_predictor_factory, error_text
from .review_edits import ReviewEdits
from .review_layers import IMAGE_LAYER, REFERENCE_LAYER, STROKES_LAYER, ReviewLayers  # noqa: F401 (re-exported)
from .review_network import ReviewPredictions
from .review_ui import CANCEL, DISCARD, ORDERS, SAVE, ReviewControls  # noqa: F401 (re-exported)
from .review_video import ReviewVideo

DRAFT_AFTER_MS = 4000  # an edited mask is written as a draft this long after the edit that started a burst


class ReviewWidget(ReviewControls, ReviewPredictions, ReviewEdits, ReviewVideo, QWidget):
    """Source folder/video + corrections folder; the item table; Previous/Next;
    Accept / Corrected / Reject (each saves); note; progress; scores; run on all.

    ``predictor_factory(model, checkpoint, device)`` builds a predictor;
    ``ask_unsaved(item_name) -> "save" | "discard" | "cancel"`` is asked before
    leaving an item whose mask was edited and not saved (a dialog by default);
    ``model_source``: a Segment widget whose network, checkpoint, TTA and threshold are used;
    ``propagate_fn``: what Propagate fills a video's frames with (tests give a cheaper one).
    ``saved(record)`` is emitted after each save.
    """

    saved = Signal(object)

    def __init__(self, napari_viewer, predictor_factory: Optional[Callable] = None,
                 ask_unsaved: Optional[Callable[[str], str]] = None, model_source=None,
                 propagate_fn: Optional[Callable] = None, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.predictor_factory = predictor_factory or default_predictor_factory
        self.ask_unsaved = ask_unsaved or self._ask_unsaved_dialog
        self.model_source = model_source
        self.propagate_fn = propagate_fn  # what fills video frames from keys (default: napari_polyp.video.propagate)
        self.video_review = None  # corrections.video_review.VideoReview of a video's session
        self.session = None
        self.source_path: Optional[Path] = None
        self.dataset_path: Optional[Path] = None
        self._open_failed = False  # the last source or folder chosen could not be opened
        self.current: Optional[int] = None
        self.last_error: Optional[str] = None
        self.layers = ReviewLayers(napari_viewer)
        self._predictors = PredictorCache()
        self._worker = None
        self._runs_in_flight = 0  # prediction workers started and not finished (a run left behind included)
        self._predicting: Optional[dict] = None  # the job of the running prediction
        self._batch = None  # the "run on all" worker
        self._look_ahead = None  # the worker predicting the next item while this one is worked on
        self._look_ahead_index: Optional[int] = None  # the item it predicts
        self._awaiting: Optional[dict] = None  # the open item waits for the look-ahead's answer {token, index}
        self._token = 0  # which open() a network result belongs to
        self._basis = None  # the Predicted the open mask was derived from (None: a saved mask, or none)
        self._reopen_when_idle = False  # the open item's prediction went stale while the network ran
        self._running_text = ""  # the status line while the network runs on the open item
        self._choice_pending = False  # a change of network is being handled (see _on_choice_changed)
        self._notice = ""  # a warning about the open item kept under its line (e.g. items skipped to reach it)
        self._task_warned: set = set()  # (task, network) pairs already warned about
        self._drafts = None  # corrections.drafts.Drafts of the corrections folder
        self._draft_timer = QTimer(self)
        self._draft_timer.setSingleShot(True)
        self._draft_timer.setInterval(DRAFT_AFTER_MS)
        self._draft_timer.timeout.connect(self.write_draft)
        self.click_log: Optional[Callable[[], Optional[list]]] = None  # the open item's clicks (the workspace's)
        self._build_ui()
        self._connect_model_source()
        keys.register(self)
        self._on_model_changed()
        self._update_enabled()

    # -- choosing source and output ----------------------------------------------------------

    def export_table(self, path) -> Optional[Path]:
        """Write the item table (all items, Dice/IoU/status/network/changed/uncertainty) as CSV."""
        from napari.utils.notifications import show_info

        if self.session is None:
            self._report_error("nothing to export: open a folder first")
            return None
        try:
            written = self.session.write_table_csv(path)
        except OSError as err:
            self._report_error(f"could not write {path}: {err}")
            return None
        show_info(f"saved the table of {len(self.session)} items to {written}")
        return written

    def set_source(self, path) -> bool:
        """Review the images of a folder (or a video's frames)."""
        if not self._confirm_leave():
            return False
        return self._switch(Path(path), self.dataset_path)

    def set_dataset(self, path) -> bool:
        """Save corrections into this folder (created on the first save)."""
        if not self._confirm_leave():
            return False
        return self._switch(self.source_path, Path(path))

    def _switch(self, source: Optional[Path], dataset: Optional[Path]) -> bool:
        """Start reviewing ``source`` into ``dataset``; where it cannot open, the review on screen
        (its table, image and folders) stays as it was, under its own paths."""
        before = (self.source_path, self.dataset_path)
        self._set_paths(source, dataset)
        started = self._start_session()
        if not started and self._open_failed and self.session is not None:
            self._set_paths(*before)
            self.status_label.setText(f"{self.status_label.text()}; the review of {before[0].name} stays open")
        return started

    def _set_paths(self, source: Optional[Path], dataset: Optional[Path]) -> None:
        self.source_path, self.dataset_path = source, dataset
        self.source_edit.setText("" if source is None else str(source))
        self.dataset_edit.setText("" if dataset is None else str(dataset))

    def _start_session(self) -> bool:
        from ..corrections.review import ReviewSession

        if self.source_path is None or self.dataset_path is None:
            self.status_label.setText("now choose " + ("the images to review" if self.source_path is None
                                                       else "where to save the corrections"))
            return False
        self._open_failed = False
        try:
            session = ReviewSession(self.source_path, self.dataset_path)
        except Exception as err:  # noqa: BLE001 -- shown, never a traceback; the open review stays
            self._open_failed = True
            self._report_error(error_text(err))
            self._update_enabled()
            return False
        self.cancel_run_on_all()
        self.session = session
        self.session.use_model(self.choice())
        self.session.use_threshold(self.threshold())
        from ..corrections.drafts import Drafts

        self._drafts = Drafts(self.session.dataset.root)
        self._start_video_review()
        self.current = None
        self._basis = None
        self._refresh_list()
        if not len(self.session):
            self.status_label.setText(f"{self.source_path}: no images found")
            self._update_enabled()
            return False
        reference = self.session.reference_dir
        self.status_label.setText(f"{len(self.session)} items"
                                  + (f"; reference masks from {reference}" if reference else ""))
        self._open_readable(self.order(), None, +1, confirm=False)
        self._update_enabled()
        return True

    # -- the table --------------------------------------------------------------------------------
    def order(self) -> list:
        """The visible items in the chosen order (what Next / Previous walk)."""
        if self.session is None:
            return []
        visible = self.session.visible(self.unreviewed_check.isChecked())
        choice = self.order_combo.currentText()
        if choice == ORDERS[1]:
            return self.session.worst_first(visible)
        if choice == ORDERS[2]:
            ranked = self.video_review if self.video_review is not None else self.session
            return ranked.most_uncertain_first(visible)
        return visible

    def _refresh_list(self, *_):
        session = self.session
        self.item_list.fill([(i, self._row_of(i)) for i in self.order()] if session is not None else [])
        self.item_list.select(self.current)
        self._update_progress()

    def _update_row(self, index: int) -> None:
        if self.session is not None:
            self.item_list.update_row(index, self._row_of(index))
            self.item_list.select(self.current)

    def _on_row_changed(self) -> None:
        index = self.item_list.selected_index()
        if index is not None and index != self.current and not self.open_item(index):
            self.item_list.select(self.current)

    def _update_progress(self) -> None:
        self.progress_label.setText(self.session.progress_text() if self.session is not None else "0 / 0 reviewed")

    # -- navigation --------------------------------------------------------------------------
    def _neighbour(self, step: int) -> Optional[int]:
        """The readable item ``step`` rows away in the table as shown (its sorting included)."""
        return self.session.neighbour(self.item_list.indices(), self.current, step)

    def _open_readable(self, order, start: Optional[int], step: int, confirm: bool = True) -> bool:
        """Open the first item after ``start`` in ``order`` that can be read; an unreadable one
        is marked in the table (with the reason in the status line) and passed over."""
        skipped = []
        for index in self.session.ahead(order, start, step):
            if not self.session.is_readable(index):  # found so before (by the look-ahead, or Run on all)
                skipped.append(self.session.items[index].name)
                self._update_row(index)
                continue
            if self.open_item(index, confirm=confirm):
                if skipped:
                    self.last_error = f"skipped {', '.join(skipped)}: cannot be read (marked ⚠ in the table)"
                    self._notice = self.last_error
                    self._update_progress()
                    self._show_item_state()
                return True
            if self.session.is_readable(index):
                return False  # stayed for another reason (the user chose to stay on unsaved edits)
            skipped.append(self.session.items[index].name)
            confirm = False  # the user already agreed to leave
        return False

    def next(self) -> bool:
        if self.session is None:
            return False
        if self._neighbour(+1) is None:
            self.status_label.setText("this was the last item" + (" to review" if self.unreviewed_check.isChecked() else ""))
            return False
        return self._open_readable(self.item_list.indices(), self.current, +1)

    def previous(self) -> bool:
        if self.session is None:
            return False
        if self._neighbour(-1) is None:
            self.status_label.setText("this is the first item")
            return False
        return self._open_readable(self.item_list.indices(), self.current, -1)

    @property
    def busy(self) -> bool:
        """The network runs on the open item (or the look-ahead does, and the item waits for it)."""
        return self._worker is not None or self._awaiting is not None

    def predict_current(self) -> None:
        """Run the network on the open item again (the Run button, key R)."""
        if self.current is not None and not self.busy:
            self.session.forget(self.current)
            self.open_item(self.current, force_predict=True)

    def open_item(self, index: Optional[int], force_predict: bool = False, confirm: bool = True) -> bool:
        """Show an item: its saved mask if it has one, else the network's prediction.

        An item whose file cannot be read is not opened: the item on screen stays the current
        one (its image, mask and line), the table marks the unreadable row, False is returned."""
        if self.session is None or index is None:
            return False
        if confirm and not self._confirm_leave():
            return False
        self.session.refresh()
        self.session.use_model(self.choice())
        item = self.session.items[index]
        try:
            image = self.session.image(index)  # read before anything changes on screen
        except UserError as err:
            self._update_row(index)
            self._update_progress()
            self._report_error(f"{err}: skipped (it cannot be saved)")
            return False
        self.last_error = None
        self._notice = ""
        self._token += 1
        self._awaiting = None  # whatever the look-ahead brings for an item left behind is only kept
        same_item = index == self.current
        self.current = index
        self._basis = None
        image_layer = self.layers.show_image(image, item.source_path, item.frame)
        record = self.session.record(index)
        self.note_edit.setText(record.note if record is not None else "")
        saved = None if force_predict else self.session.saved_mask(index)
        if saved is not None and saved.shape != image.shape[:2]:
            self._report_error(f"the saved mask of {item.name} is {saved.shape}, the image {image.shape[:2]}: "
                               "predicting again")
            saved = None
        kept = self.propagated_prediction(index) or self.session.prediction(index)
        # predicted before but kept only compressed (not among the last KEEP_WHOLE predicted): predicted again
        will_predict = saved is None and (kept is not None or self.auto_check.isChecked() or force_predict
                                          or self.session.was_predicted(index))
        self.layers.remove_outputs(keep_kept_maps=same_item, network_maps=not will_predict,
                                   mask=saved is None and not will_predict)
        if saved is not None:
            self._show_saved(index, saved, record, image_layer)
        elif kept is not None:
            self._show_prediction(index, kept, image_layer)
        elif will_predict:
            self.layers.hold_mask()
            self._predict(index, image)
        else:
            self.status_label.setText(f"{item.name}: not predicted with {self.choice().label()} yet "
                                      "(Run, or tick \"predict on open\")")
        self.item_list.select(self.current)
        self._show_item_state()
        self._update_enabled()
        if not self.busy:  # shown already (saved, or predicted ahead): the next one meanwhile
            self.look_ahead()
        return True

    # -- layers -----------------------------------------------------------------------------------
    def _layer(self, name: str):
        return self.layers.layer(name)

    def labels_layer(self):
        return self.layers.labels()

    def image_layer(self):
        return self.layers.image()

    def _show_saved(self, index: int, saved: np.ndarray, record, image_layer) -> None:
        item = self.session.items[index]
        meta = {"model": record.model, "checkpoint_sha256": record.checkpoint_sha256,
                "threshold": record.threshold, "source_path": str(item.source_path),
                "saved_version": record.version}
        labels = self.layers.show_saved_mask(saved, image_layer, meta)
        self._after_labels(labels)
        self.session.score(index, prediction=self.session.saved_prediction(index), corrected=saved)
        self._update_row(index)
        self.status_label.setText(f"{item.name}: saved mask (version {record.version}, {record.status})")

    def _show_prediction(self, index: int, kept, image_layer) -> None:
        """A prediction of the open item, as its mask (at the threshold chosen now) and maps."""
        provenance = kept.provenance
        # The mask layer is re-used across items: what it holds is the previous item's (its unsaved
        # edits were already saved or discarded by _confirm_leave), never to be carried over.
        labels = L.add_prediction_layers(self.viewer, image_layer, kept.probability, kept.attention,
                                         provenance.metadata(), self.threshold(),
                                         resolve_edits=lambda _found: L.DISCARD)
        self._basis = kept
        self._after_labels(labels)
        self._update_row(index)
        item = self.session.items[index]
        if provenance.propagated_from is not None:
            unsure = self.video_review is not None and self.video_review.is_unsure(index)
            self.status_label.setText(f"{item.name}: the mask of key frame {provenance.propagated_from}, carried "
                                      "here by optical flow and the click refiner"
                                      + ("; past a jump of the view the flow does not explain: check it" if unsure
                                         else ""))
        else:
            self.status_label.setText(f"{item.name}: {provenance.choice.label()} prediction"
                                      + ("" if provenance.checkpoint_sha256 else " (untrained: not meaningful)")
                                      + (f"; {provenance.second_opinion}" if provenance.second_opinion else ""))

    def _after_labels(self, labels) -> None:
        """Style the mask, remember it as clean, and show the reference comparison."""
        self.layers.style_mask(labels)
        self.session.mark_clean(self.current, labels.data)
        self._update_reference()
        self._offer_draft(labels)
        labels.events.paint.connect(self._on_painted)
        labels.events.data.connect(self._on_painted)

    def _on_painted(self, *_):
        self._update_reference()
        if not self._draft_timer.isActive():  # a burst of edits: one draft a few seconds after it starts
            self._draft_timer.start()

    def _update_reference(self) -> None:
        if self.session is not None and self.current is not None:
            self.layers.show_reference(self.session.reference(self.current))

    # -- saving ---------------------------------------------------------------------------------
    def is_dirty(self) -> bool:
        labels = self.labels_layer()
        return self.session is not None and labels is not None and self.session.is_dirty(self.current, labels.data)

    def save(self, status: str):
        """Save the open item's mask with ``status``; returns the record (None if nothing saved)."""
        from napari.utils.notifications import show_info

        labels = self.labels_layer()
        if self.session is None or self.current is None or labels is None:
            self._report_error("nothing to save: open an item first" if labels is None or self.current is None
                               else "choose a corrections folder first")
            return None
        if self.busy:
            self._report_error("the network is still running on this item")
            return None
        index = self.current
        mask = np.asarray(labels.data)
        if mask.ndim != 2:
            self._report_error(f"the mask has shape {mask.shape}; expected one 2-D mask")
            return None
        try:
            record = self._commit(index, mask, status, labels)
        except Exception as err:  # noqa: BLE001 -- the previous version is intact; say why
            self._report_error(f"not saved: {error_text(err)}" if not str(err).startswith("not saved")
                               else error_text(err))
            return None
        self.session.mark_clean(index, mask)
        self._discard_draft(index)  # saved: the draft has done its work
        labels.metadata["saved_version"] = record.version
        self._update_row(index)
        self._update_progress()
        item = self.session.items[index]
        what = f"{record.pixels_changed} pixels changed" if record.pixels_changed is not None else "no prediction"
        message = f"saved {item.name} as {record.status} (version {record.version}, {what})"
        self.status_label.setText(message)
        show_info(message)
        self._show_item_state()
        self.saved.emit(record)
        self._advance_after_save()
        return record

    def _commit(self, index: int, mask: np.ndarray, status: str, labels):
        """The save itself: the mask on screen, with the prediction it was derived from (at the
        mask's own threshold) or, for a re-opened saved mask, its record's provenance."""
        state = L.prediction_state(labels)
        basis = self._basis if state is not None else None
        image_layer = self.image_layer()
        strokes = self.layers.strokes()
        return self.session.commit(
            index, mask, status, basis=basis, threshold=state.threshold if state is not None else None,
            image=np.asarray(image_layer.data) if image_layer is not None else None,
            note=self.note_edit.text().strip(),
            strokes=np.asarray(strokes.data) if strokes is not None and np.any(strokes.data) else None,
            clicks=self.click_log() if self.click_log is not None else None)

    def _advance_after_save(self) -> None:
        if self.advance_check.isChecked():
            if self.unreviewed_check.isChecked():
                self._refresh_list()
            self._open_readable(self.item_list.indices(), self.current, +1, confirm=False)
        elif self.unreviewed_check.isChecked():
            self._refresh_list()

    def _confirm_leave(self) -> bool:
        """Before leaving an item with unsaved edits: save, discard or stay."""
        if self.current is None or self.session is None or not self.is_dirty():
            return True
        answer = self.ask_unsaved(self.session.items[self.current].name)
        if answer == CANCEL:
            return False
        if answer == DISCARD:
            self._discard_draft(self.current)
        if answer == SAVE:
            advance = self.advance_check.isChecked()
            self.advance_check.setChecked(False)
            try:
                return self.save("corrected") is not None
            finally:
                self.advance_check.setChecked(advance)
        return True

    # -- state display ------------------------------------------------------------------------
    def mask_origin(self) -> str:
        """Which network the open mask comes from, in words."""
        record = self.session.record(self.current) if self.current is not None else None
        if self._basis is not None:
            return self._basis.provenance.choice.label()
        if record is not None and self.labels_layer() is not None:
            return f"{record.model or 'no network'} (saved)"
        return "none yet"

    def _show_item_state(self) -> None:
        if self.session is None or self.current is None:
            self.item_label.setText("")
            return
        index = self.current
        item = self.session.items[index]
        record = self.session.record(index)
        status = record.status if record is not None else "unreviewed"
        saved = f", version {record.version} by {record.reviewer}" if record is not None else ""
        self.item_label.setText(f"{index + 1} / {len(self.session)}: {item.name} — {status}{saved} · "
                                f"mask: {self.mask_origin()}" + (f"\n⚠ {self._notice}" if self._notice else ""))
        self.scores_label.setText(self.session.scores_text(index))

    def _report_error(self, message: str) -> None:
        from napari.utils.notifications import show_warning

        self.last_error = message
        self.status_label.setText(f"⚠ {message}")
        show_warning(message)

    def closeEvent(self, event):  # noqa: N802 (Qt)
        self.cancel_run_on_all()
        if self._look_ahead is not None:
            self._look_ahead.quit()
        super().closeEvent(event)
