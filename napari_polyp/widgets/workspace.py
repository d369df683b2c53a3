"""The workspace: one dock where predicting, correcting, cleaning, reviewing and saving
are one flow, sized for a 1366×768 laptop screen.

Four tabs over the existing widgets, sharing one network choice and one threshold:

- **Review**: the folder or video as an item table, one image at a time, Accept /
  Corrected / Reject from the keyboard; its network, checkpoint and threshold are the
  Model tab's (:class:`.review.ReviewWidget` with ``model_source``);
- **Model**: the Segment widget (network, checkpoint, engine, threshold, Run on any
  open image or video, Live, Compare);
- **Correct**: Click mode (the default tool: clicks re-segment the mask with the click
  refiner, :mod:`.click_mode`), refine from strokes (GrabCut, undoable) and the clean-up actions;
- **Train & export**: fine-tune on the corrections folder the Review tab saves into,
  and export it (COCO, nnU-Net, CSV).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFrame,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QPushButton,
    QScrollArea,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from ..layers import ROLE as L_ROLE
from ._common import error_text, text_label

from ..display import KEPT_ATTENTION as KEPT_ROLE  # maps kept for comparison: another network's run leaves them

EXPORTS = (("coco", "COCO…", "COCO instances JSON (RLE masks)"),
           ("nnunet", "nnU-Net…", "an nnU-Net v2 raw dataset folder (imagesTr, labelsTr 0/1, dataset.json)"),
           ("csv", "CSV…", "one row per saved item"))


def _scrolled(widget: QWidget) -> QScrollArea:
    """A tab page that scrolls instead of growing the dock past a small screen."""
    area = QScrollArea()
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.NoFrame)
    # never sideways: the page takes the dock's width and its text wraps (nothing cut at the right edge)
    area.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
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
        from .click_mode import ClickMode
        from .finetune import FinetuneWidget
        from .review import ReviewWidget
        from .segment import SegmentWidget

        self.viewer = napari_viewer
        self.segment = SegmentWidget(napari_viewer, predictor_factory=predictor_factory, ask_edits=ask_edits)
        self.review = ReviewWidget(napari_viewer, predictor_factory=predictor_factory, ask_unsaved=ask_unsaved,
                                   model_source=self.segment)
        # after Strokes the stroke layer is active: clean-up still acts on the open item's mask
        self.cleanup = CleanupWidget(napari_viewer, preferred=self.review.labels_layer)
        self.finetune = FinetuneWidget(napari_viewer, model_source=self.segment)
        # clicks on the open Review item's mask (else the Model tab's image); saved with its correction
        self.click_mode = ClickMode(napari_viewer, review=self.review, segment=self.segment, parent=self)
        self.review.click_log = self.click_mode.click_log
        self.last_error: Optional[str] = None

        root = QVBoxLayout(self)
        root.setContentsMargins(2, 2, 2, 2)
        self.tabs = QTabWidget()
        self.tabs.addTab(_scrolled(self.review), "Review")  # a small screen scrolls; nothing overlaps
        self.tabs.addTab(_scrolled(self._model_page()), "Model")
        self.tabs.addTab(_scrolled(self._correct_page()), "Correct")
        self.tabs.addTab(_scrolled(self._train_page()), "Train && export")
        self.tabs.setTabToolTip(0, "Walk a folder or video: one image at a time, accept / correct / reject")
        self.tabs.setTabToolTip(1, "The network, its checkpoint and threshold (used by Review too); run on any "
                                   "open image or video")
        self.tabs.setTabToolTip(2, "Correct the mask with clicks (or strokes); clean it up")
        self.tabs.setTabToolTip(3, "Fine-tune on the saved corrections; export them")
        root.addWidget(self.tabs)
        self.setMinimumWidth(320)
        self.review.dataset_edit.textChanged.connect(self._follow_dataset)
        # Fine-tune trains the Model tab's network on what Review saved: its lines follow both
        self.review.saved.connect(lambda _record: self.finetune.refresh_data())
        self.tabs.currentChanged.connect(self._on_tab_changed)
        self.segment.model_combo.currentIndexChanged.connect(self.finetune.follow_model_source)
        self.segment.checkpoint_combo.currentIndexChanged.connect(self.finetune.follow_model_source)
        self.finetune.follow_model_source()

    # -- pages ---------------------------------------------------------------------------
    def _model_page(self) -> QWidget:
        page = QWidget()
        layout = QVBoxLayout(page)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.segment)
        self.save_mask_button = QPushButton("Save this mask to the corrections")
        self.save_mask_button.setToolTip("Save the mask of the image chosen above (frame on screen) as a corrected "
                                         "item of the corrections folder chosen in the Review tab")
        # Qt hands ``clicked`` the button's checked state: it must not become the status
        self.save_mask_button.clicked.connect(lambda _checked=False: self.save_segment_mask())
        layout.addWidget(self.save_mask_button)
        box = QGroupBox("Attention maps")
        box.setToolTip("Where the network looked: one map per attention block, hidden until shown")
        inner = QVBoxLayout(box)
        self.map_combo = QComboBox()
        self.map_combo.setToolTip("The map 'show' puts over the image (one at a time: several add up to white)")
        self.map_combo.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
        self.map_combo.setMinimumContentsLength(12)
        self.map_combo.currentTextChanged.connect(lambda _text: self.show_maps(self.maps_check.isChecked()))
        inner.addWidget(self.map_combo)
        row = QGridLayout()  # two by two: fits a narrow dock
        self.maps_check = QCheckBox("show")
        self.maps_check.setToolTip("Show the chosen map over the image, with its colour bar")
        self.maps_check.toggled.connect(self.show_maps)
        self.keep_button = QPushButton("Keep")
        self.keep_button.setToolTip("Keep these maps when another network runs, to compare the two")
        self.keep_button.clicked.connect(self.keep_maps)
        self.grid_check = QCheckBox("side by side")
        self.grid_check.setToolTip("Grid view: the image and every map in its own titled panel with its colour bar")
        self.grid_check.toggled.connect(self.side_by_side)
        self.figure_button = QPushButton("Figure…")
        self.figure_button.setToolTip("Export a titled grid (image | mask | maps with colour bars) as one PNG")
        self.figure_button.clicked.connect(self._choose_figure)
        for at, widget in enumerate((self.maps_check, self.keep_button, self.grid_check, self.figure_button)):
            row.addWidget(widget, at // 2, at % 2)
        inner.addLayout(row)
        self.viewer.layers.events.inserted.connect(self._refresh_map_choice)
        self.viewer.layers.events.removed.connect(self._refresh_map_choice)
        self.viewer.layers.events.removed.connect(self._end_side_by_side_without_maps)
        layout.addWidget(box)
        layout.addStretch(1)
        return page

    def _correct_page(self) -> QWidget:
        from .click_mode import ClickModePanel

        page = QWidget()
        layout = QVBoxLayout(page)
        self.click_panel = ClickModePanel(self.click_mode)
        layout.addWidget(self.click_panel)
        box = QGroupBox("Or: refine from strokes (GrabCut)")
        inner = QVBoxLayout(box)
        inner.addWidget(text_label("Paint label 1 on lesion the mask missed and label 2 on background it "
                                   "took, then Refine: the network's probability is the prior, the strokes are "
                                   "kept as they are (GrabCut). Ctrl+Z with the mask layer selected undoes it."))
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

    # -- saving a Segment mask -------------------------------------------------------------------
    def save_segment_mask(self, status: str = "corrected"):
        """Save the Model tab's mask (any open image or video frame) into the Review tab's corrections
        folder; returns the record, or None with a message saying why not."""
        import numpy as np
        from napari.utils.notifications import show_info, show_warning

        from .. import layers as L
        from ..corrections import CorrectionsDataset
        from ..corrections.manifest import safe_stem
        from ..corrections.review import ReviewSession, dataset_clash

        image, labels = self.segment.image_layer(), self.segment.mask_layer()
        root = self.review.dataset_path
        source = (image.metadata.get("source_path") or "") if image is not None else ""
        problem = ("choose the corrections folder in the Review tab first" if root is None else
                   "run a network on an image first (no mask to save)" if image is None or labels is None else
                   dataset_clash(Path(source).parent, root) if source and Path(source).is_file() else "")
        if problem:
            self.segment.status_label.setText(f"⚠ {problem}")
            show_warning(problem)
            return None
        frame = L.current_frame(self.viewer, image)
        mask = np.asarray(labels.data if frame is None else labels.data[frame])
        state = L.prediction_state(labels)
        predicted = state.derived.get(frame) if state is not None else None
        stem = safe_stem(f"{Path(source).stem if source else image.name}" + ("" if frame is None else f"_{frame:06d}"))
        meta = labels.metadata
        try:
            record = CorrectionsDataset(root).save(
                image=L.image_frame(image, frame), mask=mask, stem=stem, source_path=source or None,
                predicted=predicted, model=str(meta.get("model") or ""),
                checkpoint_sha256=str(meta.get("checkpoint_sha256") or ""), threshold=meta.get("threshold"),
                status=ReviewSession.status_for(status, mask, predicted), **({} if frame is None else {"frame": frame}))
        except Exception as err:  # noqa: BLE001 -- the dataset is intact; say why
            self.segment.status_label.setText(f"⚠ not saved: {error_text(err)}")
            show_warning(f"not saved: {error_text(err)}")
            return None
        text = f"saved {stem} into {root} as {record.status} (version {record.version})"
        self.segment.status_label.setText(text)
        show_info(text)
        return record

    # -- attention maps ----------------------------------------------------------------------
    def _image_and_mask(self):
        """The image the maps belong to (Review's when it is open, else Segment's) and its mask."""
        from .. import layers as L

        image = self.review.image_layer()
        image = image if image is not None else self.segment.image_layer()
        if image is None:
            return None, None
        name = L.layer_names(image.name)["mask"]
        return image, (self.viewer.layers[name] if name in self.viewer.layers else None)

    def map_layers(self) -> list:
        """The current and kept attention layers of the image shown."""
        image, _ = self._image_and_mask()
        if image is None:
            return []
        return [layer for layer in self.viewer.layers if layer.metadata.get("image_layer") == image.name
                and layer.metadata.get(L_ROLE) in ("attention", KEPT_ROLE)]

    def _refresh_map_choice(self, *_) -> None:
        """The map list follows the layers (a run adds maps, Keep renames them)."""
        names = [layer.name for layer in self.map_layers()]
        chosen = self.map_combo.currentText()
        listed = {self.map_combo.itemText(i) for i in range(self.map_combo.count())}
        current = [layer.name for layer in self.map_layers() if layer.metadata.get(L_ROLE) == "attention"]
        new = [name for name in current if name not in listed]  # a network just ran: its map first
        self.map_combo.blockSignals(True)
        self.map_combo.clear()
        self.map_combo.addItems(names)
        self.map_combo.setCurrentText(new[0] if new else chosen if chosen in names else (current or names or [""])[0])
        self.map_combo.blockSignals(False)

    def _end_side_by_side_without_maps(self, *_) -> None:
        """Its image or maps deleted (e.g. all layers): the grid ends, the next image opens whole."""
        if getattr(self, "_side_by_side", False) and not self.map_layers():
            self.grid_check.setChecked(False)

    def show_maps(self, on: bool = True) -> None:
        """The chosen map over the image, alone, with its colour bar (several maps at once add up to
        white under additive blending, and their colour bars overlap); the others stay hidden."""
        if getattr(self, "_side_by_side", False):
            return  # the grid shows them all; its end restores this choice
        self._refresh_map_choice()
        chosen = self.map_combo.currentText()
        for layer in self.map_layers():
            layer.visible = on and layer.name == chosen
            _set_colorbar(layer, layer.visible)

    def keep_maps(self) -> int:
        """Rename the current maps "kept: …" so the next network's run leaves them; returns how many."""
        kept = 0
        for layer in self.map_layers():
            if layer.metadata.get(L_ROLE) == "attention":
                layer.metadata[L_ROLE] = KEPT_ROLE
                layer.name = f"kept: {layer.name}"
                kept += 1
        self._refresh_map_choice()
        self.segment.status_label.setText(f"kept {kept} map(s): run another network, then 'side by side'"
                                          if kept else "no maps to keep: run a network first")
        return kept

    def side_by_side(self, on: bool) -> None:
        """Grid view: the image and each map (current and kept) in its own panel, titled with its
        layer's name and with its colour bar; the view is fitted to the grid. Mask, reference and
        probability are hidden meanwhile (hidden layers take no panel)."""
        # Matched by name: through a plugin dock's viewer proxy a layer is a new object at each access.
        image, _ = self._image_and_mask()
        maps = self.map_layers()
        keep = {layer.name for layer in maps} | ({image.name} if image is not None else set())
        if on:
            self._hidden = [layer.name for layer in self.viewer.layers if layer.visible and layer.name not in keep]
            for name in self._hidden:
                self.viewer.layers[name].visible = False
            for layer in maps:
                layer.visible = True
                layer.blending = "translucent"  # each panel alone: no image to add onto
                layer.opacity = 1.0
                _set_colorbar(layer, True)
        else:
            for name in getattr(self, "_hidden", []):
                if name in self.viewer.layers:
                    self.viewer.layers[name].visible = True
            for layer in maps:
                layer.blending = "additive"
                layer.opacity = 0.6
            self._hidden = []
        for layer in maps + ([image] if image is not None else []):
            _set_name_overlay(layer, on)
        self._side_by_side = on
        self.viewer.grid.enabled = on
        if not on:
            self.show_maps(self.maps_check.isChecked())
        self.viewer.reset_view()  # fitted to the grid (or back to the image), not zoomed into a corner

    def _choose_figure(self) -> None:
        out, _ = QFileDialog.getSaveFileName(self, "Export figure", "figure.png", "PNG (*.png)")
        if out:
            self.export_figure(out)

    def export_figure(self, out) -> Optional[Path]:
        """A titled grid as one PNG: image | the mask outlined (titled with its network) | each map
        (visible ones, else all, kept ones included) with its colour bar; a message when there is nothing."""
        import numpy as np
        from napari.utils.notifications import show_info, show_warning

        from .. import display
        from .. import layers as L

        image, mask = self._image_and_mask()
        maps = [layer for layer in self.map_layers() if layer.visible] or self.map_layers()
        if image is None or mask is None:
            show_warning("nothing to export: run a network on an image first")
            return None
        frame = L.current_frame(self.viewer, image)
        plane = (lambda layer: np.asarray(layer.data[frame] if frame is not None else layer.data, np.float32))
        network = display.network_name(str(mask.metadata.get("model") or ""))
        figure = display.figure_grid(L.image_frame(image, frame), plane(mask) > 0,
                                     [(_map_title(layer), plane(layer), layer.colormap.name) for layer in maps],
                                     mask_title=f"mask: {network}")
        from PIL import Image

        out = Path(out)
        Image.fromarray(figure).save(out)
        show_info(f"figure saved to {out} (image | {network}'s mask | {len(maps)} map(s))")
        return out

    # -- actions ---------------------------------------------------------------------------
    def draw_strokes(self) -> None:
        layer = self.review.strokes_layer(create=True)
        if layer is None:
            self.review._report_error("open an item in Review first")
            return
        self.viewer.layers.selection.active = layer
        layer.mode = "paint"

    def _on_tab_changed(self, index: int) -> None:
        if self.tabs.widget(index) is not None and self.tabs.tabText(index).startswith("Train"):
            self.finetune.refresh_data()

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
            # the save dialog has asked before replacing a file; an nnU-Net folder is refused if full
            result = export(root, fmt, Path(out), overwrite=fmt != "nnunet")
        except Exception as err:  # noqa: BLE001 -- e.g. nothing to export yet
            self.last_error = error_text(err)
            show_warning(self.last_error)
            self.export_label.setText(f"⚠ {self.last_error}")
            return None
        self.last_error = None
        text = f"exported {fmt} to {result.get('out', out)}"
        if result.get("skipped"):  # items that could not be read, named (the others were exported)
            text += f"; {len(result['skipped'])} item(s) left out: " + "; ".join(result["skipped"][:3])
        self.export_label.setText(text)
        show_info(text)
        return result


def _set_colorbar(layer, on: bool) -> None:
    colorbar = getattr(layer, "colorbar", None)  # napari >= 0.5
    if colorbar is not None:
        colorbar.visible = on


def _set_name_overlay(layer, on: bool) -> None:
    """The layer's name as its grid panel's title (napari >= 0.6)."""
    overlay = getattr(layer, "name_overlay", None)
    if overlay is not None:
        overlay.visible = on


def _map_title(layer) -> str:
    """"MicroAUNet: LSCAB spatial attention" (network: the paper's term), "kept" when kept."""
    from .. import display

    meta = layer.metadata
    model, name = str(meta.get("model") or ""), str(meta.get("attention_map") or "")
    title = f"{display.network_name(model)}: {display.attention_title(model, name)[1]}" if name else layer.name
    return title + (" (kept)" if meta.get(L_ROLE) == KEPT_ROLE else "")
