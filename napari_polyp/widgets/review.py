"""The "Review" dock widget: walk a folder of images (or a video's frames) one item at
a time, check or correct each mask from the keyboard, and save the results as a
corrections dataset.

Thin over the headless parts: :class:`napari_polyp.corrections.review.ReviewSession`
(items, status, the network's predictions and which network they belong to, workflow
rules, reference masks, scores, the item table, saving through ``commit``) and
:class:`napari_polyp.corrections.CorrectionsDataset` (crash-safe saving). The network
runs in a thread worker (:func:`._common.start_worker`); the table is
:class:`.review_table.ItemTable`, the layers :class:`.review_layers.ReviewLayers`.

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
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QWidget,
)

from .. import display
from .. import jobs, layers as L
from ..errors import UserError
from . import keys
from ._common import (
    RANDOM_WEIGHTS,
    CheckpointCombo,
    ChoiceRow,
    TaskQuestion,
    known_task,
    PredictorCache,
    column_with_form,
    default_predictor_factory,
    error_text,
    model_combo,
    path_row,
    start_worker,
    text_label,
)
from .review_layers import IMAGE_LAYER, REFERENCE_LAYER, STROKES_LAYER, ReviewLayers  # noqa: F401 (re-exported)
from .review_table import ItemTable

SAVE, DISCARD, CANCEL = "save", "discard", "cancel"
DRAFT_AFTER_MS = 4000  # an edited mask is written as a draft this long after the edit that started a burst
ORDERS = ("folder order", "worst Dice first", "most uncertain first")


class ReviewWidget(QWidget):
    """Source folder/video + corrections folder; the item table; Previous/Next;
    Accept / Corrected / Reject (each saves); note; progress; scores; run on all.

    ``predictor_factory(model, checkpoint, device)`` builds a predictor;
    ``ask_unsaved(item_name) -> "save" | "discard" | "cancel"`` is asked before
    leaving an item whose mask was edited and not saved (a dialog by default);
    ``model_source``: a Segment widget whose network, checkpoint, TTA and threshold are used.
    ``saved(record)`` is emitted after each save.
    """

    saved = Signal(object)

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
        self.layers = ReviewLayers(napari_viewer)
        self._predictors = PredictorCache()
        self._worker = None
        self._predicting: Optional[dict] = None  # the job of the running prediction
        self._batch = None  # the "run on all" worker
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

    # -- UI --------------------------------------------------------------------------------
    def _build_ui(self) -> None:
        root, form = column_with_form(self)
        self._build_paths(form)
        self._build_model_controls(form)
        root.addLayout(self._build_options())
        root.addLayout(self._build_batch())
        root.addLayout(self._build_order_row())
        self.item_list = ItemTable()
        self.item_list.itemSelectionChanged.connect(self._on_row_changed)
        root.addWidget(self.item_list, 1)
        root.addLayout(self._build_navigation())
        root.addLayout(self._build_view_options())
        root.addWidget(self._build_legend())
        self.item_label = text_label()
        root.addWidget(self.item_label)
        self.note_edit = QLineEdit()
        self.note_edit.setPlaceholderText("note (optional), saved with the item")
        root.addWidget(self.note_edit)
        root.addLayout(self._build_status_buttons())
        self.scores_label = text_label(selectable=True)
        root.addWidget(self.scores_label)
        self.status_label = text_label("choose the images to review and where to save the corrections")
        root.addWidget(self.status_label)
        self.task_question = TaskQuestion()
        self.task_question.answered.connect(self._on_task_answered)
        root.addWidget(self.task_question)
        self.draft_offer = ChoiceRow()
        root.addWidget(self.draft_offer)
        self.keys_label = text_label()
        self.keys_label.setStyleSheet("color: gray; font-size: 10px;")
        root.addWidget(self.keys_label)
        self._show_keys()

    def _build_paths(self, form) -> None:
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

    def _build_model_controls(self, form) -> None:
        """Standalone the widget has its own network and threshold; in the workspace they are Segment's."""
        self.model_combo = model_combo()
        self.model_combo.currentIndexChanged.connect(self._on_model_changed)
        self.checkpoint_combo = CheckpointCombo(extras=[(RANDOM_WEIGHTS, False)])
        self.checkpoint_combo.currentIndexChanged.connect(self._on_choice_changed)
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

    def _connect_model_source(self) -> None:
        source = self.model_source
        if source is None:
            return
        source.threshold_spin.valueChanged.connect(self._on_threshold_changed)
        source.model_combo.currentIndexChanged.connect(self._on_choice_changed)
        source.checkpoint_combo.currentIndexChanged.connect(self._on_choice_changed)
        source.tta_check.toggled.connect(self._on_choice_changed)

    def _build_options(self) -> QHBoxLayout:
        options = QHBoxLayout()
        # short words: the row fits a 1024-px screen's dock; the tooltips say the rest
        self.unreviewed_check = QCheckBox("unreviewed")
        self.unreviewed_check.setToolTip("Show only the items not reviewed yet")
        self.unreviewed_check.toggled.connect(self._refresh_list)
        self.advance_check = QCheckBox("auto-next")
        self.advance_check.setToolTip("Open the next item after saving")
        self.advance_check.setChecked(True)
        self.auto_check = QCheckBox("predict")
        self.auto_check.setChecked(True)
        self.auto_check.setToolTip("Run the network on an item when it is opened (else press Run / R)")
        for check in (self.unreviewed_check, self.advance_check, self.auto_check):
            options.addWidget(check)
        return options

    def _build_batch(self) -> QHBoxLayout:
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
        return batch

    def _build_order_row(self) -> QHBoxLayout:
        order_row = QHBoxLayout()
        self.progress_label = text_label("0 / 0 reviewed")
        self.progress_label.setStyleSheet("font-weight: bold;")
        self.order_combo = QComboBox()
        self.order_combo.addItems(ORDERS)
        self.order_combo.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
        self.order_combo.setMinimumContentsLength(10)  # elided in a narrow dock, whole in its list
        self.order_combo.setToolTip("The order of the table, and of Next / Previous")
        self.order_combo.currentTextChanged.connect(self._refresh_list)
        self.csv_button = QPushButton("CSV…")
        self.csv_button.setToolTip("Save the table as CSV")
        self.csv_button.clicked.connect(self._choose_csv)
        order_row.addWidget(self.progress_label, 1)
        order_row.addWidget(self.order_combo)
        order_row.addWidget(self.csv_button)
        return order_row

    def _build_navigation(self) -> QHBoxLayout:
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
        return nav

    def _build_view_options(self) -> QHBoxLayout:
        view = QHBoxLayout()
        self.mask_check = QCheckBox("mask")
        self.mask_check.setChecked(True)
        self.mask_check.toggled.connect(self.layers.set_mask_visible)
        self.contour_check = QCheckBox("outline")
        self.contour_check.setToolTip("Show the mask as an outline instead of a filled area")
        self.contour_check.toggled.connect(self.layers.set_contour)
        self.reference_check = QCheckBox("reference")
        self.reference_check.setChecked(True)
        self.reference_check.setToolTip("Compare with the reference mask: green both, magenta mask only (false "
                                        "positive), yellow reference only (false negative)")
        self.reference_check.toggled.connect(self.layers.set_reference_visible)
        for check in (self.mask_check, self.contour_check, self.reference_check):
            view.addWidget(check)
        return view

    def _build_legend(self) -> QLabel:
        colours = display.AGREEMENT_COLORS
        self.legend_label = text_label(
            "reference: " + " ".join(f"<span style='color:{colours[key]}'>■</span> {text}" for key, text in
                                     ((display.TP, "both"), (display.FP, "mask only"),
                                      (display.FN, "reference only"))))
        self.legend_label.setToolTip("\n".join(display.AGREEMENT_NAMES.values()))
        return self.legend_label

    def _build_status_buttons(self) -> QHBoxLayout:
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
        return buttons

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

    # -- model / checkpoint / TTA / threshold ----------------------------------------------------
    def _on_model_changed(self, *_):
        self.checkpoint_combo.fill(self.model_combo.currentText())
        self._on_choice_changed()

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

    def tta(self) -> bool:
        """Flip TTA: the Model tab's checkbox in the workspace; off standalone."""
        return self.model_source is not None and self.model_source.tta_check.isChecked()

    def threshold(self) -> float:
        return self.model_source.threshold() if self.model_source is not None else float(self.threshold_spin.value())

    def choice(self):
        """The network, checkpoint and TTA predictions are made with now."""
        from ..jobs import ModelChoice

        return ModelChoice.of(self.model_name(), self.checkpoint(), self.tta())

    def predictor(self, model_name: str, checkpoint, device: str = "auto", tta: bool = False):
        if self.model_source is not None:  # one cache (and engine settings) for the whole workspace
            return self.model_source.predictor(model_name, checkpoint, self.model_source.device_combo.currentText(),
                                               tta=tta)
        return self._predictors.get(self.predictor_factory, model_name, checkpoint, device, tta=tta)

    def _predictor_args(self) -> dict:
        """What a worker needs to build the predictor, read on the main thread."""
        source, choice = self.model_source, self.choice()
        device = source.device_combo.currentText() if source is not None else "auto"
        options = source.engine_options() if source is not None else {}
        return {"choice": choice, "model": choice.network, "checkpoint": self.checkpoint(), "device": device,
                "options": options}

    def _build_predictor(self, job: dict):  # worker thread
        tta = job["choice"].tta
        if self.model_source is not None:
            return self.model_source.predictor(job["model"], job["checkpoint"], job["device"], tta=tta,
                                               **job["options"])
        return self._predictors.get(self.predictor_factory, job["model"], job["checkpoint"], job["device"], tta=tta)

    def _on_choice_changed(self, *_) -> None:
        """The network, checkpoint or TTA changed (one user action sends several signals: handled once)."""
        if not self._choice_pending:
            self._choice_pending = True
            QTimer.singleShot(0, self._apply_choice)

    def _apply_choice(self) -> None:
        """Drop the old network's predictions; the open item follows when nobody edited its mask."""
        self._choice_pending = False
        if self.session is None:
            return
        choice = self.choice()
        dropped = self.session.use_model(choice)
        if not dropped and (self._basis is None or self._basis.provenance.choice == choice):
            return
        if self._batch is not None:
            self.cancel_run_on_all()
            self.status_label.setText(f"the network changed to {choice.label()}: run on all was stopped")
        for index in dropped:
            self._update_row(index)
        self._update_progress()
        self._follow_choice()

    def _follow_choice(self) -> None:
        """Show the open item with the chosen network when its mask came from another one."""
        if self.current is None or self._basis is None or self._basis.provenance.choice == self.choice():
            return
        if self.busy:
            self._reopen_when_idle = True
        elif self.is_dirty():
            self.status_label.setText(f"the mask on screen is {self._basis.provenance.choice.label()}'s, edited: "
                                      "saving records it as that; R runs the chosen network")
            self._show_item_state()
        else:
            self.open_item(self.current, confirm=False)

    def _on_threshold_changed(self, value: float) -> None:
        """Re-derive the open mask and the table's Dice from the kept probabilities (no network run)."""
        if self.session is not None:
            for index in self.session.use_threshold(value):
                self._update_row(index)
        labels = self.labels_layer()
        if labels is None or L.prediction_state(labels) is None or self.busy:
            return
        source = self.model_source
        segment_does_it = source is not None and source.image_layer() is not None \
            and source.image_layer().name == IMAGE_LAYER  # Segment re-derives this very mask itself
        outcome = "updated"
        if not segment_does_it:
            try:
                outcome = L.rethreshold(labels, float(value))
            except Exception as err:  # noqa: BLE001
                self._report_error(f"re-threshold failed: {error_text(err)}")
                return
        if self.current is not None and not L.has_manual_edits(labels):
            self.session.mark_clean(self.current, labels.data)  # the prediction at the new threshold: no edit
        self._update_reference()
        self._show_item_state()
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
        self.session.use_model(self.choice())
        self.session.use_threshold(self.threshold())
        from ..corrections.drafts import Drafts

        self._drafts = Drafts(self.session.dataset.root)
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
            return self.session.most_uncertain_first(visible)
        return visible

    def _refresh_list(self, *_):
        session = self.session
        self.item_list.fill([(i, session.table_row(i)) for i in self.order()] if session is not None else [])
        self.item_list.select(self.current)
        self._update_progress()

    def _update_row(self, index: int) -> None:
        if self.session is not None:
            self.item_list.update_row(index, self.session.table_row(index))
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
        index, skipped = self.session.neighbour(order, start, step), []
        while index is not None:
            if self.open_item(index, confirm=confirm):
                if skipped:
                    self.last_error = f"skipped {', '.join(skipped)}: cannot be read (marked ⚠ in the table)"
                    self._notice = self.last_error
                    self._show_item_state()
                return True
            if self.session.is_readable(index):
                return False  # stayed for another reason (the user chose to stay on unsaved edits)
            skipped.append(self.session.items[index].name)
            confirm = False  # the user already agreed to leave
            index = self.session.neighbour(order, index, step)
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
        return self._worker is not None

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
        kept = self.session.prediction(index)
        will_predict = saved is None and (kept is not None or self.auto_check.isChecked() or force_predict)
        self.layers.remove_outputs(keep_kept_maps=same_item, network_maps=not will_predict,
                                   mask=saved is None and not will_predict)
        if saved is not None:
            self._show_saved(index, saved, record, image_layer)
        elif kept is not None:
            self._show_prediction(index, kept, image_layer)
        elif will_predict:
            self._predict(index, image)
        else:
            self.status_label.setText(f"{item.name}: not predicted with {self.choice().label()} yet "
                                      "(Run, or tick \"predict on open\")")
        self.item_list.select(self.current)
        self._show_item_state()
        self._update_enabled()
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
        meta = {"model": provenance.choice.network, "checkpoint_sha256": provenance.checkpoint_sha256,
                "tta": provenance.choice.tta, "source_path": provenance.source}
        # The mask layer is re-used across items: what it holds is the previous item's (its unsaved
        # edits were already saved or discarded by _confirm_leave), never to be carried over.
        labels = L.add_prediction_layers(self.viewer, image_layer, kept.probability, kept.attention, meta,
                                         self.threshold(), resolve_edits=lambda _found: L.DISCARD)
        self._basis = kept
        self._after_labels(labels)
        self._update_row(index)
        item = self.session.items[index]
        self.status_label.setText(f"{item.name}: {provenance.choice.label()} prediction"
                                  + ("" if provenance.checkpoint_sha256 else " (untrained: not meaningful)"))

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

    # -- drafts: edits survive a crash ------------------------------------------------------------
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
        """A draft left by a crash (or a closed window) for the item now shown: restore or discard."""
        self.draft_offer.setVisible(False)
        if self._drafts is None or self.current is None:
            return
        index = self.current
        draft = self._drafts.load(self.session.stem(index))
        if draft is None or draft.mask.shape != np.shape(labels.data) or np.array_equal(draft.mask, labels.data):
            return
        changed = int(np.count_nonzero(draft.mask != np.asarray(labels.data)))
        self.draft_offer.ask(f"Unsaved edits of this mask from {draft.saved_at} ({changed} pixels) were kept "
                             "as a draft.", [("Restore", lambda: self.restore_draft(index, draft.mask)),
                                             ("Discard", lambda: self._discard_draft(index))])

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

    def _update_reference(self) -> None:
        if self.session is not None and self.current is not None:
            self.layers.show_reference(self.session.reference(self.current))

    def toggle_mask(self) -> None:
        self.mask_check.setChecked(not self.mask_check.isChecked())

    def toggle_reference(self) -> None:
        self.reference_check.setChecked(not self.reference_check.isChecked())

    # -- network --------------------------------------------------------------------------------
    def _check_task(self, index: int) -> None:
        """Say once when the chosen network is made for another task than the folder shows; a
        folder that does not say is asked about once (a row in the dock, the run goes on)."""
        import models

        item = self.session.items[index]
        subject = {"source_path": str(item.source_path)}
        task = known_task(subject)
        source = self.source_path
        name = item.name if source is None else f"{source.parent.name}/{source.name}" if source.name == "images" \
            else source.name  # "kvasir/images", not "images"
        if task is None:
            self.task_question.ask(name, subject)
            return
        network = self.model_name()
        mismatch = models.task_mismatch(network, task, subject=f"{name} shows")
        if mismatch and (task, network) not in self._task_warned:
            from napari.utils.notifications import show_warning

            self._task_warned.add((task, network))
            show_warning(mismatch)

    def _on_task_answered(self, card_task: str) -> None:
        """The folder's task is known now: the Model tab (or this widget) selects a fitting network."""
        import models

        if self.model_source is not None:
            self.model_source._on_task_answered(card_task)
        elif models.base_card(self.model_combo.currentText()).task != card_task:
            self.model_combo.setCurrentText(models.default_model(card_task))

    def _predict(self, index: int, image: np.ndarray) -> None:
        self._check_task(index)
        job = {"token": self._token, "index": index, "image": image, **self._predictor_args()}
        self._running_text = f"running {job['choice'].label()} on {self.session.items[index].name}…"
        self.status_label.setText(self._running_text)
        item = self.session.items[index]
        work = jobs.predict_frames(lambda: self._build_predictor(job), lambda _frame: image, [None], job["choice"],
                                   source=item.source_path, device=job["device"], name=item.name)
        self._predicting = job  # bound methods below: Qt drops them with the widget, lambdas it would call
        self._worker = start_worker(work, on_yield=self._on_predict_event,
                                    on_error=lambda text: self._report_error(f"{job['model']} failed: {text}"),
                                    on_finished=self._on_worker_finished)
        self._update_enabled()

    def _on_predict_event(self, event) -> None:
        job = self._predicting
        if isinstance(event, jobs.Failed):
            self._report_error(event.message)
        elif isinstance(event, jobs.Note):
            self.status_label.setText(event.text)
        elif isinstance(event, jobs.Result):
            self._on_predicted(job, event.value)

    def _on_worker_finished(self) -> None:
        self._worker = None
        if self.status_label.text() == self._running_text:  # ended without a result to show (e.g. image closed)
            self.status_label.setText("the network's result was not shown: the item or its image changed meanwhile")
        self._running_text = ""
        self._update_enabled()
        if self._reopen_when_idle:
            self._reopen_when_idle = False
            self._follow_choice()

    def _on_predicted(self, job: dict, kept: jobs.Predicted) -> None:
        if self.session is None:
            return
        fresh = self.session.remember(job["index"], kept)  # refused when the network changed meanwhile
        self._update_row(job["index"])
        if job["token"] != self._token or self.image_layer() is None:
            return  # the user moved on (or closed the image) while the network ran
        if not fresh:
            self._reopen_when_idle = True
            return
        self._show_prediction(job["index"], kept, self.image_layer())
        self._show_item_state()

    # -- run on all -----------------------------------------------------------------------------
    def run_on_all(self) -> None:
        """Predict every unreviewed item not predicted with the chosen network yet, in the
        background (progress, Cancel)."""
        if self.session is None or self._batch is not None:
            return
        self._apply_choice()
        todo = self.session.to_predict(self.order())
        choice = self.choice()
        if not todo:
            self.status_label.setText(f"every unreviewed item is predicted with {choice.label()} already")
            return
        self._check_task(todo[0])
        job = self._predictor_args()
        self.batch_progress.setRange(0, len(todo))
        self.batch_progress.setValue(0)
        session = self.session
        work = jobs.predict_items(lambda: self._build_predictor(job), session.image, todo, choice,
                                  source_of=lambda index: session.items[index].source_path)
        self._batch = start_worker(work, on_yield=self._on_batch_event,
                                   on_error=lambda text: self._report_error(f"run on all: {text}"),
                                   on_finished=self._on_batch_finished)
        self.status_label.setText(f"running {choice.label()} on {len(todo)} items…")
        self._update_enabled()

    def _on_batch_event(self, event) -> None:
        if isinstance(event, jobs.Progress):
            self.batch_progress.setValue(event.done)
        elif isinstance(event, jobs.Failed):
            self._report_error(f"run on all: {event.message}")
        elif self.session is not None and isinstance(event, jobs.Note):
            self.status_label.setText(event.text)
        elif self.session is not None and isinstance(event, jobs.Result):
            index, kept = event.value
            self.session.remember(index, kept)  # refused when the network changed meanwhile
            self._update_row(index)
            self._update_progress()

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
        super().closeEvent(event)
