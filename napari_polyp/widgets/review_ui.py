"""The Review widget's controls: the dock's rows built one per function, the key line, which
buttons are enabled, the file dialogs and the unsaved-mask question.

A mixin of :class:`.review.ReviewWidget` (the widget's state and rules live there and in
:class:`napari_polyp.corrections.review.ReviewSession`); nothing here decides what is saved.
"""
from __future__ import annotations

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
)

from .. import display
from ..conventions import DEFAULT_THRESHOLD
from ..io.extensions import dialog_filter
from . import keys
from ._common import (
    RANDOM_WEIGHTS,
    CheckpointCombo,
    ChoiceRow,
    TaskQuestion,
    column_with_form,
    model_combo,
    path_row,
    text_label,
)
from .review_table import ItemTable

SAVE, DISCARD, CANCEL = "save", "discard", "cancel"  # answers to "the mask was edited and not saved"
ORDERS = ("folder order", "worst Dice first", "most uncertain first")


class ReviewControls:
    """Builds and updates the Review widget's controls (a mixin of ``ReviewWidget``)."""

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
        self.video_row = self._build_video_row()
        root.addWidget(self.video_row)
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
        self.threshold_spin.setValue(DEFAULT_THRESHOLD)
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
        source.threshold_applied.connect(self._on_threshold_applied)  # after Segment's own answer (a dialog)
        source.model_combo.currentIndexChanged.connect(self._on_choice_changed)
        source.checkpoint_combo.currentIndexChanged.connect(self._on_choice_changed)
        source.tta_check.toggled.connect(self._on_choice_changed)
        source.second_check.toggled.connect(self._on_choice_changed)

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
        self.cancel_all_button.clicked.connect(self.cancel_propagation)
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
        propagating = self._propagation is not None
        self.run_all_button.setEnabled(ready and self._batch is None and not propagating)
        self.cancel_all_button.setEnabled(self._batch is not None or propagating)
        self.csv_button.setEnabled(ready)
        for button in (self.propagate_button, self.propagate_back_button, self.accept_range_button):
            button.setEnabled(has_item and not self.busy and not propagating)

    def _choose_images(self):
        folder = QFileDialog.getExistingDirectory(self, "Folder of images to review")
        if folder:
            self.set_source(folder)

    def _choose_video(self):
        path, _ = QFileDialog.getOpenFileName(self, "Video to review", "", dialog_filter())
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

    def toggle_mask(self) -> None:
        """H: the open item's mask; with no item open, the Model tab's mask (H did nothing there)."""
        if self.current is None:
            other = self.model_source.mask_layer() if self.model_source is not None else None
            if other is None:
                self._report_error("no mask to show or hide: open an item, or run a network in the Model tab")
                return
            other.visible = not other.visible
            return
        self.mask_check.setChecked(not self.mask_check.isChecked())

    def toggle_reference(self) -> None:
        if self.current is None:
            self._report_error("no reference comparison to show or hide: open an item with a reference mask")
            return
        self.reference_check.setChecked(not self.reference_check.isChecked())
