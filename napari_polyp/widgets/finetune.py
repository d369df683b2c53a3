"""The "Fine-tune" dock widget: fine-tune a network on a corrections dataset.

Thin over :func:`napari_polyp.training.finetune.iter_finetune` (the same code
as ``napari-polyp finetune``): a small set of accepted/corrected items is
cross-validated (folds of neighbouring items; a large one keeps a hold-out split),
the start checkpoint and the fine-tuned one are scored on the same held-out items
("before", "after"), the network trained on every item is copied into the user
checkpoint folder and becomes the network's preferred checkpoint only when the claim
stands and the anchor set held (the rules of ``finetune``; "prefer even if worse"
forces it).

The run is a napari ``thread_worker``; Cancel asks the trainer to stop after the
step in progress, which then validates and keeps the best checkpoint so far
(checkpoints are written atomically, so a cancelled run leaves a loadable
checkpoint or none). When it ends, every Segment widget of the viewer re-reads
its checkpoint list, so the new checkpoint is offered there.

The live plot is a small QPainter sparkline (:class:`LivePlot`) rather than a
matplotlib canvas: two series of a few hundred points need no plotting
library, and napari does not depend on matplotlib.
"""
from __future__ import annotations

import math
import threading
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from qtpy.QtCore import QPointF, QRectF, Qt, Signal
from qtpy.QtGui import QColor, QPainter, QPainterPath, QPen
from qtpy.QtWidgets import (
    QCheckBox,
    QDoubleSpinBox,
    QFileDialog,
    QGridLayout,
    QRadioButton,
    QSizePolicy,
    QSpinBox,
    QWidget,
)

from .. import jobs
from ._common import BROWSE  # noqa: F401 -- the "browse..." entry; tests and callers name it from here
from ._common import (
    CheckpointCombo,
    checkpoint_events,
    column_with_form,
    device_combo,
    error_text,
    model_combo,
    path_row,
    run_controls,
    short_name,
    show_error,
    start_worker,
    text_label,
)

LOSS_COLOR = "#ff9f1c"
DICE_COLOR = "#3ec1ff"


def _fmt(value) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) and math.isfinite(value) else "–"


