"""The "Review" dock widget: walk a folder of images (or a video's frames) one item at
a time, check or correct each mask from the keyboard, and save the results as a
corrections dataset.

Thin over the headless parts: :class:`napari_polyp.corrections.review.ReviewSession`
(items, status, workflow rules, reference masks, scores, the item table) and
:class:`napari_polyp.corrections.CorrectionsDataset` (crash-safe saving). The network
runs in a thread worker (:func:`._common.start_worker`); layers come from
:func:`napari_polyp.layers.add_prediction_layers`, colours from :mod:`napari_polyp.display`.

Inside the workspace the network, checkpoint and threshold are those of its Segment
section (``model_source``): one model picker, one threshold.

Keys (napari actions, remappable in Preferences ▸ Shortcuts): see :mod:`.keys`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict, Optional

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QWidget,
)

from .. import display
from .. import layers as L
from . import keys
from ._common import (
    RANDOM_WEIGHTS,
    CheckpointCombo,
    PredictorCache,
    column_with_form,
    default_predictor_factory,
    error_text,
    model_combo,
    path_row,
    start_worker,
    text_label,
)

IMAGE_LAYER = "Review"
REFERENCE_LAYER = "Review reference"
STROKES_LAYER = "Review strokes"
SAVE, DISCARD, CANCEL = "save", "discard", "cancel"
STATUS_MARK = {"unreviewed": "·", "accepted": "✓", "corrected": "✎", "rejected": "✗"}
ORDERS = ("folder order", "worst Dice first", "most uncertain first")
COLUMNS = (("item", "item"), ("status", "status"), ("Dice", "dice"), ("IoU", "iou"),
           ("changed", "pixels_changed"), ("uncert.", "uncertainty"))


class _SortItem(QTableWidgetItem):
    """A cell that sorts by its number (unknown values last), shown as text."""

    def __init__(self, text: str, key):
        super().__init__(text)
        self.key = key

    def __lt__(self, other):  # noqa: D105
        mine, theirs = self.key, getattr(other, "key", None)
        if mine is None or theirs is None:
            return theirs is None and mine is not None
        return mine < theirs


class ReviewWidget(QWidget):
    """Source folder/video + corrections folder; the item table; Previous/Next;
    Accept / Corrected / Reject (each saves); note; progress; scores; run on all.

    ``predictor_factory(model, checkpoint, device)`` builds a predictor;
    ``ask_unsaved(item_name) -> "save" | "discard" | "cancel"`` is asked before
    leaving an item whose mask was edited and not saved (a dialog by default);
    ``model_source``: a Segment widget whose network, checkpoint and threshold are used.
    """

    def __init__(self, napari_viewer, predictor_factory: Optional[Callable] = None,
                 ask_unsaved: Optional[Callable[[str], str]] = None, model_source=None, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.predictor_factory = predictor_factory or default_predictor_factory
        self.ask_unsaved = ask_unsaved or self._ask_unsaved_dialog
        self.model_source = model_source
        self.session = None
        self.source_path: Optional[Path] = None
        self.dataset_path: Optional[Path] = None
        self.current: Optional[int] = None
        self.last_error: Optional[str] = None
        self._predictors = PredictorCache()
        self._worker = None
        self._batch = None  # the "run on all" worker
        self._token = 0  # which open() a network result belongs to
        self._predicted: Optional[np.ndarray] = None  # the network's mask of the open item
        self._prediction_is_new = False  # True: not yet stored in the dataset
        self._cache: Dict[int, object] = {}  # item -> Prediction from "run on all"
        self._labels_settings: dict = {}
        self._contour = False
        self._build_ui()
        keys.register(self)
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

        # Standalone the widget has its own network and threshold; in the workspace they are Segment's.
        self.model_combo = model_combo()
        self.model_combo.currentIndexChanged.connect(self._on_model_changed)
        self.checkpoint_combo = CheckpointCombo(extras=[(RANDOM_WEIGHTS, False)])
        self.threshold_spin = QDoubleSpinBox()
        self.threshold_spin.setRange(0.01, 0.99)
        self.threshold_spin.setSingleStep(0.05)
        self.threshold_spin.setValue(0.5)
        self.threshold_spin.setToolTip("Probability threshold; changing it re-derives the mask at once")
        if self.model_source is None:
            form.addRow("model", self.model_combo)
            form.addRow("checkpoint", self.checkpoint_combo)
            form.addRow("threshold", self.threshold_spin)
            self.threshold_spin.valueChanged.connect(self._on_threshold_changed)
        else:
            for widget in (self.model_combo, self.checkpoint_combo, self.threshold_spin):
                widget.setVisible(False)
            self.model_source.threshold_spin.valueChanged.connect(self._on_threshold_changed)

        options = QHBoxLayout()
        self.unreviewed_check = QCheckBox("only unreviewed")
        self.unreviewed_check.toggled.connect(self._refresh_list)
        self.advance_check = QCheckBox("auto-next")
        self.advance_check.setToolTip("Open the next item after saving")
        self.advance_check.setChecked(True)
        self.auto_check = QCheckBox("predict on open")
        self.auto_check.setChecked(True)
        self.auto_check.setToolTip("Run the network on an item when it is opened (else press Run / R)")
        for check in (self.unreviewed_check, self.advance_check, self.auto_check):
            options.addWidget(check)
        root.addLayout(options)

        batch = QHBoxLayout()
        self.run_all_button = QPushButton("Run on all")
        self.run_all_button.setToolTip("Predict every item not yet reviewed, in the background: fills Dice and "
                                       "uncertainty in the table, opening an item is then instant")
        self.run_all_button.clicked.connect(self.run_on_all)
        self.cancel_all_button = QPushButton("Cancel")
        self.cancel_all_button.setEnabled(False)
        self.cancel_all_button.clicked.connect(self.cancel_run_on_all)
        self.batch_progress = QProgressBar()
        self.batch_progress.setRange(0, 1)
        self.batch_progress.setValue(0)
        batch.addWidget(self.run_all_button)
        batch.addWidget(self.cancel_all_button)
        batch.addWidget(self.batch_progress, 1)
        root.addLayout(batch)

        order_row = QHBoxLayout()
        self.progress_label = QLabel("0 / 0 reviewed")
        self.progress_label.setStyleSheet("font-weight: bold;")
        self.order_combo = QComboBox()
        self.order_combo.addItems(ORDERS)
        self.order_combo.setToolTip("The order of the table, and of Next / Previous")
        self.order_combo.currentTextChanged.connect(self._refresh_list)
        self.csv_button = QPushButton("CSV…")
        self.csv_button.setToolTip("Save the table as CSV")
        self.csv_button.clicked.connect(self._choose_csv)
        order_row.addWidget(self.progress_label, 1)
        order_row.addWidget(self.order_combo)
        order_row.addWidget(self.csv_button)
        root.addLayout(order_row)

        self.item_list = QTableWidget(0, len(COLUMNS))
        self.item_list.setHorizontalHeaderLabels([title for title, _ in COLUMNS])
        self.item_list.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.item_list.setSelectionMode(QAbstractItemView.SingleSelection)
        self.item_list.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.item_list.verticalHeader().setVisible(False)
        self.item_list.verticalHeader().setDefaultSectionSize(20)
        header = self.item_list.horizontalHeader()
        header.setMinimumSectionSize(36)
        for column, width in enumerate((0, 86, 48, 48, 62, 56)):  # fixed numbers: no sideways scrolling
            header.setSectionResizeMode(column, QHeaderView.Stretch if column == 0 else QHeaderView.Interactive)
            if width:
                header.resizeSection(column, width)
        self.item_list.setTextElideMode(Qt.ElideMiddle)  # long stems keep their start and end
        self.item_list.setSortingEnabled(True)
        self.item_list.setMinimumHeight(110)
        self.item_list.setToolTip("Click an item to open it; click a column title to sort by it. Dice/IoU: the "
                                  "prediction against the reference mask (masks/ beside images/)")
        self.item_list.itemSelectionChanged.connect(self._on_row_changed)
        root.addWidget(self.item_list, 1)

        nav = QHBoxLayout()
        self.previous_button = QPushButton("◀ Previous")
        self.previous_button.clicked.connect(self.previous)
        self.next_button = QPushButton("Next ▶")
        self.next_button.clicked.connect(self.next)
        self.predict_button = QPushButton("Run")
        self.predict_button.setToolTip("Run the network on this item (replaces the mask shown)")
        self.predict_button.clicked.connect(self.predict_current)
        for button in (self.previous_button, self.next_button, self.predict_button):
            nav.addWidget(button)
        root.addLayout(nav)

        view = QHBoxLayout()
        self.mask_check = QCheckBox("mask")
        self.mask_check.setChecked(True)
        self.mask_check.toggled.connect(lambda on: self._set_visible(self.labels_layer(), on))
        self.contour_check = QCheckBox("outline")
        self.contour_check.setToolTip("Show the mask as an outline instead of a filled area")
        self.contour_check.toggled.connect(self._on_contour_toggled)
        self.reference_check = QCheckBox("reference")
        self.reference_check.setChecked(True)
        self.reference_check.setToolTip("Compare with the reference mask: green both, magenta mask only (false "
                                        "positive), yellow reference only (false negative)")
        self.reference_check.toggled.connect(lambda on: self._set_visible(self._layer(REFERENCE_LAYER), on))
        for check in (self.mask_check, self.contour_check, self.reference_check):
            view.addWidget(check)
        root.addLayout(view)
        colours = display.AGREEMENT_COLORS
        self.legend_label = QLabel(
            "reference: " + " ".join(f"<span style='color:{colours[key]}'>■</span> {text}" for key, text in
                                     ((display.TP, "both"), (display.FP, "mask only"),
                                      (display.FN, "reference only"))))
        self.legend_label.setToolTip("\n".join(display.AGREEMENT_NAMES.values()))
        root.addWidget(self.legend_label)

        self.item_label = text_label()
        root.addWidget(self.item_label)
        self.note_edit = QLineEdit()
        self.note_edit.setPlaceholderText("note (optional), saved with the item")
        root.addWidget(self.note_edit)

        buttons = QHBoxLayout()
        self.status_buttons = {}
        for status, text, tip in (
            ("accepted", "Accept", "The mask is right: save it (saved as 'corrected' if you edited it)"),
            ("corrected", "Corrected", "Save the edited mask"),
            ("rejected", "Reject", "The item is unusable (bad image, nothing to segment): save as rejected"),
        ):
            button = QPushButton(text)
            button.setToolTip(tip)
            button.clicked.connect(lambda _=False, s=status: self.save(s))
            buttons.addWidget(button)
            self.status_buttons[status] = button
        self.status_buttons["accepted"].setStyleSheet("font-weight: bold;")
        root.addLayout(buttons)

        self.scores_label = text_label(selectable=True)
        root.addWidget(self.scores_label)
        self.status_label = text_label("choose the images to review and where to save the corrections")
        root.addWidget(self.status_label)
        self.keys_label = text_label()
        self.keys_label.setStyleSheet("color: gray; font-size: 10px;")
        root.addWidget(self.keys_label)
        self._show_keys()

    def _show_keys(self) -> None:
        """The keys, on the buttons' tooltips and in one compact line (remapping shows after a reopen)."""
        def first(name):
            return (keys.shortcuts(name) or ["—"])[0]
        keys._register_actions()
        self.keys_label.setText(
            f"keys: {first('accept')} accept · {first('corrected')} corrected · {first('reject')} reject · "
            f"{first('next')} / {first('previous')} next / previous · {first('toggle_mask')} mask · "
            f"{first('toggle_reference')} reference · {first('run')} run")
        self.keys_label.setToolTip(keys.help_text() + "\n(remap in Preferences ▸ Shortcuts)")
        for name, button in (("accept", self.status_buttons["accepted"]),
                             ("corrected", self.status_buttons["corrected"]),
                             ("reject", self.status_buttons["rejected"]), ("next", self.next_button),
                             ("previous", self.previous_button), ("run", self.predict_button)):
            button.setToolTip(f"{button.toolTip()} ({' / '.join(keys.shortcuts(name))})".lstrip())

    def _update_enabled(self) -> None:
        ready = self.session is not None and len(self.session) > 0
        has_item = ready and self.current is not None
        for button in (self.previous_button, self.next_button):
            button.setEnabled(ready)
        for button in self.status_buttons.values():
            button.setEnabled(has_item and not self.busy)
        self.predict_button.setEnabled(has_item and not self.busy)
        self.run_all_button.setEnabled(ready and self._batch is None)
        self.cancel_all_button.setEnabled(self._batch is not None)
        self.csv_button.setEnabled(ready)

    # -- model / checkpoint / threshold ----------------------------------------------------------
    def _on_model_changed(self, *_):
        self.checkpoint_combo.fill(self.model_combo.currentText())

    def add_checkpoint_path(self, path) -> None:
        self.checkpoint_combo.add_path(path)

    def select_random_weights(self) -> None:
        self.checkpoint_combo.setCurrentIndex(self.checkpoint_combo.findText(RANDOM_WEIGHTS))

    def model_name(self) -> str:
        source = self.model_source
        return (source.model_combo if source is not None else self.model_combo).currentText()

    def checkpoint(self):
        """The selected checkpoint: a path string, or False for random weights."""
        if self.model_source is not None:
            return self.model_source.checkpoint()
        return self.checkpoint_combo.selected() or False

    def threshold(self) -> float:
        return self.model_source.threshold() if self.model_source is not None else float(self.threshold_spin.value())

    def predictor(self, model_name: str, checkpoint, device: str = "auto"):
        if self.model_source is not None:  # one cache (and engine settings) for the whole workspace
            return self.model_source.predictor(model_name, checkpoint, self.model_source.device_combo.currentText())
        return self._predictors.get(self.predictor_factory, model_name, checkpoint, device)

    def _predictor_args(self) -> tuple:
        """(model, checkpoint, device, engine options), read on the main thread for a worker."""
        source = self.model_source
        if source is None:
            return self.model_name(), self.checkpoint(), "auto", {}
        return self.model_name(), self.checkpoint(), source.device_combo.currentText(), source.engine_options()

    def _build_predictor(self, model_name, checkpoint, device, options):  # worker thread
        if self.model_source is not None:
            return self.model_source.predictor(model_name, checkpoint, device, **options)
        return self._predictors.get(self.predictor_factory, model_name, checkpoint, device)

    def _on_threshold_changed(self, value: float) -> None:
        """Re-derive the open mask from its probabilities at once (no network run)."""
        labels = self.labels_layer()
        if labels is None or L.prediction_state(labels) is None or self.busy:
            return
        source = self.model_source
        if source is not None and source.image_layer() is not None and source.image_layer().name == IMAGE_LAYER:
            return  # Segment re-derives this very mask itself
        try:
            outcome = L.rethreshold(labels, float(value))
        except Exception as err:  # noqa: BLE001
            self._report_error(f"re-threshold failed: {error_text(err)}")
            return
        self._predicted = np.asarray(labels.data) if outcome == "updated" else self._predicted
        if outcome == "updated" and self.current is not None:
            self.session.mark_clean(self.current, labels.data)
        self._update_reference()
        self.status_label.setText(f"mask re-derived at {value:.2f} (no network run)"
                                  + ("; your edited pixels were kept" if outcome == "kept-edits" else ""))

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

    def _choose_csv(self):
        path, _ = QFileDialog.getSaveFileName(self, "Save the item table", "review.csv", "CSV (*.csv)")
        if path:
            self.export_table(path)

    def export_table(self, path) -> Optional[Path]:
        """Write the item table (all items, Dice/IoU/status/changed/uncertainty) as CSV."""
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
        self.cancel_run_on_all()
        try:
            self.session = ReviewSession(self.source_path, self.dataset_path)
        except Exception as err:  # noqa: BLE001 -- shown, never a traceback
            self._report_error(error_text(err))
            self.session = None
            self._update_enabled()
            return False
        self.current = None
        self._cache = {}
        self._refresh_list()
        if not len(self.session):
            self.status_label.setText(f"{self.source_path}: no images found")
            self._update_enabled()
            return False
        reference = self.session.reference_dir
        self.status_label.setText(f"{len(self.session)} items"
                                  + (f"; reference masks from {reference}" if reference else ""))
        order = self.order()
        first = order[0] if order else self.session.first(False)
        self.open_item(first if first is not None else 0, confirm=False)
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
            return self.session.most_uncertain_first(visible)
        return visible

    def _row_cells(self, index: int):
        row = self.session.table_row(index)
        status = row["status"]
        cells = [_SortItem(row["item"], index), _SortItem(f"{STATUS_MARK[status]} {status}", status)]
        for key in ("dice", "iou", "pixels_changed", "uncertainty"):
            value = row[key]
            text = "" if value is None else f"{value:d}" if isinstance(value, int) else f"{value:.3f}"
            cells.append(_SortItem(text, value))
        cells[0].setData(Qt.UserRole, index)
        return cells

    def _refresh_list(self, *_):
        table = self.item_list
        table.blockSignals(True)
        table.setSortingEnabled(False)
        table.horizontalHeader().setSortIndicator(-1, Qt.AscendingOrder)
        order = self.order()
        table.setRowCount(len(order))
        for row, index in enumerate(order):
            for column, cell in enumerate(self._row_cells(index)):
                table.setItem(row, column, cell)
        table.setSortingEnabled(True)
        table.blockSignals(False)
        self._select_current_row()
        self._update_progress()

    def _row_of(self, index: Optional[int]) -> int:
        for r in range(self.item_list.rowCount()):
            cell = self.item_list.item(r, 0)
            if cell is not None and cell.data(Qt.UserRole) == index:
                return r
        return -1

    def _select_current_row(self) -> None:
        self.item_list.blockSignals(True)
        row = self._row_of(self.current)
        self.item_list.clearSelection()
        if row >= 0:
            self.item_list.selectRow(row)
            self.item_list.scrollToItem(self.item_list.item(row, 0))
        self.item_list.blockSignals(False)

    def _update_row(self, index: int) -> None:
        row = self._row_of(index)
        if row < 0:
            return
        sorting = self.item_list.isSortingEnabled()
        self.item_list.setSortingEnabled(False)  # a changed cell must not move rows under the cursor
        self.item_list.blockSignals(True)
        for column, cell in enumerate(self._row_cells(index)):
            self.item_list.setItem(row, column, cell)
        self.item_list.blockSignals(False)
        self.item_list.setSortingEnabled(sorting)
        self._select_current_row()

    def _on_row_changed(self) -> None:
        rows = self.item_list.selectionModel().selectedRows()
        if not rows:
            return
        index = self.item_list.item(rows[0].row(), 0).data(Qt.UserRole)
        if index != self.current and not self.open_item(index):
            self._select_current_row()

    def _update_progress(self) -> None:
        self.progress_label.setText(self.session.progress_text() if self.session is not None else "0 / 0 reviewed")

    # -- navigation --------------------------------------------------------------------------
    def _neighbour(self, step: int) -> Optional[int]:
        """The item ``step`` rows away in the table as shown (its sorting included)."""
        rows = [self.item_list.item(r, 0).data(Qt.UserRole) for r in range(self.item_list.rowCount())]
        if not rows:
            return None
        if self.current not in rows:  # e.g. just saved and filtered out: continue from where it was
            after = [i for i in rows if (i > self.current if step > 0 else i < self.current)]
            return (after[0] if step > 0 else after[-1]) if after and self.current is not None else rows[0]
        at = rows.index(self.current) + step
        return rows[at] if 0 <= at < len(rows) else None

    def next(self) -> bool:
        if self.session is None:
            return False
        index = self._neighbour(+1)
        if index is None:
            self.status_label.setText("this was the last item" + (" to review" if self.unreviewed_check.isChecked() else ""))
            return False
        return self.open_item(index)

    def previous(self) -> bool:
        if self.session is None:
            return False
        index = self._neighbour(-1)
        if index is None:
            self.status_label.setText("this is the first item")
            return False
        return self.open_item(index)

    @property
    def busy(self) -> bool:
        return self._worker is not None

    def predict_current(self) -> None:
        """Run the network on the open item again (the Run button, key R)."""
        if self.current is not None and not self.busy:
            self._cache.pop(self.current, None)
            self.open_item(self.current, force_predict=True)

    def open_item(self, index: Optional[int], force_predict: bool = False, confirm: bool = True) -> bool:
        """Show an item: its saved mask if it has one, else the network's prediction."""
        if self.session is None or index is None:
            return False
        if confirm and not self._confirm_leave():
            return False
        self.session.refresh()
        self._token += 1
        same_item = index == self.current
        self.current = index
        item = self.session.items[index]
        self.last_error = None
        try:
            image = self.session.image(index)
        except Exception as err:  # noqa: BLE001
            self._report_error(f"cannot read {item.source_path}: {error_text(err)}")
            return False
        image_layer = self._show_image(image, item)
        record = self.session.record(index)
        self.note_edit.setText(record.note if record is not None else "")
        saved = None if force_predict else self.session.saved_mask(index)
        if saved is not None and saved.shape != image.shape[:2]:
            self._report_error(f"the saved mask of {item.name} is {saved.shape}, the image {image.shape[:2]}: "
                               "predicting again")
            saved = None
        will_predict = saved is None and (index in self._cache or self.auto_check.isChecked() or force_predict)
        self._remove_outputs(keep_kept_maps=same_item, network_maps=not will_predict,
                             mask=saved is None and not will_predict)
        self._predicted = None
        if saved is not None:
            self._predicted = self.session.saved_prediction(index)
            self._prediction_is_new = False
            meta = {"model": record.model, "checkpoint_sha256": record.checkpoint_sha256,
                    "threshold": record.threshold, "source_path": str(item.source_path),
                    "saved_version": record.version}
            self._add_labels(saved, image_layer, meta)
            self.session.score(index, prediction=self._predicted, corrected=saved)
            self.status_label.setText(f"{item.name}: saved mask (version {record.version}, {record.status})")
        elif index in self._cache:
            self._show_prediction((self._cache[index][0], self._cache[index][1], image_layer))
        elif self.auto_check.isChecked() or force_predict:
            self._predict(index, image, image_layer)
        else:
            self.status_label.setText(f"{item.name}: not predicted yet (Run, or tick \"predict on open\")")
        self._select_current_row()
        self._show_item_state()
        self._update_enabled()
        return True

    # -- layers -----------------------------------------------------------------------------------
    def _layer(self, name: str):
        return self.viewer.layers[name] if name in self.viewer.layers else None

    def _show_image(self, image: np.ndarray, item):
        from napari.layers import Image

        layer = self._layer(IMAGE_LAYER)
        if layer is not None and not isinstance(layer, Image):
            self.viewer.layers.remove(layer)
            layer = None
        reset = layer is None or tuple(layer.data.shape) != tuple(image.shape)
        if layer is None:
            layer = self.viewer.add_image(image, name=IMAGE_LAYER, rgb=True)
        else:  # new data, even of another size: cheaper than a new layer (and its GL objects)
            layer.data = image
        layer.metadata["source_path"] = str(item.source_path)
        if item.frame is not None:
            layer.metadata["frame"] = item.frame
        if reset:
            self.viewer.reset_view()
        return layer

    def labels_layer(self):
        from napari.layers import Labels

        layer = self._layer(L.layer_names(IMAGE_LAYER)["mask"])
        return layer if isinstance(layer, Labels) else None

    def image_layer(self):
        return self._layer(IMAGE_LAYER)

    def _remove_outputs(self, keep_kept_maps: bool = False, network_maps: bool = False,
                        mask: bool = False) -> None:
        """Drop the previous item's strokes and kept maps (kept ones stay while the same item is
        run again). The mask, probability, attention and reference layers are re-used by the next
        item (removing and re-adding a layer costs ~0.5 s under software OpenGL); ``network_maps``
        drops the probability and attention (a saved mask has none), ``mask`` the mask and
        reference too (an item shown without any mask). Layers are matched by name: through a
        plugin dock's viewer proxy the same layer is a new object at each access."""
        labels = self.labels_layer()
        if labels is not None:
            self._labels_settings = {"mode": labels.mode, "brush_size": labels.brush_size}
        mask_names = {L.layer_names(IMAGE_LAYER)["mask"], REFERENCE_LAYER}
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

    def _add_labels(self, mask: np.ndarray, image_layer, meta: dict):
        """Show a saved mask: in the existing mask layer when there is one."""
        labels = self.labels_layer()
        metadata = {"image_layer": IMAGE_LAYER, **meta}
        if labels is not None:
            L.show_saved_mask(labels, mask, image_layer, metadata)
        else:
            labels = self.viewer.add_labels(np.asarray(mask, dtype=np.uint8), name=L.layer_names(IMAGE_LAYER)["mask"],
                                            opacity=0.5, metadata={L.ROLE: "mask", **metadata})
            labels.scale, labels.translate = image_layer.scale, image_layer.translate
        self._after_labels(labels)
        return labels

    def _after_labels(self, labels) -> None:
        """Style the mask, carry the annotator's tool settings over, remember the mask as clean,
        and show the reference comparison."""
        display.style_mask(labels, self._contour)
        labels.selected_label = 1
        labels.visible = self.mask_check.isChecked()
        for key in ("brush_size", "mode"):
            if key in self._labels_settings:
                try:
                    setattr(labels, key, self._labels_settings[key])
                except Exception:  # noqa: BLE001 -- a mode that does not apply: keep the default
                    pass
        self.viewer.layers.selection.active = labels
        self.session.mark_clean(self.current, labels.data)
        self._update_reference()
        labels.events.paint.connect(self._on_painted)
        labels.events.data.connect(self._on_painted)

    def _on_painted(self, *_):
        self._update_reference()

    def _update_reference(self) -> None:
        """The reference as true/false positive/negative against the mask shown now."""
        if self.session is None or self.current is None:
            return
        reference = self.session.reference(self.current)
        labels = self.labels_layer()
        if reference is None or labels is None or np.shape(labels.data) != reference.shape:
            return
        data = display.agreement(labels.data, reference)
        layer = self._layer(REFERENCE_LAYER)
        if layer is None:
            layer = self.viewer.add_labels(data, name=REFERENCE_LAYER, opacity=0.6,
                                           metadata={L.ROLE: "reference"})
            layer.colormap = display.agreement_colormap()
            layer.contour = 2
            layer.editable = False
            layer.visible = self.reference_check.isChecked()
            self.viewer.layers.selection.active = labels  # painting goes on in the mask
        else:
            layer.data = data

    def _set_visible(self, layer, on: bool) -> None:
        if layer is not None:
            layer.visible = on

    def toggle_mask(self) -> None:
        self.mask_check.setChecked(not self.mask_check.isChecked())

    def toggle_reference(self) -> None:
        self.reference_check.setChecked(not self.reference_check.isChecked())

    def _on_contour_toggled(self, on: bool) -> None:
        self._contour = on
        labels = self.labels_layer()
        if labels is not None:
            display.style_mask(labels, on)

    # -- network --------------------------------------------------------------------------------
    def _predict(self, index: int, image: np.ndarray, image_layer) -> None:
        model_name, checkpoint, device, options = self._predictor_args()
        job = {"token": self._token, "index": index, "image": image, "model": model_name,
               "checkpoint": checkpoint, "device": device, "options": options}
        self.status_label.setText(f"running {model_name} on {self.session.items[index].name}…")
        self._worker = start_worker(self._predict_job, job, on_return=self._on_predicted,
                                    on_error=lambda text: self._report_error(f"{model_name} failed: {text}"),
                                    on_finished=self._on_worker_finished)
        self._update_enabled()

    def _predict_job(self, job: dict):
        """Worker thread: network work only, no layer changes."""
        predictor = self._build_predictor(job["model"], job["checkpoint"], job["device"], job["options"])
        prediction = predictor.predict(job["image"])
        return job, prediction

    def _on_worker_finished(self) -> None:
        self._worker = None
        self._update_enabled()

    def _on_predicted(self, result) -> None:
        job, prediction = result
        if job["token"] != self._token or self.session is None or self.image_layer() is None:
            return  # the user moved on (or closed the image) while the network ran
        meta = {"model": job["model"], "checkpoint_sha256": getattr(prediction, "checkpoint_sha256", ""),
                "source_path": str(self.session.items[job["index"]].source_path)}
        self._cache[job["index"]] = (prediction, meta)
        self._show_prediction((prediction, meta, self.image_layer()))

    def _show_prediction(self, shown) -> None:
        prediction, meta, image_layer = shown
        index, threshold = self.current, self.threshold()
        # The mask layer is re-used across items: what it holds is the previous item's (its unsaved
        # edits were already saved or discarded by _confirm_leave), never to be carried over.
        labels = L.add_prediction_layers(self.viewer, image_layer, prediction.probability,
                                         prediction.attention, meta, threshold,
                                         resolve_edits=lambda _found: L.DISCARD)
        self._after_labels(labels)
        self._predicted = prediction.mask(threshold)
        self._prediction_is_new = True
        self.session.score(index, prediction=self._predicted)
        self.session.note_prediction(index, prediction.probability)
        self._update_row(index)
        item = self.session.items[index]
        self.status_label.setText(f"{item.name}: {meta['model']} prediction"
                                  + ("" if meta.get("checkpoint_sha256") else " (random weights: not meaningful)"))
        self._show_item_state()

    # -- run on all -----------------------------------------------------------------------------
    def run_on_all(self) -> None:
        """Predict every unreviewed item not predicted yet, in the background (progress, Cancel)."""
        if self.session is None or self._batch is not None:
            return
        todo = [i for i in self.order() if i not in self._cache and self.session.status(i) == "unreviewed"]
        if not todo:
            self.status_label.setText("every unreviewed item is predicted already")
            return
        model_name, checkpoint, device, options = self._predictor_args()
        job = {"todo": todo, "model": model_name, "checkpoint": checkpoint, "device": device, "options": options,
               "session": self.session}
        self.batch_progress.setRange(0, len(todo))
        self.batch_progress.setValue(0)
        self._batch = start_worker(self._run_all_job, job, on_yield=self._on_batch_item,
                                   on_error=lambda text: self._report_error(f"run on all: {text}"),
                                   on_finished=self._on_batch_finished)
        self.status_label.setText(f"running {model_name} on {len(todo)} items…")
        self._update_enabled()

    def _run_all_job(self, job: dict):  # worker thread: reads images, runs the network
        predictor = self._build_predictor(job["model"], job["checkpoint"], job["device"], job["options"])
        session = job["session"]
        for done, index in enumerate(job["todo"], 1):
            try:
                prediction = predictor.predict(session.image(index))
            except Exception as err:  # noqa: BLE001 -- one bad file does not stop the others
                yield ("error", index, done, f"{session.items[index].name}: {error_text(err)}")
                continue
            meta = {"model": job["model"], "checkpoint_sha256": getattr(prediction, "checkpoint_sha256", ""),
                    "source_path": str(session.items[index].source_path)}
            yield ("result", index, done, (prediction, meta))

    def _on_batch_item(self, item) -> None:
        kind, index, done, payload = item
        self.batch_progress.setValue(done)
        if self.session is None:
            return
        if kind == "error":
            self.status_label.setText(f"skipped {payload}")
            return
        prediction, meta = payload
        self._cache[index] = payload
        self.session.score(index, prediction=prediction.mask(self.threshold()))
        self.session.note_prediction(index, prediction.probability)
        self._update_row(index)

    def cancel_run_on_all(self) -> None:
        if self._batch is not None:
            self._batch.quit()
            self.status_label.setText("cancelling the run on all items…")

    def _on_batch_finished(self) -> None:
        self._batch = None
        self._update_enabled()
        if self.session is not None:
            done = self.batch_progress.value()
            self.status_label.setText(f"predicted {done} of {self.batch_progress.maximum()} items; "
                                      "sort by Dice or uncertainty to see the worst first")
            self._refresh_list()

    # -- refine from strokes ---------------------------------------------------------------------
    def strokes_layer(self, create: bool = False):
        """The stroke layer of the open item (1 = lesion, 2 = background), made on request."""
        layer = self._layer(STROKES_LAYER)
        image = self.image_layer()
        if layer is None and create and image is not None:
            layer = self.viewer.add_labels(np.zeros(L.spatial_shape(image), np.uint8), name=STROKES_LAYER,
                                           opacity=0.9, metadata={L.ROLE: "strokes"})
            layer.colormap = display.agreement_colormap()  # 1 green (lesion), 2 magenta (background)
            layer.brush_size = 6
            layer.mode = "paint"
        return layer

    def refine(self) -> int:
        """Re-segment the open mask from the strokes (network probability as the prior); one undo step.
        Returns the pixels changed (0 when nothing changed or something was wrong: see the status)."""
        from ..corrections.refine import StrokeError, refine, strokes_from_labels
        from .cleanup import apply_to_labels

        labels, strokes, image = self.labels_layer(), self._layer(STROKES_LAYER), self.image_layer()
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
        self.status_label.setText(f"refined: {changed} pixels changed (Ctrl+Z on the mask undoes it)")
        return changed

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
        status = self.session.status_for(status, mask, self._predicted)
        meta = labels.metadata
        image_layer = self.image_layer()
        strokes = self._layer(STROKES_LAYER)
        try:
            record = self.session.save(
                index, np.asarray(image_layer.data) if image_layer is not None else None, mask,
                status=status, predicted=self._predicted if self._prediction_is_new else None,
                note=self.note_edit.text().strip(), model=str(meta.get("model") or ""),
                checkpoint_sha256=str(meta.get("checkpoint_sha256") or ""), threshold=meta.get("threshold"),
                strokes=np.asarray(strokes.data) if strokes is not None and np.any(strokes.data) else None,
            )
        except Exception as err:  # noqa: BLE001 -- the previous version is intact; say why
            self._report_error(f"not saved: {error_text(err)}")
            return None
        self._prediction_is_new = False
        self.session.mark_clean(index, mask)
        labels.metadata["saved_version"] = record.version
        self._update_row(index)
        self._update_progress()
        item = self.session.items[index]
        what = f"{record.pixels_changed} pixels changed" if record.pixels_changed is not None else "no prediction"
        message = f"saved {item.name} as {record.status} (version {record.version}, {what})"
        self.status_label.setText(message)
        show_info(message)
        self._show_item_state()
        if self.advance_check.isChecked():
            following = self._neighbour(+1)
            if self.unreviewed_check.isChecked():
                self._refresh_list()
                following = self._neighbour(+1)
            if following is not None:
                self.open_item(following, confirm=False)
        elif self.unreviewed_check.isChecked():
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
        from napari.utils.notifications import show_warning

        self.last_error = message
        self.status_label.setText(f"⚠ {message}")
        show_warning(message)

    def closeEvent(self, event):  # noqa: N802 (Qt)
        self.cancel_run_on_all()
        super().closeEvent(event)
