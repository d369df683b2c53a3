"""The "Review" dock widget: go through a folder of images (or a video's frames),
check or correct each mask, and save the results as a corrections dataset.

Thin over the headless parts: :class:`napari_polyp.corrections.review.ReviewSession`
(items, status, navigation, reference masks, scores) and
:class:`napari_polyp.corrections.CorrectionsDataset` (crash-safe saving). The
network runs in a napari ``thread_worker``; layers come from
:func:`napari_polyp.layers.add_prediction_layers`.

Keys (on the canvas): PageDown = next item, PageUp = previous item.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QCheckBox,
    QDoubleSpinBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QPushButton,
    QWidget,
)

from ._common import (
    RANDOM_WEIGHTS,
    CheckpointCombo,
    PredictorCache,
    column_with_form,
    default_predictor_factory,
    model_combo,
    path_row,
    text_label,
)

IMAGE_LAYER = "Review"
REFERENCE_LAYER = "Review reference"
NEXT_KEY, PREVIOUS_KEY = "PageDown", "PageUp"  # free in napari's default key map
SAVE, DISCARD, CANCEL = "save", "discard", "cancel"
STATUS_MARK = {"unreviewed": "·", "accepted": "✓", "corrected": "✎", "rejected": "✗"}


class ReviewWidget(QWidget):
    """Source folder/video + corrections folder; list of items with their status;
    Previous/Next; Accept / Corrected / Reject (each saves); note; progress; scores.

    ``predictor_factory(model, checkpoint, device)`` builds a predictor;
    ``ask_unsaved(item_name) -> "save" | "discard" | "cancel"`` is asked before
    leaving an item whose mask was edited and not saved (a dialog by default).
    """

    def __init__(self, napari_viewer, predictor_factory: Optional[Callable] = None,
                 ask_unsaved: Optional[Callable[[str], str]] = None, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.predictor_factory = predictor_factory or default_predictor_factory
        self.ask_unsaved = ask_unsaved or self._ask_unsaved_dialog
        self.session = None
        self.source_path: Optional[Path] = None
        self.dataset_path: Optional[Path] = None
        self.current: Optional[int] = None
        self.last_error: Optional[str] = None
        self._predictors = PredictorCache()
        self._worker = None
        self._token = 0  # which open() a network result belongs to
        self._predicted: Optional[np.ndarray] = None  # the network's mask of the open item
        self._prediction_is_new = False  # True: not yet stored in the dataset
        self._clean: Optional[np.ndarray] = None  # the mask as last opened/saved (to spot unsaved edits)
        self._labels_settings: dict = {}
        self._build_ui()
        self._bind_keys()
        self._on_model_changed()
        self._update_enabled()

    # -- UI --------------------------------------------------------------------------------
    def _build_ui(self) -> None:
        root, form = column_with_form(self)

        source_row, self.source_edit, (self.images_button, self.video_button) = path_row(
            "a folder of images, or a video", [
                ("Images…", "Review every image of a folder (masks/ beside images/ = reference masks)",
                 self._choose_images),
                ("Video…", "Review the frames of a video", self._choose_video),
            ], read_only=True)
        form.addRow("review", source_row)
        output_row, self.dataset_edit, (self.dataset_button,) = path_row(
            "the corrections dataset folder",
            [("Folder…", "Where corrected masks are saved (created if new; training reads it)",
              self._choose_dataset)], read_only=True)
        form.addRow("save to", output_row)

        self.model_combo = model_combo()
        self.model_combo.currentIndexChanged.connect(self._on_model_changed)
        form.addRow("model", self.model_combo)
        self.checkpoint_combo = CheckpointCombo(extras=[(RANDOM_WEIGHTS, False)])
        form.addRow("checkpoint", self.checkpoint_combo)
        self.threshold_spin = QDoubleSpinBox()
        self.threshold_spin.setRange(0.01, 0.99)
        self.threshold_spin.setSingleStep(0.05)
        self.threshold_spin.setValue(0.5)
        form.addRow("threshold", self.threshold_spin)

        options = QHBoxLayout()
        self.unreviewed_check = QCheckBox("only unreviewed")
        self.unreviewed_check.toggled.connect(self._refresh_list)
        self.advance_check = QCheckBox("next after saving")
        self.advance_check.setChecked(True)
        options.addWidget(self.unreviewed_check)
        options.addWidget(self.advance_check)
        root.addLayout(options)

        self.progress_label = QLabel("0 / 0 reviewed")
        self.progress_label.setStyleSheet("font-weight: bold;")
        root.addWidget(self.progress_label)
        self.item_list = QListWidget()
        self.item_list.setMinimumHeight(120)
        self.item_list.currentRowChanged.connect(self._on_row_changed)
        root.addWidget(self.item_list)

        nav = QHBoxLayout()
        self.previous_button = QPushButton("◀ Previous")
        self.previous_button.setToolTip(f"Previous item ({PREVIOUS_KEY})")
        self.previous_button.clicked.connect(self.previous)
        self.next_button = QPushButton("Next ▶")
        self.next_button.setToolTip(f"Next item ({NEXT_KEY})")
        self.next_button.clicked.connect(self.next)
        self.predict_button = QPushButton("Predict again")
        self.predict_button.setToolTip("Run the network on this item again (replaces the mask shown)")
        self.predict_button.clicked.connect(lambda: self.open_item(self.current, force_predict=True))
        nav.addWidget(self.previous_button)
        nav.addWidget(self.next_button)
        nav.addWidget(self.predict_button)
        root.addLayout(nav)

        self.item_label = text_label()
        root.addWidget(self.item_label)
        self.note_edit = QLineEdit()
        self.note_edit.setPlaceholderText("note (optional), saved with the item")
        root.addWidget(self.note_edit)

        buttons = QHBoxLayout()
        self.status_buttons = {}
        for status, text, tip in (
            ("accepted", "Accept", "The mask is right as predicted: save it (saved as 'corrected' if you edited it)"),
            ("corrected", "Save corrected", "Save the edited mask"),
            ("rejected", "Reject", "The item is unusable (bad image, nothing to segment): save as rejected"),
        ):
            button = QPushButton(text)
            button.setToolTip(tip)
            button.clicked.connect(lambda _=False, s=status: self.save(s))
            buttons.addWidget(button)
            self.status_buttons[status] = button
        root.addLayout(buttons)

        self.scores_label = text_label(selectable=True)
        root.addWidget(self.scores_label)
        self.status_label = text_label("choose the images to review and where to save the corrections")
        root.addWidget(self.status_label)
        root.addStretch(1)

    def _bind_keys(self) -> None:
        viewer = self.viewer
        viewer.bind_key(NEXT_KEY, lambda _viewer: self.next(), overwrite=True)
        viewer.bind_key(PREVIOUS_KEY, lambda _viewer: self.previous(), overwrite=True)

        def unbind(*_):
            for key in (NEXT_KEY, PREVIOUS_KEY):
                try:
                    viewer.bind_key(key, None)
                except Exception:  # noqa: BLE001 -- the viewer may already be gone
                    pass

        self.destroyed.connect(unbind)

    def _update_enabled(self) -> None:
        ready = self.session is not None and len(self.session) > 0
        has_item = ready and self.current is not None
        for button in (self.previous_button, self.next_button):
            button.setEnabled(ready)
        for button in self.status_buttons.values():
            button.setEnabled(has_item and not self.busy)
        self.predict_button.setEnabled(has_item and not self.busy)

    # -- model / checkpoint -------------------------------------------------------------
    def _on_model_changed(self, *_):
        self.checkpoint_combo.fill(self.model_combo.currentText())

    def add_checkpoint_path(self, path) -> None:
        self.checkpoint_combo.add_path(path)

    def select_random_weights(self) -> None:
        self.checkpoint_combo.setCurrentIndex(self.checkpoint_combo.findText(RANDOM_WEIGHTS))

    def checkpoint(self):
        """The selected checkpoint: a path string, or False for random weights."""
        return self.checkpoint_combo.selected() or False

    def predictor(self, model_name: str, checkpoint, device: str = "auto"):
        return self._predictors.get(self.predictor_factory, model_name, checkpoint, device)

    # -- choosing source and output ----------------------------------------------------------
    def _choose_images(self):
        folder = QFileDialog.getExistingDirectory(self, "Folder of images to review")
        if folder:
            self.set_source(folder)

    def _choose_video(self):
        path, _ = QFileDialog.getOpenFileName(self, "Video to review", "", "Videos (*.mp4 *.avi *.mov *.mkv)")
        if path:
            self.set_source(path)

    def _choose_dataset(self):
        folder = QFileDialog.getExistingDirectory(self, "Corrections dataset folder (new or existing)")
        if folder:
            self.set_dataset(folder)

    def set_source(self, path) -> bool:
        """Review the images of a folder (or a video's frames)."""
        if not self._confirm_leave():
            return False
        self.source_path = Path(path)
        self.source_edit.setText(str(path))
        return self._start_session()

    def set_dataset(self, path) -> bool:
        """Save corrections into this folder (created on the first save)."""
        if not self._confirm_leave():
            return False
        self.dataset_path = Path(path)
        self.dataset_edit.setText(str(path))
        return self._start_session()

    def _start_session(self) -> bool:
        from ..corrections.review import ReviewSession

        if self.source_path is None or self.dataset_path is None:
            self.status_label.setText("now choose " + ("the images to review" if self.source_path is None
                                                       else "where to save the corrections"))
            return False
        try:
            self.session = ReviewSession(self.source_path, self.dataset_path)
        except Exception as err:  # noqa: BLE001 -- shown, never a traceback
            self._report_error(f"cannot open {self.source_path}: {err}")
            self.session = None
            self._update_enabled()
            return False
        self.current = None
        self._clean = None
        self._refresh_list()
        if not len(self.session):
            self.status_label.setText(f"{self.source_path}: no images found")
            self._update_enabled()
            return False
        reference = self.session.reference_dir
        self.status_label.setText(f"{len(self.session)} items"
                                  + (f"; reference masks from {reference}" if reference else ""))
        first = self.session.first(self.unreviewed_check.isChecked())
        self.open_item(first if first is not None else 0, confirm=False)
        return True

    # -- the list -----------------------------------------------------------------------------
    def _item_text(self, index: int) -> str:
        status = self.session.status(index)
        return f"{STATUS_MARK[status]} {self.session.items[index].name}  ({status})"

    def _refresh_list(self, *_):
        self.item_list.blockSignals(True)
        self.item_list.clear()
        if self.session is not None:
            for index in self.session.visible(self.unreviewed_check.isChecked()):
                entry = QListWidgetItem(self._item_text(index))
                entry.setData(Qt.UserRole, index)
                self.item_list.addItem(entry)
        self.item_list.blockSignals(False)
        self._select_current_row()
        self._update_progress()

    def _select_current_row(self) -> None:
        self.item_list.blockSignals(True)
        row = -1
        for r in range(self.item_list.count()):
            if self.item_list.item(r).data(Qt.UserRole) == self.current:
                row = r
                break
        self.item_list.setCurrentRow(row)
        self.item_list.blockSignals(False)

    def _update_row(self, index: int) -> None:
        for r in range(self.item_list.count()):
            entry = self.item_list.item(r)
            if entry.data(Qt.UserRole) == index:
                entry.setText(self._item_text(index))

    def _on_row_changed(self, row: int) -> None:
        if row < 0:
            return
        index = self.item_list.item(row).data(Qt.UserRole)
        if index != self.current and not self.open_item(index):
            self._select_current_row()

    def _update_progress(self) -> None:
        self.progress_label.setText(self.session.progress_text() if self.session is not None else "0 / 0 reviewed")

    # -- navigation --------------------------------------------------------------------------
    def next(self) -> bool:
        if self.session is None:
            return False
        index = self.session.next_index(self.current, self.unreviewed_check.isChecked())
        if index is None:
            self.status_label.setText("this was the last item" + (" to review" if self.unreviewed_check.isChecked() else ""))
            return False
        return self.open_item(index)

    def previous(self) -> bool:
        if self.session is None:
            return False
        index = self.session.previous_index(self.current, self.unreviewed_check.isChecked())
        if index is None:
            self.status_label.setText("this is the first item")
            return False
        return self.open_item(index)

    @property
    def busy(self) -> bool:
        return self._worker is not None

    def open_item(self, index: Optional[int], force_predict: bool = False, confirm: bool = True) -> bool:
        """Show an item: its saved mask if it has one, else the network's prediction."""
        if self.session is None or index is None:
            return False
        if confirm and not self._confirm_leave():
            return False
        self.session.refresh()
        self._token += 1
        self.current = index
        item = self.session.items[index]
        self.last_error = None
        try:
            image = self.session.image(index)
        except Exception as err:  # noqa: BLE001
            self._report_error(f"cannot read {item.source_path}: {err}")
            return False
        image_layer = self._show_image(image, item)
        self._remove_outputs()
        self._show_reference(index)
        record = self.session.record(index)
        self.note_edit.setText(record.note if record is not None else "")
        saved = None if force_predict else self.session.saved_mask(index)
        if saved is not None and saved.shape != image.shape[:2]:
            self._report_error(f"the saved mask of {item.name} is {saved.shape}, the image {image.shape[:2]}: "
                               "predicting again")
            saved = None
        if saved is not None:
            self._predicted = self.session.saved_prediction(index)
            self._prediction_is_new = False
            meta = {"model": record.model, "checkpoint_sha256": record.checkpoint_sha256,
                    "threshold": record.threshold, "source_path": str(item.source_path),
                    "saved_version": record.version}
            self._add_labels(saved, image_layer, meta)
            self.session.score(index, prediction=self._predicted, corrected=saved)
            self.status_label.setText(f"{item.name}: saved mask (version {record.version}, {record.status})")
        else:
            self._predicted = None
            self._predict(index, image, image_layer)
        self._select_current_row()
        self._show_item_state()
        self._update_enabled()
        return True

    # -- layers -----------------------------------------------------------------------------------
    def _show_image(self, image: np.ndarray, item):
        from napari.layers import Image

        layer = self.viewer.layers[IMAGE_LAYER] if IMAGE_LAYER in self.viewer.layers else None
        if layer is not None and not isinstance(layer, Image):
            self.viewer.layers.remove(layer)
            layer = None
        reset = layer is None or tuple(layer.data.shape) != tuple(image.shape)
        if layer is None:
            layer = self.viewer.add_image(image, name=IMAGE_LAYER, rgb=True)
        elif reset:
            self.viewer.layers.remove(layer)
            layer = self.viewer.add_image(image, name=IMAGE_LAYER, rgb=True)
        else:
            layer.data = image
        layer.metadata["source_path"] = str(item.source_path)
        if item.frame is not None:
            layer.metadata["frame"] = item.frame
        if reset:
            self.viewer.reset_view()
        return layer

    def labels_layer(self):
        from napari.layers import Labels

        from ..layers import layer_names

        name = layer_names(IMAGE_LAYER)["mask"]
        if name in self.viewer.layers and isinstance(self.viewer.layers[name], Labels):
            return self.viewer.layers[name]
        return None

    def image_layer(self):
        return self.viewer.layers[IMAGE_LAYER] if IMAGE_LAYER in self.viewer.layers else None

    def _remove_outputs(self) -> None:
        """Drop the previous item's mask, probability and attention layers (never mixed up)."""
        labels = self.labels_layer()
        if labels is not None:
            self._labels_settings = {"mode": labels.mode, "brush_size": labels.brush_size,
                                     "selected_label": labels.selected_label, "opacity": labels.opacity}
        for layer in list(self.viewer.layers):
            if layer is labels or layer.name == REFERENCE_LAYER or \
                    layer.metadata.get("image_layer") == IMAGE_LAYER:
                self.viewer.layers.remove(layer)

    def _add_labels(self, mask: np.ndarray, image_layer, meta: dict):
        from ..layers import ROLE, layer_names

        labels = self.viewer.add_labels(np.asarray(mask, dtype=np.uint8), name=layer_names(IMAGE_LAYER)["mask"],
                                        opacity=0.5, metadata={ROLE: "mask", "image_layer": IMAGE_LAYER, **meta})
        labels.scale, labels.translate = image_layer.scale, image_layer.translate
        self._after_labels(labels)
        return labels

    def _after_labels(self, labels) -> None:
        """Carry the annotator's tool settings over and remember the mask as clean."""
        settings = dict(self._labels_settings)
        for key in ("selected_label", "brush_size", "opacity", "mode"):
            if key in settings:
                try:
                    setattr(labels, key, settings[key])
                except Exception:  # noqa: BLE001 -- a mode that does not apply: keep the default
                    pass
        self.viewer.layers.selection.active = labels
        self._clean = np.array(labels.data, copy=True)

    def _show_reference(self, index: int) -> None:
        reference = self.session.reference(index)
        if reference is None:
            return
        layer = self.viewer.add_labels(reference.astype(np.uint8) * 2, name=REFERENCE_LAYER, opacity=0.7,
                                       metadata={"napari_polyp_role": "reference"})
        layer.contour = 1  # outline only: the mask being edited stays visible
        layer.editable = False

    # -- network --------------------------------------------------------------------------------
    def _predict(self, index: int, image: np.ndarray, image_layer) -> None:
        from napari.qt.threading import create_worker

        job = {"token": self._token, "index": index, "image": image, "model": self.model_combo.currentText(),
               "checkpoint": self.checkpoint(), "threshold": float(self.threshold_spin.value()),
               "image_layer": image_layer}
        self.status_label.setText(f"running {job['model']} on {self.session.items[index].name}…")
        worker = create_worker(self._predict_job, job, _start_thread=False)
        worker.returned.connect(self._show_prediction)
        worker.errored.connect(lambda err: self._report_error(f"{job['model']} failed: {err}"))
        worker.finished.connect(self._on_worker_finished)
        self._worker = worker
        self._update_enabled()
        worker.start()

    def _predict_job(self, job: dict):
        """Worker thread: network work only, no layer changes."""
        predictor = self.predictor(job["model"], job["checkpoint"])
        return job, predictor.predict(job["image"]), predictor.checkpoint_sha256

    def _on_worker_finished(self) -> None:
        self._worker = None
        self._update_enabled()

    def _show_prediction(self, result) -> None:
        from ..layers import add_prediction_layers

        job, prediction, checkpoint_sha = result
        if job["token"] != self._token or self.session is None:
            return  # the user moved on while the network ran
        threshold = job["threshold"]
        meta = {"model": job["model"], "checkpoint_sha256": checkpoint_sha,
                "source_path": str(self.session.items[job["index"]].source_path)}
        labels = add_prediction_layers(self.viewer, job["image_layer"], prediction.probability,
                                       prediction.attention, meta, threshold)
        self._after_labels(labels)
        self._predicted = prediction.mask(threshold)
        self._prediction_is_new = True
        self.session.score(job["index"], prediction=self._predicted)
        item = self.session.items[job["index"]]
        self.status_label.setText(f"{item.name}: {job['model']} prediction"
                                  + ("" if checkpoint_sha else " (random weights: not meaningful)"))
        self._show_item_state()

    # -- saving ---------------------------------------------------------------------------------
    def is_dirty(self) -> bool:
        labels = self.labels_layer()
        return labels is not None and self._clean is not None and not np.array_equal(labels.data, self._clean)

    def save(self, status: str):
        """Save the open item's mask with ``status``; returns the record (None if nothing saved)."""
        from ..corrections import pixels_changed

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
        changed = None
        if self._predicted is not None and self._predicted.shape == mask.shape:
            changed = pixels_changed(mask, self._predicted)
        if status == "accepted" and changed:
            status = "corrected"  # an edited mask is a correction, whatever the button said
        meta = labels.metadata
        image_layer = self.image_layer()
        try:
            record = self.session.save(
                index, np.asarray(image_layer.data) if image_layer is not None else None, mask,
                status=status, predicted=self._predicted if self._prediction_is_new else None,
                note=self.note_edit.text().strip(), model=str(meta.get("model") or ""),
                checkpoint_sha256=str(meta.get("checkpoint_sha256") or ""), threshold=meta.get("threshold"),
            )
        except Exception as err:  # noqa: BLE001 -- the previous version is intact; say why
            self._report_error(f"not saved: {err}")
            return None
        self._prediction_is_new = False
        self._clean = np.array(mask, copy=True)
        labels.metadata["saved_version"] = record.version
        self._update_row(index)
        self._update_progress()
        item = self.session.items[index]
        what = f"{record.pixels_changed} pixels changed" if record.pixels_changed is not None else "no prediction"
        self.status_label.setText(f"saved {item.name} as {record.status} (version {record.version}, {what})")
        self._show_item_state()
        if self.advance_check.isChecked():
            following = self.session.next_index(index, self.unreviewed_check.isChecked())
            if following is not None:
                self.open_item(following, confirm=False)
        if self.unreviewed_check.isChecked():
            self._refresh_list()
        return record

    def _confirm_leave(self) -> bool:
        """Before leaving an item with unsaved edits: save, discard or stay."""
        if self.current is None or self.session is None or not self.is_dirty():
            return True
        answer = self.ask_unsaved(self.session.items[self.current].name)
        if answer == CANCEL:
            return False
        if answer == SAVE:
            advance = self.advance_check.isChecked()
            self.advance_check.setChecked(False)
            try:
                return self.save("corrected") is not None
            finally:
                self.advance_check.setChecked(advance)
        return True

    def _ask_unsaved_dialog(self, name: str) -> str:
        box = QMessageBox(self)
        box.setWindowTitle("Unsaved mask")
        box.setText(f"The mask of {name} was edited and not saved.")
        save = box.addButton("Save as corrected", QMessageBox.AcceptRole)
        discard = box.addButton("Discard edits", QMessageBox.DestructiveRole)
        box.addButton("Stay", QMessageBox.RejectRole)
        box.exec_()
        clicked = box.clickedButton()
        return SAVE if clicked is save else DISCARD if clicked is discard else CANCEL

    # -- state display ------------------------------------------------------------------------
    def _show_item_state(self) -> None:
        if self.session is None or self.current is None:
            self.item_label.setText("")
            return
        index = self.current
        item = self.session.items[index]
        record = self.session.record(index)
        status = record.status if record is not None else "unreviewed"
        saved = f", version {record.version} by {record.reviewer}" if record is not None else ""
        self.item_label.setText(f"{index + 1} / {len(self.session)}: {item.name} — {status}{saved}")
        self.scores_label.setText(self.session.scores_text(index))

    def _report_error(self, message: str) -> None:
        self.last_error = message
        self.status_label.setText(f"⚠ {message}")
