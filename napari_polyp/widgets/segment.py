"""The "Segment" dock widget: run a network on an image or video, edit the mask.

Thin over the headless parts: :class:`napari_polyp.inference.Predictor` does
the network work (in a napari ``thread_worker``; a video in small batches, each
frame shown as it comes, so Cancel stops within a batch),
:mod:`napari_polyp.layers` turns predictions into layers (re-using the layers of
an earlier image) and re-thresholds masks without the network, and
:mod:`napari_polyp.inference.live` plays a video with the mask of each frame ("Live", the
:mod:`.segment_live` mixin).

With ``preload_on_change`` (the app sets it) the chosen network is built, and run
once to warm it, in the background as soon as it is chosen, so Run only pays for
the image.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Callable, List, Optional

from qtpy.QtCore import Qt, QTimer, Signal
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QMessageBox,
    QPushButton,
    QSlider,
    QSpinBox,
    QWidget,
)

from .. import jobs, layers as L
from ..conventions import DEFAULT_THRESHOLD, PRE_ANNOTATION_PROBABILITY
from ..errors import UserError
from ..inference.prediction import tta_fits
from .canvas_guard import guard_dimension_drop
from .segment_live import LIVE_STOP_WAIT_S, SegmentLive
from ._common import (
    RANDOM_WEIGHTS,
    CheckpointCombo,
    PredictorCache,
    column_with_form,
    default_predictor_factory,
    device_combo,
    error_text,
    model_combo,
    run_controls,
    show_error,
    start_worker,
    TaskQuestion,
    known_task,
    task_combo,
    task_mismatch,
    text_label,
)

SCOPES = ("current frame", "all frames")
UNTRAINED_WARNING = "⚠ untrained: predictions are not meaningful"
_OUTPUT_ROLES = ("probability", "attention", "probability_difference", "live_view", PRE_ANNOTATION_PROBABILITY)
PROGRESS_INTERVAL_S = 0.25


class SegmentWidget(SegmentLive, QWidget):
    """Model, checkpoint, device, threshold, scope; Run / Cancel; Compare two networks.

    ``predictor_factory(model, checkpoint, device)`` builds a predictor (tests
    inject a counting one); ``ask_edits(EditsFound) -> "discard"|"keep"|"cancel"``
    is asked before manual edits would be replaced (a QMessageBox by default).
    """

    # (value, outcome) after a threshold change was applied to the mask on screen: "updated",
    # "kept-edits", "unchanged", "cancelled" (the control went back), or "" (no mask of Segment's
    # here): Review and Click mode follow what happened, not the control's raw value
    threshold_applied = Signal(float, str)

    def __init__(self, napari_viewer, predictor_factory: Optional[Callable] = None,
                 ask_edits: Optional[Callable] = None, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.predictor_factory = predictor_factory or default_predictor_factory
        self.ask_edits = ask_edits or self._ask_edits_dialog
        self._predictors = PredictorCache()
        self._worker = None
        self._run_decision: Optional[str] = None
        self._run_started = 0.0
        self._frames_done = 0
        self._handlers: dict = {}  # event type -> what shows it (set by _start)
        self._frames_total = 0
        self._cancel_requested = False
        self._run_again = False  # the task answered during a run: the fitting network runs after it
        self._preload_pending = False
        self._progress_shown = 0.0
        self._job: Optional[dict] = None  # the running job (its image layer), for deletions mid-run
        self._dropped = ""  # why the running job's results are dropped (a layer of it was deleted)
        self._drawing = False  # a result is being drawn: layer removals now are the run's own
        # Build the network in the background whenever the choice changes (the app turns this on;
        # off by default so that a widget made in a script or a test builds nothing unasked).
        self.preload_on_change = False
        self._init_live()
        self.last_latency_s: Optional[float] = None  # Run pressed -> first mask shown
        self.last_error: Optional[str] = None
        self._build_ui()
        self._connect_viewer()
        self._refresh_images()
        self._on_model_changed()

    # -- UI ----------------------------------------------------------------------
    def _build_ui(self) -> None:
        import models

        root, form = column_with_form(self)

        self.image_combo = QComboBox()
        self.image_combo.setToolTip("Image or video layer to segment")
        form.addRow("image", self.image_combo)

        self.task_combo = task_combo()
        form.addRow("task", self.task_combo)
        self.model_combo = model_combo()
        form.addRow("model", self.model_combo)

        self.card_label = text_label(selectable=True)
        root.addWidget(self.card_label)
        self.warning_label = text_label(UNTRAINED_WARNING)
        self.warning_label.setStyleSheet("color: #ff8c00; font-weight: bold;")
        root.addWidget(self.warning_label)

        form2 = QFormLayout()
        root.addLayout(form2)
        self.checkpoint_combo = CheckpointCombo(
            extras=[(RANDOM_WEIGHTS, False)],
            tooltip="Weights: the default checkpoint first; random weights; or a file")
        form2.addRow("checkpoint", self.checkpoint_combo)
        self.device_combo = device_combo()
        form2.addRow("device", self.device_combo)
        self.engine_combo, self.threads_spin = _engine_controls()
        form2.addRow("engine", self.engine_combo)
        form2.addRow("threads", self.threads_spin)

        threshold_row = QHBoxLayout()
        self.threshold_slider = QSlider(Qt.Horizontal)
        self.threshold_slider.setRange(0, 100)
        self.threshold_slider.setValue(50)
        self.threshold_spin = QDoubleSpinBox()
        self.threshold_spin.setRange(0.0, 1.0)
        self.threshold_spin.setSingleStep(0.01)
        self.threshold_spin.setDecimals(2)
        self.threshold_spin.setValue(DEFAULT_THRESHOLD)
        self.threshold_spin.setToolTip("Probability threshold; changing it re-derives the mask without the network")
        threshold_row.addWidget(self.threshold_slider)
        threshold_row.addWidget(self.threshold_spin)
        form2.addRow("threshold", threshold_row)
        self.scope_combo = QComboBox()
        self.scope_combo.addItems(SCOPES)
        form2.addRow("scope", self.scope_combo)
        self.tta_check = QCheckBox("mirror images too (3× slower)")
        self.tta_check.setToolTip("Flip test-time augmentation: the network also sees the image mirrored "
                                  "left-right and top-bottom, and the three probabilities are averaged. "
                                  "On by default for a network that still answers within 1 s on one CPU "
                                  "thread; once you set it, it stays as you set it")
        self._tta_set_by_user = False
        form2.addRow("TTA", self.tta_check)
        self.second_check = QCheckBox("second opinion")
        self.second_check.setToolTip(
            "The task's checking network (DINO-keys for polyps) also looks at the image; where it sees none of the "
            "mask, its own mask is shown instead (the default sure of the wrong thing at another hospital), and the "
            "status line says so. On by default where both networks still answer within 1 s on one CPU thread; "
            "once you set it, it stays as you set it")
        self._second_set_by_user, self._second_network = False, ""
        self._second_said: List[str] = []  # what the checking network said of each frame of the last run
        form2.addRow("check", self.second_check)

        self.run_button, self.cancel_button, self.progress = run_controls(root, "Run")
        self.live_button = QPushButton("Live")
        self.live_button.setCheckable(True)
        self.live_button.setToolTip("Play the video at its frame rate with the network's mask as a contour, "
                                    "computed on the fly: a frame due while the network is busy gets its last mask "
                                    "moved there by optical flow (frames are skipped only when even that falls behind)")
        root.addWidget(self.live_button)
        self.status_label = text_label()
        root.addWidget(self.status_label)
        self.task_question = TaskQuestion()
        self.task_question.answered.connect(self._on_task_answered)
        root.addWidget(self.task_question)

        compare = QGroupBox("Compare")
        compare_layout = QFormLayout(compare)
        self.compare_combo = QComboBox()
        self.compare_combo.addItems(models.list_models())
        others = [m for m in models.list_models() if m != self.model_combo.currentText()]
        if others:
            self.compare_combo.setCurrentText(others[0])
        self.compare_combo.setToolTip("Second network (its default checkpoint, else random weights)")
        compare_layout.addRow("with", self.compare_combo)
        self.compare_button = QPushButton("Compare")
        self.compare_button.setToolTip("Run both networks on the current frame and show where their masks differ")
        compare_layout.addRow(self.compare_button)
        self.compare_label = text_label()
        compare_layout.addRow(self.compare_label)
        root.addWidget(compare)
        root.addStretch(1)

        self.task_combo.currentTextChanged.connect(self._on_task_changed)
        self.model_combo.currentTextChanged.connect(self._on_model_changed)
        self.checkpoint_combo.currentIndexChanged.connect(self._update_card)
        self.threshold_slider.valueChanged.connect(lambda v: self.threshold_spin.setValue(v / 100.0))
        self.threshold_spin.valueChanged.connect(self._on_threshold_changed)
        self.image_combo.currentTextChanged.connect(self._update_scope)
        self.scope_combo.currentTextChanged.connect(self._default_tta)
        self.image_combo.currentTextChanged.connect(self._follow_image_task)
        self.run_button.clicked.connect(self.run)
        self.cancel_button.clicked.connect(self.cancel)
        self.live_button.toggled.connect(self._on_live_toggled)
        self.tta_check.clicked.connect(self._on_tta_clicked)  # clicked: the user's, not setChecked's
        self.tta_check.toggled.connect(self._default_second_opinion)
        self.second_check.clicked.connect(self._on_second_clicked)
        for combo in (self.model_combo, self.checkpoint_combo, self.device_combo, self.engine_combo):
            combo.currentIndexChanged.connect(self._schedule_preload)
        self.threads_spin.valueChanged.connect(self._schedule_preload)
        self.compare_button.clicked.connect(self.compare)

    def _connect_viewer(self) -> None:
        events = self.viewer.layers.events
        events.removing.connect(self._before_layer_removed)  # before the guard: Live ends first
        guard_dimension_drop(self.viewer)
        events.inserted.connect(self._refresh_images)
        events.removed.connect(self._on_layer_removed)
        events.removed.connect(self._refresh_images)
        self.viewer.layers.selection.events.active.connect(self._follow_active_layer)

    def _before_layer_removed(self, event) -> None:
        """Live reads the video layer in a worker: it stops, and is waited for, before the layer goes."""
        index = getattr(event, "index", None)
        job = self._job or {}
        if not self._live_active or job.get("image_layer") is None or not isinstance(index, int):
            return
        leaving = self.viewer.layers[index]
        if not self._belongs_to_job(leaving.name, getattr(leaving, "metadata", {}), job["image_layer"]):
            return
        self.stop_live(wait_s=LIVE_STOP_WAIT_S)
        if leaving.name == job["image_layer"].name:  # the video goes: nothing of it is shown again
            self._live_hidden = []
            L.end_live_view(self.viewer, job["image_layer"], [], None)

    @staticmethod
    def _belongs_to_job(name: str, metadata, image_layer) -> bool:
        outputs = set(L.layer_names(image_layer.name).values())
        return name == image_layer.name or name in outputs or (metadata or {}).get("image_layer") == image_layer.name

    def _on_layer_removed(self, event) -> None:
        """A layer the running job reads or writes was deleted: cancel the run and drop its
        remaining results (they would be drawn into, or beside, a removed layer)."""
        image_layer = (self._job or {}).get("image_layer")
        if self._worker is None or image_layer is None or self._dropped or self._drawing:
            return  # (while drawing a result, removals are this run's own: another network's old maps)
        name = getattr(event, "value", None) and event.value.name
        outputs = set(L.layer_names(image_layer.name).values())
        if name == image_layer.name or name in outputs or (
                getattr(event.value, "metadata", {}).get("image_layer") == image_layer.name):
            self._dropped = f"{name} was closed during the run: the run was cancelled"
            self._cancel_requested = True
            self._live_stop.set()
            self._worker.quit()
            self.status_label.setText(self._dropped)

    # -- layer choice -----------------------------------------------------------------
    def _candidate_images(self) -> List:
        from napari.layers import Image

        return [layer for layer in self.viewer.layers
                if isinstance(layer, Image) and layer.metadata.get(L.ROLE) not in _OUTPUT_ROLES]

    def _refresh_images(self, *_):
        L.label_frame_axis(self.viewer)
        names = [layer.name for layer in self._candidate_images()]
        current = self.image_combo.currentText()
        self.image_combo.blockSignals(True)
        self.image_combo.clear()
        self.image_combo.addItems(names)
        if current in names:
            self.image_combo.setCurrentText(current)
        elif names:
            active = self.viewer.layers.selection.active
            self.image_combo.setCurrentText(active.name if active is not None and active.name in names else names[-1])
        self.image_combo.blockSignals(False)
        self._update_scope()
        if self.image_combo.currentText() != current:
            self._follow_image_task()

    def _follow_active_layer(self, event=None):
        active = self.viewer.layers.selection.active
        if active is not None and self.image_combo.findText(active.name) >= 0:
            self.image_combo.setCurrentText(active.name)

    def image_layer(self):
        name = self.image_combo.currentText()
        return self.viewer.layers[name] if name and name in self.viewer.layers else None

    def _on_task_changed(self, task: str) -> None:
        import models

        self.model_combo.setCurrentText(models.default_model(task))

    def _follow_image_task(self, *_):
        """An image that says what it shows (samples do) selects that task's network."""
        import models

        task = (getattr(self.image_layer(), "metadata", None) or {}).get("task")
        shows = {card_task: name for name, card_task in models.TASKS.items()}
        if task in shows and shows[task] != self.task_combo.currentText():
            self.task_combo.setCurrentText(shows[task])

    def _check_task(self, image_layer, model_name: str) -> None:
        """Warn when the image shows another task than the network's; an image that does not say
        (one opened from disk) is asked about once per folder, in a row of the dock."""
        task = known_task(image_layer.metadata)
        if task is None:
            self.task_question.ask(image_layer.name, image_layer.metadata)
            return
        image_layer.metadata["task"] = task  # the folder's answer, for this layer too
        mismatch = task_mismatch(image_layer, model_name)
        if mismatch:
            from napari.utils.notifications import show_warning

            show_warning(mismatch)

    def _on_task_answered(self, card_task: str) -> None:
        """The answer to this widget's own question (asked at Run): a network made for the other
        task has just run, or is running, on the image: the fitting one runs on it now, or when
        the run ends (an EAM-Net mask on a colonoscopy frame had been left as if it were done)."""
        if not self.follow_task(card_task):
            return
        if self.busy:
            self._run_again = True
            self.status_label.setText(f"{self.status_label.text()}; it runs when this run ends")
        elif self.mask_layer() is not None:
            self.run()

    def follow_task(self, card_task: str) -> bool:
        """The user said what the image shows: the task's network is selected when the chosen one
        is made for the other task. Returns whether the network changed."""
        import models

        shows = {task: name for name, task in models.TASKS.items()}
        chosen = self.model_combo.currentText()
        if models.base_card(chosen).task == card_task:
            self.status_label.setText(f"{shows[card_task]}: {chosen} fits")
            return False
        self.task_combo.blockSignals(True)
        self.task_combo.setCurrentText(shows[card_task])
        self.task_combo.blockSignals(False)
        self.model_combo.setCurrentText(models.default_model(card_task))
        self.status_label.setText(f"{shows[card_task]}: {chosen} is made for {shows.get(models.base_card(chosen).task)} "
                                  f"images, {self.model_combo.currentText()} is selected now")
        return True

    def _update_scope(self, *_):
        layer = self.image_layer()
        has_frames = False
        if layer is not None:
            try:
                has_frames = L.frame_count(layer) is not None
            except ValueError:
                has_frames = False
        self.scope_combo.setEnabled(has_frames)
        self.live_button.setEnabled(has_frames or self.live_button.isChecked())
        self._default_tta()

    # -- model / checkpoint -------------------------------------------------------------
    def _on_model_changed(self, *_):
        self.checkpoint_combo.fill(self.model_combo.currentText())
        self._update_card()

    def _on_tta_clicked(self, *_):
        self._tta_set_by_user = True

    def _on_second_clicked(self, *_):
        self._second_set_by_user = True

    def add_checkpoint_path(self, path) -> None:
        """Add a checkpoint file to the list and select it (what "browse..." does)."""
        self.checkpoint_combo.add_path(path)
        self._update_card()

    def refresh_checkpoints(self) -> None:
        """Re-read the checkpoint list (e.g. after fine-tuning wrote one). The default
        entry stays selected (it may now be a new file); another choice is kept."""
        was_default = self.checkpoint_combo.currentIndex() == 0 and (
            self.checkpoint_combo.currentText().endswith("(default)") or self.checkpoint_combo.currentData() is False)
        chosen = self.checkpoint()
        self._on_model_changed()
        if was_default:
            return
        if not chosen:
            self.checkpoint_combo.setCurrentText(RANDOM_WEIGHTS)
            return
        index = self.checkpoint_combo.findData(chosen)
        if index >= 0:
            self.checkpoint_combo.setCurrentIndex(index)
        else:
            self.add_checkpoint_path(chosen)

    def checkpoint(self):
        """The selected checkpoint: a path string, or False for random weights."""
        return self.checkpoint_combo.selected() or False

    def _update_card(self, *_):
        import models
        from models import base_card, card_with_checkpoint
        from models.checkpoint import CheckpointError, peek_header

        name = self.model_combo.currentText()
        if not name:
            self.card_label.setText("no network is registered")
            self.warning_label.setVisible(False)
            return
        checkpoint = self.checkpoint()
        card = base_card(name)
        if checkpoint:
            try:
                header = peek_header(checkpoint)
                if header.get("architecture") != name:  # its figures are another network's
                    raise CheckpointError(f"{Path(checkpoint).name} holds a '{header.get('architecture')}' "
                                          f"checkpoint, not '{name}'")
                card = card_with_checkpoint(card, checkpoint, header)
            except (CheckpointError, OSError) as err:
                self.card_label.setText(f"{base_card(name).summary()}\ncheckpoint problem: {err}")
                self.warning_label.setVisible(True)
                return
        elif checkpoint is None:
            card = models.get_card(name)
        self.card_label.setText(card.summary())
        self.card_label.setToolTip(card.notes)
        self._card = card
        self._default_tta()
        self.warning_label.setVisible(not card.trained)

    def _default_tta(self, *_) -> None:
        """Until the user sets it: on for a network whose three views fit the time budget, and
        off for a whole video (3× the time over hundreds of frames)."""
        card = getattr(self, "_card", None)
        if self._tta_set_by_user or card is None:
            return
        whole_video = self.scope_combo.isEnabled() and self.scope_combo.currentText() == "all frames"
        self.tta_check.setChecked(tta_fits(card) and not whole_video)
        self._default_second_opinion()

    def second_opinion(self) -> str:
        """The network that checks the chosen one's masks, "" when none does or the box is off."""
        return self._second_network if self.second_check.isEnabled() and self.second_check.isChecked() else ""

    def _default_second_opinion(self, *_) -> None:
        """Offered where the task has a checking network (``models.second_opinion_for``); until the
        user sets it, on for the network's own default checkpoint where ``second_opinion.default_check``
        says so (both fit the time budget; measured with the shipped pair), off for other weights (random,
        or a clinic's own fine-tune, which the check was not measured on) and for a whole video."""
        import models

        card = getattr(self, "_card", None)
        self._second_network = (models.second_opinion_for(card.name) or "") if card is not None else ""
        self.second_check.setEnabled(bool(self._second_network))
        self.second_check.setText(f"second opinion: {self._second_network}" if self._second_network
                                  else "no second opinion here")
        if self._second_set_by_user or not self._second_network:
            return
        from ..inference.second_opinion import default_check

        whole_video = self.scope_combo.isEnabled() and self.scope_combo.currentText() == "all frames"
        shipped = models.default_checkpoint(card.name)
        own_default = shipped is not None and self.checkpoint() == str(shipped)
        self.second_check.setChecked(own_default and not whole_video
                                     and bool(default_check(card, self.tta_check.isChecked())))

    # -- predictors -------------------------------------------------------------------
    def engine_options(self) -> dict:
        """The engine settings, read on the main thread and handed to workers."""
        return {"engine": self.engine_combo.currentText(), "threads": int(self.threads_spin.value())}

    def predictor(self, model_name: str, checkpoint, device: str, engine: Optional[str] = None,
                  threads: Optional[int] = None, tta: bool = False, second_opinion: str = ""):
        """The cached predictor for (model, checkpoint, device, TTA, engine, threads), built on first
        use, checked by the ``second_opinion`` network (its default checkpoint) where one is named.
        Without ``engine`` and ``threads``: the widget's settings (on the main thread only; workers
        get them in their job)."""
        if engine is None and threads is None:
            engine, threads = self.engine_options().values()
        predictor = self._predictors.get(self.predictor_factory, model_name, checkpoint, device, tta=tta,
                                         engine=engine, threads=threads)
        if not second_opinion:
            return predictor
        from models.checkpoint import default_checkpoint

        from ..inference.second_opinion import SecondOpinion

        try:
            second = self._predictors.get(self.predictor_factory, second_opinion,
                                          str(default_checkpoint(second_opinion)), device, engine=engine, threads=threads)
        except Exception as err:  # noqa: BLE001 -- said in words: the chosen network itself is fine
            raise UserError(f"the second opinion's network {second_opinion} could not be loaded ({error_text(err)}); "
                            f"untick the check to run {model_name} alone") from None
        return SecondOpinion(predictor, second)

    def _schedule_preload(self, *_):
        # Coalesce the several signals one user action sends (model -> checkpoint list -> ...).
        if self.preload_on_change and not self._preload_pending:
            self._preload_pending = True
            QTimer.singleShot(0, self.preload)

    def preload(self) -> Optional[threading.Thread]:
        """Build the chosen network and run it once, in a background thread (keeps Run fast).
        Errors are left for Run to report. Returns the thread (None when nothing is chosen)."""
        self._preload_pending = False
        model_name, checkpoint = self.model_combo.currentText(), self.checkpoint()
        if not model_name or checkpoint is None:
            return None
        args = (model_name, checkpoint, self.device_combo.currentText())
        options = {**self.engine_options(), "tta": self.tta_check.isChecked(),  # the predictor Run will ask for
                   "second_opinion": self.second_opinion()}

        def build_and_warm():
            try:
                predictor = self.predictor(*args, **options)
                if hasattr(predictor, "warm_up"):
                    predictor.warm_up()
            except Exception:  # noqa: BLE001 -- Run builds it again and shows the error
                pass

        thread = threading.Thread(target=build_and_warm, name="napari-polyp-preload", daemon=True)
        thread.start()
        return thread

    # -- run -----------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        return self._worker is not None

    def threshold(self) -> float:
        return float(self.threshold_spin.value())

    def frames_to_run(self, image_layer) -> List[Optional[int]]:
        n = L.frame_count(image_layer)
        if n is None:
            return [None]
        if self.scope_combo.currentText() == "all frames":
            return list(range(n))
        return [L.current_frame(self.viewer, image_layer)]

    def run(self) -> None:
        """Run the chosen network on the chosen image (the Run button)."""
        if self.busy:
            return
        image_layer = self.image_layer()
        model_name = self.model_combo.currentText()
        if image_layer is None or not model_name:
            self._report_error("open an image first (File > Open, or File > Open Sample > napari-polyp)"
                               if image_layer is None else "no network is registered")
            return
        try:
            frames = self.frames_to_run(image_layer)
        except ValueError as err:
            self._report_error(str(err))
            return
        job = dict(image_layer=image_layer, frames=frames, model=model_name, checkpoint=self.checkpoint(),
                   device=self.device_combo.currentText(), tta=self.tta_check.isChecked(),
                   second_opinion=self.second_opinion(), **self.engine_options())
        self._check_task(image_layer, model_name)
        self._run_decision = None
        work = jobs.predict_frames(self._loader(job), jobs.frame_reader(image_layer.data), frames, self._choice(job),
                                   source=image_layer.metadata.get("source_path") or "", device=job["device"],
                                   name=image_layer.name)
        self._start(work, job, total=len(frames), on_result=self._show_prediction,
                    status=f"running {model_name} on {len(frames)} frame(s)…" if frames != [None]
                    else f"running {model_name}…")

    def compare(self) -> None:
        """Run the chosen network and the Compare network on the current frame; add a disagreement layer."""
        if self.busy:
            return
        image_layer = self.image_layer()
        if image_layer is None:
            self._report_error("open an image first")
            return
        model_a, model_b = self.model_combo.currentText(), self.compare_combo.currentText()
        from models.checkpoint import default_checkpoint

        default_b = default_checkpoint(model_b)
        if model_a == model_b and str(self.checkpoint()) == str(default_b):
            self._report_error(f"{model_a} with its own checkpoint: choose another network (or checkpoint) to "
                               "compare with")
            return
        job = dict(image_layer=image_layer, frame=L.current_frame(self.viewer, image_layer),
                   device=self.device_combo.currentText(), tta=self.tta_check.isChecked(), **self.engine_options())
        loaders = [(self._choice(job, name, checkpoint), self._loader(job, name, checkpoint))
                   for name, checkpoint in ((model_a, self.checkpoint()), (model_b, str(default_b) if default_b else False))]
        work = jobs.compare_frame(loaders, L.image_frame(image_layer, job["frame"]), device=job["device"])
        self._start(work, job, total=2, on_finished=self._show_comparison,
                    status=f"comparing {model_a} with {model_b}…")

    def cancel(self) -> None:
        """Stop the running job after the frame in progress (the Cancel button)."""
        if self._worker is not None:
            self._cancel_requested = True
            self._worker.quit()
            self.status_label.setText(f"cancelling after frame {self._frames_done + 1}…")

    def _start(self, work, job: dict, total: int, status: str, on_result: Optional[Callable] = None,
               on_finished: Optional[Callable] = None, finished: Optional[Callable] = None) -> None:
        """Run a job (a generator of :mod:`napari_polyp.jobs` events) in a worker: ``on_result``
        with each ``Result``'s value, ``on_finished`` with the ``Finished`` value, then
        ``finished`` (default :meth:`_on_finished`) when the worker ends, however it ends."""
        self._frames_done, self._frames_total = 0, total
        self._second_said = []
        self._cancel_requested = False
        self._job, self._dropped = job, ""
        self._handlers = {jobs.Result: on_result, jobs.Finished: on_finished}
        self.last_error = None
        self._run_started = time.perf_counter()
        self.last_latency_s = None
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(0)
        self.status_label.setText(status)
        self._worker = start_worker(work, on_yield=self._on_event, on_error=self._report_error,
                                    on_finished=finished or self._on_finished)
        self._set_running(True)

    def _show_progress(self, value: int) -> bool:
        """Move the progress bar, at most 4 times a second (and at the end): each move repaints
        the whole window, canvas included, at once. Returns whether it moved."""
        now = time.perf_counter()
        if value < self.progress.maximum() and now - self._progress_shown < PROGRESS_INTERVAL_S:
            return False
        self._progress_shown = now
        self.progress.setValue(value)
        return True

    def _set_running(self, running: bool) -> None:
        self.run_button.setEnabled(not running)
        self.compare_button.setEnabled(not running)
        self.cancel_button.setEnabled(running and not self.live_button.isChecked())

    # worker side (a thread): only network and file work, no layer changes
    def _loader(self, job: dict, model_name: Optional[str] = None, checkpoint=None) -> Callable:
        """Builds the job's network when called (in the worker: loading takes seconds)."""
        name = model_name or job["model"]
        weights = job["checkpoint"] if model_name is None else checkpoint
        second = job.get("second_opinion", "") if model_name is None else ""  # Compare: the networks as they are
        return lambda: self.predictor(name, weights, job["device"], engine=job.get("engine"),
                                      threads=job.get("threads"), tta=job.get("tta", False), second_opinion=second)

    @staticmethod
    def _choice(job: dict, model_name: Optional[str] = None, checkpoint=None) -> jobs.ModelChoice:
        weights = job["checkpoint"] if model_name is None else checkpoint
        second = job.get("second_opinion", "") if model_name is None else ""
        return jobs.ModelChoice.of(model_name or job["model"], weights, job.get("tta", False), second)

    # main-thread side
    def _on_event(self, event) -> None:
        if self._dropped:  # a layer of this run was deleted: nothing more is drawn
            return
        if isinstance(event, jobs.Failed):
            self._report_error(event.message)
        elif isinstance(event, jobs.Note):  # said once, in the status line; the run goes on
            self.status_label.setText(event.text)
        elif isinstance(event, jobs.Progress):
            self._frames_done = event.done
            self._show_progress(event.done)
        elif self._handlers.get(type(event)) is not None:
            self._draw(self._handlers[type(event)], event.value)

    def _draw(self, handler: Callable, value) -> None:
        self._drawing = True
        try:
            handler(self._job, value)
        except Exception as err:  # noqa: BLE001 -- e.g. the image layer was deleted mid-run
            self._report_error(f"could not show the result: {error_text(err)}")
            if self._worker is not None:
                self._worker.quit()
        finally:
            self._drawing = False

    def _show_prediction(self, job: dict, prediction: jobs.Predicted) -> None:
        image_layer = job["image_layer"]
        if image_layer not in self.viewer.layers:
            raise ValueError(f"the layer {image_layer.name!r} was closed")
        L.add_prediction_layers(self.viewer, image_layer, prediction.probability, prediction.attention,
                                prediction.provenance.metadata(), self.threshold(), frame=prediction.frame,
                                resolve_edits=self._resolve_for_run)
        self._hide_stale_comparison(image_layer, prediction.provenance.choice.network)
        if self.last_latency_s is None:
            self.last_latency_s = time.perf_counter() - self._run_started
        if prediction.provenance.second_opinion:
            self._second_said.append(prediction.provenance.second_opinion)
        self._frames_done += 1
        self._show_progress(self._frames_done)

    def _hide_stale_comparison(self, image_layer, network: str) -> None:
        """The disagreement layer of a Compare whose first network is not the one now run is hidden:
        its "only A / only B" no longer describe the mask on screen (it had stayed over it)."""
        name = L.layer_names(image_layer.name)["disagreement"]
        layer = self.viewer.layers[name] if name in self.viewer.layers else None
        if layer is not None and not str(layer.metadata.get("model_a", "")).split(" ")[0] == network:
            layer.visible = False

    def _show_comparison(self, job: dict, results) -> None:
        if job["image_layer"].name not in self.viewer.layers:
            raise ValueError(f"the layer {job['image_layer'].name!r} was closed")
        model_a, model_b = (r.provenance.choice.network for r in results)
        if model_a == model_b:  # one network, two checkpoints: the chosen one and the default
            model_a, model_b = f"{model_a} (chosen checkpoint)", f"{model_b} (default checkpoint)"
        layer = L.add_disagreement_layer(self.viewer, job["image_layer"], results[0].probability,
                                         results[1].probability, self.threshold(), model_a, model_b,
                                         frame=job["frame"])
        meta = layer.metadata
        untrained = [r.provenance.choice.network for r in results if not r.provenance.checkpoint_sha256]
        note = f" (untrained: {', '.join(untrained)})" if untrained else ""
        self.compare_label.setText(
            f"{model_a} vs {model_b}: Dice {meta['dice_a_vs_b']:.3f}, "
            f"{100 * meta['disagreement_fraction']:.1f}% of pixels differ "
            f"(label 1: only {model_a}, 2: only {model_b}){note}")

    def _on_finished(self) -> None:
        cancelled = self._cancel_requested
        if self._run_again and not cancelled:
            QTimer.singleShot(0, self.run)  # the network the task's answer chose, once this run has let go
        self._run_again = False
        self._worker = None
        self._job = None
        self._set_running(False)
        self.progress.setValue(self._frames_done)
        if self.last_error or self._dropped:
            return
        done, total = self._frames_done, self._frames_total
        mask = self.mask_layer()
        if mask is not None:  # the threshold may have moved during the run: bring all frames to it
            self._on_threshold_changed(self.threshold())
        if cancelled:
            self.status_label.setText(f"cancelled: {done} of {total} frame(s) done")
        elif self.last_latency_s is not None:
            self.status_label.setText(f"done: {done} frame(s); first mask after {self.last_latency_s:.2f} s"
                                      + self._second_opinion_summary())
        else:
            self.status_label.setText("done")

    def _second_opinion_summary(self) -> str:
        """What the checking network said of the last run: its words for one frame, a count for more."""
        said, self._second_said = self._second_said, []
        from ..inference.second_opinion import AGREES

        overruled = [text for text in said if not text.endswith(AGREES)]
        if len(said) == 1:
            return f"; {said[0]}"
        return f"; the second opinion overruled {len(overruled)} of {len(said)} masks" if said else ""

    def _report_error(self, message: str) -> None:
        show_error(self, message)

    # -- threshold ---------------------------------------------------------------------
    def mask_layer(self):
        image_layer = self.image_layer()
        if image_layer is None:
            return None
        name = L.layer_names(image_layer.name)["mask"]
        layer = self.viewer.layers[name] if name in self.viewer.layers else None
        return layer if layer is not None and L.prediction_state(layer) is not None else None

    def _on_threshold_changed(self, value: float) -> None:
        self.threshold_slider.blockSignals(True)
        self.threshold_slider.setValue(int(round(value * 100)))
        self.threshold_slider.blockSignals(False)
        labels = self.mask_layer()
        outcome = ""
        if labels is not None and not self.busy:
            outcome = self._rethreshold(labels, value)
        self.threshold_applied.emit(float(value), outcome)

    def _rethreshold(self, labels, value: float) -> str:
        try:
            outcome = L.rethreshold(labels, value, resolve_edits=self.ask_edits)
        except Exception as err:  # noqa: BLE001
            self._report_error(f"re-threshold failed: {error_text(err)}")
            return ""
        if outcome == "cancelled":  # put the control back to the mask's threshold
            self.set_threshold(L.prediction_state(labels).threshold)
            self.status_label.setText("threshold unchanged: your edits were kept as they are")
        elif outcome == "kept-edits":
            self.status_label.setText(f"mask re-derived at {value:.2f}; your edited pixels were kept")
        elif outcome == "updated":
            self.status_label.setText(f"mask re-derived at {value:.2f} (no network run)")
        return outcome

    def set_threshold(self, value: float) -> None:
        """Set the controls without re-deriving anything."""
        for widget in (self.threshold_spin, self.threshold_slider):
            widget.blockSignals(True)
        self.threshold_spin.setValue(value)
        self.threshold_slider.setValue(int(round(value * 100)))
        for widget in (self.threshold_spin, self.threshold_slider):
            widget.blockSignals(False)

    # -- edits --------------------------------------------------------------------------
    def _resolve_for_run(self, found) -> str:
        # A multi-frame run asks once and applies the answer to the rest of the run.
        if self._run_decision is None:
            self._run_decision = self.ask_edits(found)
        return self._run_decision

    def _ask_edits_dialog(self, found) -> str:
        box = QMessageBox(self)
        box.setIcon(QMessageBox.Question)
        box.setWindowTitle("Manual edits")
        box.setText(found.message())
        box.setInformativeText("Keep your edited pixels and update the rest, discard your edits, or cancel?")
        keep = box.addButton("Keep my edits", QMessageBox.AcceptRole)
        discard = box.addButton("Discard edits", QMessageBox.DestructiveRole)
        box.addButton(QMessageBox.Cancel)
        box.setDefaultButton(keep)
        box.exec_()
        clicked = box.clickedButton()
        if clicked is keep:
            return L.KEEP
        if clicked is discard:
            return L.DISCARD
        return L.CANCEL

    def closeEvent(self, event):  # noqa: N802 (Qt)
        self._live_stop.set()
        self.cancel()
        super().closeEvent(event)


def _engine_controls():
    """The engine choice (auto: ONNX Runtime on the CPU) and the CPU threads (default: physical cores)."""
    import os

    from ..inference.engine import ENGINES, default_engine, physical_cores

    engine = QComboBox()
    engine.addItems(ENGINES)
    engine.setCurrentText(default_engine())
    engine.setToolTip("What runs the network: auto = ONNX Runtime on the CPU (exported once, then cached), "
                      "PyTorch on a GPU")
    threads = QSpinBox()
    threads.setRange(1, max(1, os.cpu_count() or 1))
    threads.setValue(physical_cores())
    threads.setToolTip("CPU threads for the network (default: the physical cores)")
    return engine, threads


