"""Pieces the dock widgets share: choices, error text, the network and
checkpoint combos, a path row, labels and a predictor cache.

Written once here so that Segment, Review and Fine-tune offer the same
checkpoints, label the default one the same way and word errors alike.
"""
from __future__ import annotations

import inspect
import threading
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from psygnal import Signal as EventSignal
from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QWidget,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
)

from ..errors import error_text  # noqa: F401 -- the widgets' one line for an error
from ..inference.predictors import default_predictor_factory  # noqa: F401 -- the widgets' default
from ..io.images import is_image_path

DEVICES = ("auto", "cpu", "cuda", "mps")
BROWSE = "browse..."
RANDOM_WEIGHTS = "random weights (untrained)"


def _takes(factory: Callable, name: str) -> bool:
    """Whether ``factory`` accepts the keyword ``name`` (factories written before it existed do not)."""
    import inspect

    try:
        parameters = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == name or p.kind == p.VAR_KEYWORD for p in parameters)


def _checkpoint_key(checkpoint) -> str:
    # A checkpoint file rewritten in place (fine-tuning) must not reuse the old network.
    if not checkpoint:
        return str(checkpoint)
    try:
        return f"{checkpoint}@{Path(checkpoint).stat().st_mtime_ns}"
    except OSError:
        return str(checkpoint)


class PredictorCache:
    """Predictors by (model, checkpoint@mtime, device, TTA, engine options), built on first
    use; safe to call from worker threads (a predictor being built by one thread, e.g.
    a preload, is waited for by the others, never built twice). The factory is passed
    per call so a widget's ``predictor_factory`` may be replaced after construction.
    ``options`` (engine, threads) reach the factories that accept them."""

    def __init__(self):
        self._predictors: Dict[tuple, object] = {}
        self._building: Dict[tuple, threading.Lock] = {}
        self._lock = threading.Lock()

    def get(self, factory: Callable, model_name: str, checkpoint, device: str, tta: bool = False, **options):
        """``tta``: flip TTA on or off. It is part of the key, so a predictor's ``tta`` is set once,
        when it is built, and never changed under a worker using it for another run."""
        options = {k: v for k, v in options.items() if _takes(factory, k)}
        key = (model_name, _checkpoint_key(checkpoint), device, bool(tta), tuple(sorted(options.items())))
        with self._lock:
            build_lock = self._building.setdefault(key, threading.Lock())
        with build_lock:
            with self._lock:
                found = self._predictors.get(key)
            if found is None:
                found = self._with_tta(factory(model_name, checkpoint, device, **options), bool(tta))
                with self._lock:
                    self._predictors[key] = found
        return found

    def _with_tta(self, predictor, tta: bool):
        """The predictor with ``tta`` set; a copy when the factory handed out an object that is
        already cached with the other setting (the copy shares the network, not the flag)."""
        if not hasattr(predictor, "tta") or predictor.tta == tta:
            return predictor
        with self._lock:
            shared = any(cached is predictor for cached in self._predictors.values())
        if shared:
            import copy

            predictor = copy.copy(predictor)
        predictor.tta = tta
        return predictor


def column_with_form(widget) -> Tuple[QVBoxLayout, QFormLayout]:
    """The widget's vertical layout, with a form layout at its top for the labelled controls."""
    root = QVBoxLayout(widget)
    form = QFormLayout()
    root.addLayout(form)
    return root, form


def model_combo(default: Optional[str] = None) -> QComboBox:
    """The registered networks, ``default`` (else the best polyp network) selected."""
    import models

    combo = QComboBox()
    names = models.list_models()
    combo.addItems(names)
    combo.setCurrentText(default if default in names else models.default_model("polyp"))
    return combo


def task_combo() -> QComboBox:
    """Colonoscopy / dermoscopy: picking one selects that task's default network."""
    import models

    combo = QComboBox()
    combo.addItems(list(models.TASKS))
    combo.setToolTip("What the images show; selects the best network for it")
    return combo


def task_mismatch(layer, model_name: str) -> str:
    """A warning when the image layer says it shows another task than the network's, else ""."""
    import models

    image_task = (getattr(layer, "metadata", None) or {}).get("task")
    return models.task_mismatch(model_name, image_task, subject=f"{layer.name} shows")


# -- what an image shows, when it does not say (item 10 of issue 24) ------------------------------
# Answers per folder (or per file, for an image alone), for every widget of the session: asked once.
_TASK_ANSWERS: Dict[str, str] = {}


