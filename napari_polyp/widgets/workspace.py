"""The workspace: one dock where predicting, correcting, cleaning, reviewing and saving
are one flow, sized for a 1366×768 laptop screen.

Four tabs over the existing widgets, sharing one network choice and one threshold:

- **Review**: the folder or video as an item table, one image at a time, Accept /
  Corrected / Reject from the keyboard; its network, checkpoint and threshold are the
  Model tab's (:class:`.review.ReviewWidget` with ``model_source``);
- **Model**: the Segment widget (network, checkpoint, engine, threshold, Run on any
  open image or video, Live, Compare);
- **Correct**: refine from strokes (undoable) and the clean-up actions;
- **Train & export**: fine-tune on the corrections folder the Review tab saves into,
  and export it (COCO, nnU-Net, CSV).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

from qtpy.QtWidgets import (
    QFileDialog,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QPushButton,
    QScrollArea,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from ._common import error_text, text_label

EXPORTS = (("coco", "COCO…", "COCO instances JSON (RLE masks)"),
           ("nnunet", "nnU-Net…", "an nnU-Net v2 raw dataset folder (imagesTr, labelsTr 0/1, dataset.json)"),
           ("csv", "CSV…", "one row per saved item"))


def _scrolled(widget: QWidget) -> QScrollArea:
    """A tab page that scrolls instead of growing the dock past a small screen."""
    area = QScrollArea()
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.NoFrame)
    area.setWidget(widget)
    return area


class WorkspaceWidget(QWidget):
    """Review / Model / Correct / Train & export, in one dock.

    ``predictor_factory``, ``ask_unsaved`` and ``ask_edits`` reach the inner widgets (tests
    inject stand-ins)."""

    def __init__(self, napari_viewer, predictor_factory: Optional[Callable] = None,
                 ask_unsaved: Optional[Callable] = None, ask_edits: Optional[Callable] = None, parent=None):
        super().__init__(parent)
        from .cleanup import CleanupWidget
        from .finetune import FinetuneWidget
        from .review import ReviewWidget
        from .segment import SegmentWidget

        self.viewer = napari_viewer
        self.segment = SegmentWidget(napari_viewer, predictor_factory=predictor_factory, ask_edits=ask_edits)
        self.review = ReviewWidget(napari_viewer, predictor_factory=predictor_factory, ask_unsaved=ask_unsaved,
                                   model_source=self.segment)
        self.cleanup = CleanupWidget(napari_viewer)
        self.finetune = FinetuneWidget(napari_viewer)
        self.last_error: Optional[str] = None

        root = QVBoxLayout(self)
        root.setContentsMargins(2, 2, 2, 2)
        self.tabs = QTabWidget()
        self.tabs.addTab(self.review, "Review")
        self.tabs.addTab(_scrolled(self.segment), "Model")
        self.tabs.addTab(_scrolled(self._correct_page()), "Correct")
        self.tabs.addTab(_scrolled(self._train_page()), "Train && export")
        self.tabs.setTabToolTip(0, "Walk a folder or video: one image at a time, accept / correct / reject")
        self.tabs.setTabToolTip(1, "The network, its checkpoint and threshold (used by Review too); run on any "
                                   "open image or video")
        self.tabs.setTabToolTip(2, "Refine the mask from a few strokes; clean it up")
        self.tabs.setTabToolTip(3, "Fine-tune on the saved corrections; export them")
        root.addWidget(self.tabs)
        self.setMinimumWidth(340)
        self.review.dataset_edit.textChanged.connect(self._follow_dataset)

    # -- pages ---------------------------------------------------------------------------
    def _correct_page(self) -> QWidget:
        page = QWidget()
        layout = QVBoxLayout(page)
        box = QGroupBox("Refine from strokes")
        inner = QVBoxLayout(box)
        inner.addWidget(text_label("Paint label 1 on lesion the mask missed and label 2 on background it "
                                   "took, then Refine: the network's probability is the prior, the strokes are "
                                   "kept as they are (GrabCut). Ctrl+Z on the mask undoes it."))
        row = QHBoxLayout()
        self.strokes_button = QPushButton("Strokes")
        self.strokes_button.setToolTip("Add (or select) the stroke layer of the open Review item")
        self.strokes_button.clicked.connect(self.draw_strokes)
        self.refine_button = QPushButton("Refine")
        self.refine_button.setToolTip("Re-segment the mask from the strokes (one undo step)")
        self.refine_button.clicked.connect(self.review.refine)
        row.addWidget(self.strokes_button)
        row.addWidget(self.refine_button)
        inner.addLayout(row)
        layout.addWidget(box)
        clean = QGroupBox("Clean up the selected mask")
        QVBoxLayout(clean).addWidget(self.cleanup)
        layout.addWidget(clean)
        layout.addStretch(1)
        return page

    def _train_page(self) -> QWidget:
        page = QWidget()
        layout = QVBoxLayout(page)
        tune = QGroupBox("Fine-tune")
        QVBoxLayout(tune).addWidget(self.finetune)
        layout.addWidget(tune)
        export = QGroupBox("Export the corrections")
        inner = QVBoxLayout(export)
        row = QHBoxLayout()
        self.export_buttons = {}
        for fmt, text, tip in EXPORTS:
            button = QPushButton(text)
            button.setToolTip(f"Write {tip}")
            button.clicked.connect(lambda _=False, f=fmt: self._choose_export(f))
            row.addWidget(button)
            self.export_buttons[fmt] = button
        inner.addLayout(row)
        self.export_label = text_label(selectable=True)
        inner.addWidget(self.export_label)
        layout.addWidget(export)
        layout.addStretch(1)
        return page

    # -- actions ---------------------------------------------------------------------------
    def draw_strokes(self) -> None:
        layer = self.review.strokes_layer(create=True)
        if layer is None:
            self.review._report_error("open an item in Review first")
            return
        self.viewer.layers.selection.active = layer
        layer.mode = "paint"

    def _follow_dataset(self, text: str) -> None:
        """Fine-tuning trains on the folder Review saves into."""
        if text:
            self.finetune.set_data(text)

    def _choose_export(self, fmt: str) -> None:
        if fmt == "nnunet":
            out = QFileDialog.getExistingDirectory(self, "Folder for the nnU-Net raw dataset")
        else:
            suffix = "json" if fmt == "coco" else "csv"
            out, _ = QFileDialog.getSaveFileName(self, f"Export as {fmt}", f"corrections.{suffix}")
        if out:
            self.export(fmt, out)

    def export(self, fmt: str, out) -> Optional[dict]:
        """Export the Review tab's corrections folder; a message (not a traceback) when it cannot."""
        from napari.utils.notifications import show_info, show_warning

        from ..corrections.export import export

        root = self.review.dataset_path
        if root is None:
            self.last_error = "choose the corrections folder in the Review tab first"
            show_warning(self.last_error)
            self.export_label.setText(f"⚠ {self.last_error}")
            return None
        try:
            result = export(root, fmt, Path(out))
        except Exception as err:  # noqa: BLE001 -- e.g. nothing to export yet
            self.last_error = error_text(err)
            show_warning(self.last_error)
            self.export_label.setText(f"⚠ {self.last_error}")
            return None
        self.last_error = None
        text = f"exported {fmt} to {result.get('out', out)}"
        self.export_label.setText(text)
        show_info(text)
        return result