class LivePlot(QWidget):
    """Training loss per step and validation Dice per epoch, against epochs.

    Loss is drawn on its own min–max scale, Dice on 0–1; the start checkpoint's
    Dice (the "before" value) is the hollow point at epoch 0.
    """

    def __init__(self, parent=None):
        super().__init__(parent)
        self.loss_points: List[Tuple[float, float]] = []
        self.dice_points: List[Tuple[float, float]] = []
        self.baseline: Optional[float] = None
        self.setMinimumHeight(110)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Fixed)
        self.setToolTip("orange: training loss per step (own scale); blue: validation Dice (0–1) per epoch; "
                        "hollow point: the start checkpoint")

    def clear(self) -> None:
        self.loss_points, self.dice_points, self.baseline = [], [], None
        self.update()

    def add_loss(self, epoch: float, loss: float) -> None:
        if math.isfinite(loss):
            self.loss_points.append((epoch, loss))
            self.update()

    def add_dice(self, epoch: float, dice: float) -> None:
        if math.isfinite(dice):
            self.dice_points.append((epoch, dice))
            self.update()

    def hide_dice(self) -> None:
        """Drop the Dice curve and the "before" point (a run that makes no before/after claim)."""
        self.dice_points, self.baseline = [], None
        self.update()

    def set_baseline(self, dice: float) -> None:
        self.baseline = dice if math.isfinite(dice) else None
        self.update()

    def paintEvent(self, event):  # noqa: N802 (Qt)
        painter = QPainter(self)
        painter.setRenderHint(QPainter.Antialiasing)
        text_color = self.palette().color(self.foregroundRole())
        box = QRectF(self.rect()).adjusted(4, 16, -4, -4)
        frame = QColor(text_color)
        frame.setAlpha(60)
        painter.setPen(QPen(frame, 1))
        painter.drawRect(box)
        last_loss = self.loss_points[-1][1] if self.loss_points else float("nan")
        last_dice = self.dice_points[-1][1] if self.dice_points else float("nan")
        painter.setPen(QColor(LOSS_COLOR))
        painter.drawText(QPointF(6, 12), f"loss {_fmt(last_loss)}")
        painter.setPen(QColor(DICE_COLOR))
        painter.drawText(QPointF(box.center().x(), 12), f"val Dice {_fmt(last_dice)}")
        xs = [x for x, _ in self.loss_points + self.dice_points] + [0.0]
        x_max = max(max(xs), 1e-6)
        inner = box.adjusted(4, 4, -4, -4)
        if self.loss_points or self.dice_points:
            painter.setPen(frame)
            painter.drawText(box.adjusted(0, 0, -4, -2), int(Qt.AlignRight | Qt.AlignBottom), f"epoch {x_max:.3g}")

        def to_point(x: float, y01: float) -> QPointF:
            return QPointF(inner.left() + inner.width() * x / x_max, inner.bottom() - inner.height() * y01)

        if self.loss_points:
            values = [y for _, y in self.loss_points]
            lo, hi = min(values), max(values)
            span = hi - lo if hi > lo else 1.0
            self._polyline(painter, [to_point(x, (y - lo) / span) for x, y in self.loss_points], LOSS_COLOR, False)
        dice = ([(0.0, self.baseline)] if self.baseline is not None else []) + self.dice_points
        if dice:
            self._polyline(painter, [to_point(x, min(max(y, 0.0), 1.0)) for x, y in dice], DICE_COLOR, True)
        if self.baseline is not None:
            painter.setPen(QPen(QColor(DICE_COLOR), 1.5))
            painter.setBrush(Qt.NoBrush)
            painter.drawEllipse(to_point(0.0, min(max(self.baseline, 0.0), 1.0)), 3.5, 3.5)
        painter.end()

    @staticmethod
    def _polyline(painter: QPainter, points: List[QPointF], color: str, dots: bool) -> None:
        painter.setPen(QPen(QColor(color), 1.5))
        painter.setBrush(Qt.NoBrush)
        if len(points) > 1:
            path = QPainterPath(points[0])
            for p in points[1:]:
                path.lineTo(p)
            painter.drawPath(path)
        if dots or len(points) == 1:
            painter.setBrush(QColor(color))
            for p in points:
                painter.drawEllipse(p, 2.5, 2.5)