def task_key(source_path) -> str:
    """What one answer covers: the folder of an image file (its siblings show the same), a video or
    folder itself, or "" for an image without a file (then the layer's own metadata holds it)."""
    if not source_path:
        return ""
    path = Path(str(source_path))
    return str(path.parent if is_image_path(path) else path)


def known_task(metadata, source_path=None) -> Optional[str]:
    """The card task ("polyp" / "skin") an image shows: its own metadata (samples say), else the
    answer given for its folder; None when nobody knows (then ask, once)."""
    task = (metadata or {}).get("task")
    if task:
        return task
    return _TASK_ANSWERS.get(task_key(source_path or (metadata or {}).get("source_path"))) or None


def remember_task(metadata, task: str, source_path=None) -> None:
    """The user said what the image shows: kept in its metadata and for its folder."""
    metadata["task"] = task
    key = task_key(source_path or metadata.get("source_path"))
    if key:
        _TASK_ANSWERS[key] = task


class TaskQuestion(QWidget):
    """"What does NAME show? [Colonoscopy] [Dermoscopy]": a row in the dock, never a dialog (the run
    goes on); ``answered(card_task)`` when a button is pressed."""

    answered = Signal(str)

    def __init__(self, parent=None):
        import models

        super().__init__(parent)
        # the question above its answers: a file name beside two buttons made the dock's page wider
        # than the dock at 1366×768 (its right edge, the Cancel button with it, cut off)
        column = QVBoxLayout(self)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(2)
        self.label = text_label()
        self.label.setStyleSheet("color: #ff8c00;")
        column.addWidget(self.label)
        row = QHBoxLayout()
        self.buttons = {}
        for name, card_task in models.TASKS.items():
            button = QPushButton(name.capitalize())
            button.setToolTip(f"The image shows {name}: the warning and the network choice follow")
            button.clicked.connect(lambda _=False, t=card_task: self._answer(t))
            row.addWidget(button)
            self.buttons[card_task] = button
        column.addLayout(row)
        self.setVisible(False)
        self.subject = None  # the metadata (of a layer) the question is about

    def ask(self, name: str, metadata) -> None:
        self.subject = metadata
        self.label.setText(f"What does {short_name(name)} show?")
        self.label.setToolTip(f"What does {name} show? Asked once per folder; the warning and the network "
                              "choice follow the answer")
        self.setVisible(True)

    def _answer(self, card_task: str) -> None:
        if self.subject is not None:
            remember_task(self.subject, card_task)
        self.setVisible(False)
        self.answered.emit(card_task)


def short_name(name: str, limit: int = 24) -> str:
    """``name`` cut in its middle to ``limit`` characters: a label cannot wrap inside a word, and
    one long file name set the width of a whole dock page."""
    if len(name) <= limit:
        return name
    keep = limit - 1
    return f"{name[:(keep + 1) // 2]}…{name[len(name) - keep // 2:]}"


class ChoiceRow(QWidget):
    """A question in a row of the dock with one button per answer: never a dialog, nothing waits."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self._row = QHBoxLayout(self)
        self._row.setContentsMargins(0, 0, 0, 0)
        self.label = text_label()
        self.label.setStyleSheet("color: #ff8c00;")
        self._row.addWidget(self.label, 1)
        self.buttons: Dict[str, QPushButton] = {}
        self.setVisible(False)

    def ask(self, text: str, answers) -> None:
        """``answers``: [(button text, callable)]; a press calls it and hides the row."""
        for button in self.buttons.values():
            self._row.removeWidget(button)
            button.deleteLater()
        self.buttons = {}
        self.label.setText(text)
        for label, act in answers:
            button = QPushButton(label)
            button.clicked.connect(lambda _=False, a=act: (self.setVisible(False), a()))
            self._row.addWidget(button)
            self.buttons[label] = button
        self.setVisible(True)


def device_combo() -> QComboBox:
    combo = QComboBox()
    combo.addItems(DEVICES)
    return combo


class _CheckpointEvents:
    """``changed(model_name)``: a checkpoint of that network was written or made the default.

    Every :class:`CheckpointCombo` listens, whichever viewer (or plugin-dock proxy of
    one) its widget belongs to, so a fine-tuned checkpoint shows up everywhere."""

    changed = EventSignal(str)


checkpoint_events = _CheckpointEvents()


class CheckpointCombo(QComboBox):
    """A network's checkpoints (the default first, labelled "(default)" only when it
    is the real default), then fixed ``extras`` such as random weights, then
    "browse..." which asks for a file. Item data: the path string, the extra's
    data, or ``BROWSE``."""

    def __init__(self, extras: Sequence[Tuple[str, object]] = (), tooltip: str = "", parent=None):
        super().__init__(parent)
        self.extras = tuple(extras)
        self.model_name = ""
        self._tip = tooltip
        if tooltip:
            self.setToolTip(tooltip)
        self.activated.connect(self._on_activated)
        # Elide long checkpoint names instead of widening the dock (the full name is in the tooltip).
        self.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
        self.setMinimumContentsLength(12)
        self.currentIndexChanged.connect(self._show_path_tooltip)
        checkpoint_events.changed.connect(self._on_checkpoints_changed)
        self.destroyed.connect(lambda *_: _disconnect(checkpoint_events.changed, self._on_checkpoints_changed))

    def fill(self, model_name: str) -> None:
        """List ``model_name``'s checkpoints and select the first entry (no signals)."""
        from models.checkpoint import default_checkpoint, list_checkpoints

        self.model_name = model_name
        self.blockSignals(True)
        self.clear()
        if model_name:
            default = default_checkpoint(model_name)
            for path in list_checkpoints(model_name):
                path = Path(path)
                is_default = default is not None and path == Path(default)
                self.addItem(f"{path.name} (default)" if is_default else path.name, str(path))
        for label, data in self.extras:
            self.addItem(label, data)
        self.addItem(BROWSE, BROWSE)
        self.setCurrentIndex(0)
        self.blockSignals(False)

    def refresh(self) -> None:
        """Re-read the list: the default entry stays chosen (it may now be a new file); another
        choice (a file, random weights) is kept. Emits ``currentIndexChanged`` once."""
        on_default = self.currentIndex() == 0 and self.currentText().endswith("(default)")
        chosen = self.currentData()
        self.fill(self.model_name)
        if not on_default and chosen not in (None, BROWSE):
            index = self.findData(chosen)
            if index >= 0:
                self.setCurrentIndex(index)
            else:
                self.blockSignals(True)
                self.add_path(chosen)
                self.blockSignals(False)
        self.currentIndexChanged.emit(self.currentIndex())

    def _on_checkpoints_changed(self, model_name: str) -> None:
        try:
            if model_name == self.model_name:
                self.refresh()
        except RuntimeError:  # the Qt side is gone (dock closed) before the disconnect ran
            _disconnect(checkpoint_events.changed, self._on_checkpoints_changed)

    def _show_path_tooltip(self, index: int) -> None:
        data = self.itemData(index)
        shown = str(data) if isinstance(data, str) and data != BROWSE else self.itemText(index)
        self.setToolTip(f"{self._tip}\n{shown}" if self._tip else shown)

    def add_path(self, path) -> None:
        """Add a checkpoint file before the extras and "browse...", and select it."""
        at = self.count() - 1 - len(self.extras)
        self.insertItem(at, Path(path).name, str(path))
        self.setCurrentIndex(at)

    def selected(self):
        """The chosen item's data; None for "browse..." or an empty list."""
        data = self.currentData()
        return None if data is None or data == BROWSE else data

    def _on_activated(self, index: int) -> None:
        if self.itemData(index) != BROWSE:
            return
        path, _ = QFileDialog.getOpenFileName(self, "Choose a napari-polyp checkpoint", "", "Checkpoints (*.pt)")
        if path:
            self.add_path(path)
        else:
            self.setCurrentIndex(0)


def _disconnect(signal, slot) -> None:
    try:
        signal.disconnect(slot)
    except Exception:  # noqa: BLE001 -- already disconnected
        pass


def path_row(placeholder: str, buttons: Iterable[Tuple[str, str, Callable]], read_only: bool = False,
             tooltip: str = "") -> Tuple[QHBoxLayout, QLineEdit, List[QPushButton]]:
    """A line edit for a path followed by its buttons ``(text, tooltip, on_click)``.

    Returns ``(layout, edit, buttons)``; a one-character button ("…") is kept narrow."""
    row = QHBoxLayout()
    edit = QLineEdit()
    edit.setReadOnly(read_only)
    edit.setPlaceholderText(placeholder)
    if tooltip:
        edit.setToolTip(tooltip)
    row.addWidget(edit)
    made = []
    for text, tip, on_click in buttons:
        button = QPushButton(text)
        if len(text) == 1:
            button.setFixedWidth(32)
        if tip:
            button.setToolTip(tip)
        button.clicked.connect(lambda _=False, f=on_click: f())
        row.addWidget(button)
        made.append(button)
    return row, edit, made