class FinetuneWidget(QWidget):
    """Corrections folder, network, start checkpoint, epochs or a time budget,
    training size, device; Start / Cancel; progress, live plot, Dice before/after.

    ``finetuned(result)`` is emitted with ``iter_finetune``'s result dict
    (``checkpoint``, ``preferred``, ``before``, ``after``, ``reason``, ...).
    """

    finetuned = Signal(dict)

    def __init__(self, napari_viewer, parent=None, model_source=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.model_source = model_source  # a Segment widget: its network and checkpoint are fine-tuned
        self._worker = None
        self._stop = threading.Event()
        self._budget_s: Optional[float] = None
        self._total_epochs = 0
        self._size_for = ""
        self.last_result: Optional[Dict] = None
        self.last_error: Optional[str] = None
        self._build_ui()
        self._on_model_changed()
        self._on_length_mode()

    # -- UI ----------------------------------------------------------------------
    def _build_ui(self) -> None:
        root, form = column_with_form(self)

        data_row, self.data_edit, (self.data_button,) = path_row(
            "corrections dataset (images/, masks/, manifest.jsonl)", [("…", "", self._browse_data)],
            tooltip="A corrections dataset saved by the Review widget (accepted and corrected "
                    "items are used), or any folder with images/ and masks/ paired by name")
        form.addRow("data", data_row)
        self.data_label = text_label()
        form.addRow("", self.data_label)

        self.model_combo = model_combo()
        self.checkpoint_combo = CheckpointCombo(
            tooltip="Weights to start from: the network's default checkpoint first, or a file")
        self.follows_label = text_label()
        if self.model_source is None:
            form.addRow("network", self.model_combo)
            form.addRow("start from", self.checkpoint_combo)
        else:  # in the workspace: the network and weights of the Model tab, one choice for everything
            self.model_combo.setVisible(False)
            self.checkpoint_combo.setVisible(False)
            form.addRow("network", self.follows_label)

        length = QGridLayout()  # two rows: fits a narrow dock
        self.epochs_radio = QRadioButton("epochs")
        self.epochs_radio.setChecked(True)
        self.epochs_spin = QSpinBox()
        self.epochs_spin.setRange(1, 10000)
        self.epochs_spin.setValue(5)
        self.budget_radio = QRadioButton("minutes")
        self.budget_spin = QDoubleSpinBox()
        self.budget_spin.setRange(0.1, 24 * 60)
        self.budget_spin.setDecimals(1)
        self.budget_spin.setValue(10.0)
        self.budget_spin.setToolTip("Time budget: the schedule is fitted to it and the run stops in time")
        for at, w in enumerate((self.epochs_radio, self.epochs_spin, self.budget_radio, self.budget_spin)):
            length.addWidget(w, at // 2, at % 2)
        form.addRow("length", length)

        self.size_spin = QSpinBox()
        self.size_spin.setRange(32, 2048)
        self.size_spin.setSingleStep(32)
        self.size_spin.setSuffix(" px")
        self.size_spin.setToolTip("Training side length (default: the network's input size; smaller is faster "
                                  "but trains the network on coarser images than it sees in Segment)")
        form.addRow("size", self.size_spin)
        self.device_combo = device_combo()
        form.addRow("device", self.device_combo)
        self.force_check = QCheckBox("prefer it even if Dice falls")
        self.force_check.setToolTip("Make the result the network's default checkpoint even when its validation "
                                    "Dice is lower than the start checkpoint's")
        form.addRow("", self.force_check)

        self.start_button, self.cancel_button, self.progress = run_controls(
            root, "Start", "Stop after the current step; the best validated checkpoint so far is kept", steps=1000)
        self.plot = LivePlot()
        root.addWidget(self.plot)
        self.dice_label = text_label("validation Dice: before – after –", selectable=True)
        root.addWidget(self.dice_label)
        self.status_label = text_label(selectable=True)
        root.addWidget(self.status_label)
        root.addStretch(1)

        self.data_edit.editingFinished.connect(self._describe_data)
        self.model_combo.currentTextChanged.connect(self._on_model_changed)
        self.epochs_radio.toggled.connect(self._on_length_mode)
        self.start_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self.cancel)

    # -- inputs ------------------------------------------------------------------------
    def set_data(self, path) -> None:
        """Set the corrections folder (what the "…" button does)."""
        self.data_edit.setText(str(path))
        self._describe_data()

    def _browse_data(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Choose a corrections dataset", self.data_edit.text())
        if path:
            self.set_data(path)

    def _describe_data(self) -> None:
        """The data line, read again from the folder (it fills as Review saves: see ``refresh_data``)."""
        self.data_label.setText(describe_data(self.data_edit.text()))

    def refresh_data(self) -> None:
        """Read the corrections folder again (after a save, or when the tab is shown)."""
        self._describe_data()

    def model_name(self) -> str:
        """The network to fine-tune: the Model tab's in the workspace, else this widget's choice."""
        source = self.model_source
        return (source.model_combo if source is not None else self.model_combo).currentText()

    def follow_model_source(self, *_) -> None:
        """The Model tab's network or checkpoint changed: fine-tune that one."""
        if self.model_source is None:
            return
        self.model_combo.setCurrentText(self.model_name())
        checkpoint = self.checkpoint()
        self.follows_label.setText(
            f"{self.model_name()}, from {short_name(Path(checkpoint).name) if checkpoint else 'random weights'} "
            "(the Model tab's choice)")

    def _on_model_changed(self, *_) -> None:
        import models

        name = self.model_combo.currentText()
        self.checkpoint_combo.fill(name)
        if name and name != self._size_for:  # a new network: its own input size (a refresh keeps the user's)
            self.size_spin.setValue(models.base_card(name).input_size)
            self._size_for = name

    def refresh_checkpoints(self) -> None:
        """Re-read the start-checkpoint list, keeping the chosen file when it is still there."""
        chosen = self.checkpoint()
        self._on_model_changed()
        if chosen:
            index = self.checkpoint_combo.findData(chosen)
            if index >= 0:
                self.checkpoint_combo.setCurrentIndex(index)
            else:
                self.add_checkpoint_path(chosen)

    def add_checkpoint_path(self, path) -> None:
        """Add a checkpoint file to the start list and select it (what "browse..." does)."""
        self.checkpoint_combo.add_path(path)

    def checkpoint(self) -> Optional[str]:
        """The weights to start from (None: none chosen; random weights cannot be fine-tuned here)."""
        data = self.model_source.checkpoint() if self.model_source is not None else self.checkpoint_combo.selected()
        return str(data) if data else None

    def _on_length_mode(self, *_) -> None:
        by_epochs = self.epochs_radio.isChecked()
        self.epochs_spin.setEnabled(by_epochs)
        self.budget_spin.setEnabled(not by_epochs)

    def job(self) -> Dict:
        """The arguments of ``iter_finetune`` the controls describe."""
        by_epochs = self.epochs_radio.isChecked()
        data, name = self.data_edit.text().strip(), self.model_name()
        return dict(
            data=data, model=name, checkpoint=self.checkpoint(),
            epochs=self.epochs_spin.value() if by_epochs else None,
            time_budget_min=None if by_epochs else float(self.budget_spin.value()),
            size=self.size_spin.value(), device=self.device_combo.currentText(),
            force=self.force_check.isChecked(),
            command=f"Fine-tune widget: data={data} model={name} start={self.checkpoint()} "
                    + (f"epochs={self.epochs_spin.value()}" if by_epochs else f"minutes={self.budget_spin.value()}")
                    + f" size={self.size_spin.value()}",
        )

    # -- run -------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        return self._worker is not None

    def start(self) -> None:
        """Start fine-tuning (the Start button)."""
        if self.busy:
            return
        self.refresh_data()  # the line says what this run will read
        job = self.job()
        problem = ("choose a corrections dataset folder" if not job["data"]
                   else "no network is registered" if not job["model"]
                   else "choose a checkpoint to start from (browse...)" if not job["checkpoint"] else "")
        if problem:
            self._report_error(problem)
            return
        self._stop.clear()
        self.last_result, self.last_error = None, None
        self._budget_s = job["time_budget_min"] * 60 if job["time_budget_min"] else None
        self._total_epochs = job["epochs"] or 0
        self.plot.clear()
        self.progress.setRange(0, 0)  # busy until the first step: loading data, scoring the start checkpoint
        self.dice_label.setText("validation Dice: before … after –")
        self.status_label.setText(f"fine-tuning {job['model']} from {short_name(Path(job['checkpoint']).name)}…")
        self._worker = start_worker(self._run_job, job, on_yield=self._on_item, on_error=self._report_error,
                                    on_finished=self._on_finished)
        self._set_running(True)

    def cancel(self) -> None:
        """Stop after the current step; the trainer validates and keeps the best checkpoint so far."""
        if self._worker is not None and not self._stop.is_set():
            self._stop.set()
            self.status_label.setText("cancelling: finishing the step, validating, keeping the best checkpoint…")

    def _set_running(self, running: bool) -> None:
        for w in (self.start_button, self.model_combo, self.checkpoint_combo, self.data_edit, self.data_button):
            w.setEnabled(not running)
        self.cancel_button.setEnabled(running)

    # worker side (a thread): training and files only, no widget changes
    def _run_job(self, job: Dict):
        from ..training.finetune import iter_finetune

        yield from iter_finetune(should_stop=self._stop.is_set, **job)

    # main-thread side
    def _on_item(self, item) -> None:
        if isinstance(item, jobs.Finished):
            self._show_result(item.value)
            return
        kind = item.kind
        if kind == "start":
            if item.message:
                self.status_label.setText(item.message)
        elif kind == "baseline":
            before = item.metrics.get("dice", float("nan"))
            self.plot.set_baseline(before)
            self.dice_label.setText(f"validation Dice: before {_fmt(before)} after …")
            self.status_label.setText(item.message)
        elif kind == "step":
            at = item.step / max(item.steps_per_epoch, 1)
            self.plot.add_loss(at, item.loss)
            self._total_epochs = item.total_epochs or self._total_epochs
            self._set_progress(at, item.elapsed_s)
            if not self._stop.is_set():
                self.status_label.setText(
                    f"epoch {item.epoch + 1}/{self._total_epochs or '?'} · step {item.step} · loss {item.loss:.4f}")
        elif kind == "epoch":
            at = item.step / max(item.steps_per_epoch, 1)
            self.plot.add_dice(at, item.metrics.get("dice", float("nan")))
            self._total_epochs = item.total_epochs or self._total_epochs
            self._set_progress(at, item.elapsed_s)
            if not self._stop.is_set():
                self.status_label.setText(f"epoch {item.epoch}: validation Dice {_fmt(item.metrics.get('dice'))} "
                                          f"(best {_fmt(item.best_dice)})")

    def _set_progress(self, epochs_done: float, elapsed_s: float) -> None:
        if self._budget_s:
            fraction = elapsed_s / self._budget_s
        else:
            fraction = epochs_done / max(self._total_epochs, 1)
        self.progress.setRange(0, 1000)
        self.progress.setValue(int(1000 * min(max(fraction, 0.0), 1.0)))

    def _show_result(self, result: Dict) -> None:
        self.last_result = result
        claim = bool(result.get("claim"))
        if claim:
            from ..training.finetune import describe_gain

            before = result.get("before", {}).get("dice", float("nan"))
            after = result.get("after", {}).get("dice", float("nan"))
            n = result.get("before", {}).get("n") or result.get("after", {}).get("n")
            gain = result.get("validation", {}).get("gain")
            self.dice_label.setText(f"validation Dice: before {_fmt(before)} after {_fmt(after)}"
                                    + (f" (on {n} validation image{'s' if n != 1 else ''})" if n else "")
                                    + (f"\n{describe_gain(gain)}" if gain else ""))
        else:  # the validation set cannot tell better from worse: draw and claim nothing
            self.plot.hide_dice()
            self.dice_label.setText("no before/after claim")
        checkpoint = result.get("checkpoint")
        reason = result.get("reason", "")
        stopped = "cancelled; " if result.get("stopped_early") or self._stop.is_set() else ""
        if checkpoint and result.get("preferred"):
            text = f"{stopped}saved {short_name(Path(checkpoint).name)}, now the default: {reason}"
        elif checkpoint:
            text = f"{stopped}saved {short_name(Path(checkpoint).name)}, not made the default: {reason}"
        else:
            text = f"{stopped}no checkpoint: {reason}"
        self.status_label.setText(text)
        from napari.utils.notifications import show_info

        show_info(f"Fine-tune {result.get('model', '') or self.model_name()}: {text}")
        self.finetuned.emit(result)

    def _on_finished(self) -> None:
        self._worker = None
        self._set_running(False)
        self.progress.setRange(0, 1000)
        if self.last_result is not None and not self._stop.is_set() and not self.last_error:
            self.progress.setValue(1000)
        if self.last_result is not None and self.last_result.get("checkpoint"):
            announce_checkpoints(self.last_result.get("model") or self.model_name())

    def _report_error(self, message: str) -> None:
        show_error(self, message)

    def closeEvent(self, event):  # noqa: N802 (Qt)
        self.cancel()
        super().closeEvent(event)


def describe_data(folder: str) -> str:
    """The data line for a corrections folder as it is now: how many items training would read,
    or what is wrong with it (one line, never a traceback); "" for no folder."""
    import warnings

    from ..training.data import LeftOut, find_pairs, is_corrections_dataset

    text = str(folder or "").strip()
    if not text:
        return ""
    try:
        with warnings.catch_warnings(record=True) as caught:  # the items left out, each with why
            warnings.simplefilter("always")
            pairs = find_pairs(text)
    except Exception as err:  # noqa: BLE001 -- shown, not raised
        return f"⚠ {error_text(err)}"
    kind = "accepted/corrected items" if is_corrections_dataset(text) else "image/mask pairs"
    left_out = [str(w.message) for w in caught if issubclass(w.category, LeftOut)]
    if not left_out:
        return f"{len(pairs)} {kind}"
    more = f" (and {len(left_out) - 1} more)" if len(left_out) > 1 else ""
    return f"{len(pairs)} {kind}; ⚠ {left_out[0]}{more}"  # a missing mask file went by unnamed


def announce_checkpoints(model_name: str) -> None:
    """Tell every checkpoint list (all docks, all viewers) that ``model_name``'s checkpoints changed."""
    checkpoint_events.changed.emit(model_name)