def run_controls(root, run_text: str, cancel_tip: str = "",
                 steps: int = 1) -> Tuple[QPushButton, QPushButton, QProgressBar]:
    """Add a run / Cancel button row (Cancel disabled until a run starts) and a
    progress bar of ``steps`` steps to ``root``; returns (run, cancel, progress)."""
    row = QHBoxLayout()
    run_button, cancel_button = QPushButton(run_text), QPushButton("Cancel")
    cancel_button.setEnabled(False)
    if cancel_tip:
        cancel_button.setToolTip(cancel_tip)
    row.addWidget(run_button)
    row.addWidget(cancel_button)
    root.addLayout(row)
    progress = QProgressBar()
    progress.setRange(0, steps)
    progress.setValue(0)
    root.addWidget(progress)
    return run_button, cancel_button, progress


def text_label(text: str = "", selectable: bool = False) -> QLabel:
    """A word-wrapped label (status lines, descriptions)."""
    label = QLabel(text)
    label.setWordWrap(True)
    if selectable:
        label.setTextInteractionFlags(Qt.TextSelectableByMouse)
    return label


def show_error(widget, message: str) -> None:
    """Remember ``message`` as the widget's ``last_error``, show it in its status line and notify."""
    from napari.utils.notifications import show_error as notify

    widget.last_error = message
    widget.status_label.setText(f"error: {message}")
    notify(message)


def start_worker(function, *args, on_yield: Optional[Callable] = None,
                 on_return: Optional[Callable] = None, on_error: Optional[Callable[[str], None]] = None,
                 on_finished: Optional[Callable] = None):
    """Run a job in a napari thread worker: ``function(*args)`` (a function or a generator
    function), or a generator already made (a :mod:`napari_polyp.jobs` job).

    The one way the widgets start background work: results come back on the main thread
    (``on_yield`` per yielded item, ``on_return`` with the return value), errors as one
    line of text (``on_error``), then ``on_finished``. Returns the started worker
    (``quit()`` asks a generator to stop after its current item).

    The worker holds its job through a :class:`_Job` it lets go of when it finishes: napari
    keeps every worker it made for the window's lifetime (its task list holds the worker's
    ``quit`` as the task's cancel action), and a job's arguments are an image, a click
    session, a network: kept, they grew a long review session by ~11 MiB an item
    (``benchmarks/long_session.py``)."""
    from napari.qt.threading import create_worker

    job = _Job(function, args)
    # with on_error the error is ours to say, in one line: napari's default re-raises it on the main
    # thread too, which shows its traceback beside that line (a checkpoint that is not one did)
    worker = create_worker(_run_generator if job.is_generator else _run_function, job, _start_thread=False,
                           _ignore_errors=on_error is not None)
    worker.finished.connect(job.release)
    if on_yield is not None and hasattr(worker, "yielded"):
        worker.yielded.connect(on_yield)
    if on_return is not None:
        worker.returned.connect(on_return)
    if on_error is not None:
        worker.errored.connect(lambda err: on_error(error_text(err)))
    if on_finished is not None:
        worker.finished.connect(on_finished)
    worker.start()
    return worker


class _Job:
    """What a worker runs: a function and its arguments, or a generator already made (a
    :mod:`napari_polyp.jobs` job); :meth:`release` lets go of them once the worker is done."""

    def __init__(self, function, args: tuple):
        self.is_generator = inspect.isgenerator(function) or inspect.isgeneratorfunction(function)
        self.function, self.args = function, args

    def start(self):
        """The function's return value, or the generator to drive."""
        function, args = self.function, self.args
        if function is None:
            raise RuntimeError("this job has finished already")
        return function if inspect.isgenerator(function) else function(*args)

    def release(self) -> None:
        self.function, self.args = None, ()


def _run_function(job: _Job):
    return job.start()


def _run_generator(job: _Job):
    """A generator function around the job's generator (napari's worker needs the function)."""
    return (yield from job.start())
