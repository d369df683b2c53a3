"""The Review widget's network side: which network, checkpoint, TTA and threshold the
predictions are made with, the prediction of the open item and Run on all.

A mixin of :class:`.review.ReviewWidget`. The work itself is :mod:`napari_polyp.jobs`
(generators over arrays, started by :func:`._common.start_worker`); which predictions are
current is :class:`napari_polyp.corrections.review.ReviewSession`'s to say.
"""
from __future__ import annotations

import numpy as np
from qtpy.QtCore import QTimer

from .. import jobs, layers as L
from ._common import RANDOM_WEIGHTS, error_text, known_task, start_worker
from .review_layers import IMAGE_LAYER


class ReviewPredictions:
    """The network choice and the prediction jobs of the Review widget (a mixin of ``ReviewWidget``)."""

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

    def second_opinion(self) -> str:
        """The network that checks the masks: the Model tab's choice in the workspace; none standalone."""
        return self.model_source.second_opinion() if self.model_source is not None else ""

    def threshold(self) -> float:
        return self.model_source.threshold() if self.model_source is not None else float(self.threshold_spin.value())

    def choice(self):
        """The network, checkpoint, TTA and second opinion predictions are made with now."""
        return jobs.ModelChoice.of(self.model_name(), self.checkpoint(), self.tta(), self.second_opinion())

    def predictor(self, model_name: str, checkpoint, device: str = "auto", tta: bool = False,
                  second_opinion: str = ""):
        if self.model_source is not None:  # one cache (and engine settings) for the whole workspace
            return self.model_source.predictor(model_name, checkpoint, self.model_source.device_combo.currentText(),
                                               tta=tta, second_opinion=second_opinion)
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
                                               second_opinion=job["choice"].second_opinion, **job["options"])
        return self._predictors.get(self.predictor_factory, job["model"], job["checkpoint"], job["device"], tta=tta)

    def _on_choice_changed(self, *_) -> None:
        """The network, checkpoint, TTA or second opinion changed (one user action sends several signals: handled once)."""
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

    def _on_threshold_applied(self, value: float, outcome: str) -> None:
        """The Model tab's threshold, once Segment has applied it to its mask (``outcome``)."""
        if outcome == "cancelled":  # the edits were kept, the control went back: nothing changes here
            self.status_label.setText("threshold unchanged: the edits on the mask were kept as they are")
            return
        self._on_threshold_changed(value, outcome)

    def _on_threshold_changed(self, value: float, segment_outcome: str = "") -> None:
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
        outcome = segment_outcome or "updated"
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
            self.model_source.follow_task(card_task)
        elif models.base_card(self.model_combo.currentText()).task != card_task:
            self.model_combo.setCurrentText(models.default_model(card_task))

    def _predict(self, index: int, image: np.ndarray) -> None:
        self._check_task(index)
        if self._look_ahead is not None and self._look_ahead_index == index:  # on it already: wait for it
            self._awaiting = {"token": self._token, "index": index}
            self._running_text = f"running {self.choice().label()} on {self.session.items[index].name}…"
            self.status_label.setText(self._running_text)
            self._update_enabled()
            return
        job = {"token": self._token, "index": index, "image": image, "session": self.session,
               **self._predictor_args()}
        self._running_text = f"running {job['choice'].label()} on {self.session.items[index].name}…"
        self.status_label.setText(self._running_text)
        item = self.session.items[index]
        work = jobs.predict_frames(lambda: self._build_predictor(job), lambda _frame: image, [None], job["choice"],
                                   source=item.source_path, device=job["device"], name=item.name)
        self._predicting = job  # bound methods below: Qt drops them with the widget, lambdas it would call
        self._worker = start_worker(_with_job(job, work), on_yield=self._on_predict_event,
                                    on_error=lambda text: self._report_error(f"{job['model']} failed: {text}"),
                                    on_finished=self._on_worker_finished)
        self._runs_in_flight += 1
        self._update_enabled()

    def _on_predict_event(self, job_and_event) -> None:
        job, event = job_and_event
        if job is not self._predicting:
            # a run left behind (another folder, network or item) answers late: dropped, not kept for
            # its item, where it would push the open item's prediction out of those kept whole
            return
        if isinstance(event, jobs.Failed):
            self._report_error(event.message)
        elif isinstance(event, jobs.Note):
            self.status_label.setText(event.text)
        elif isinstance(event, jobs.Result):
            self._on_predicted(job, event.value)

    def _on_worker_finished(self) -> None:
        # counted, not asked of the worker: one just started is not "running" until its thread
        # picks it up, and a run left behind that ended then had cleared the new one's state
        self._runs_in_flight -= 1
        if self._runs_in_flight > 0:
            return  # a run left behind has ended; the one started since goes on
        self._worker = None
        if self.status_label.text() == self._running_text:  # ended without a result to show (e.g. image closed)
            self.status_label.setText("the network's result was not shown: the item or its image changed meanwhile")
        self._running_text = ""
        self._update_enabled()
        if self._reopen_when_idle:
            self._reopen_when_idle = False
            self._follow_choice()

    def _on_predicted(self, job: dict, kept: jobs.Predicted) -> None:
        if self.session is None or job["session"] is not self.session:
            return  # a prediction of a folder left: none of this folder's items
        fresh = self.session.remember(job["index"], kept)  # refused when the network changed meanwhile
        self._update_row(job["index"])
        if job["token"] != self._token or self.image_layer() is None:
            return  # the user moved on (or closed the image) while the network ran
        if not fresh:
            self._reopen_when_idle = True
            return
        self._show_prediction(job["index"], kept, self.image_layer())
        self._show_item_state()
        self.look_ahead()

    def look_ahead(self) -> None:
        """Predict the item Next would open, in the background, while this one is looked at and
        corrected: the network's 0.4 s (EA-DK with TTA, checked by DINO-keys) is then spent before
        the annotator gets there, not after (``benchmarks/long_session.py``). Only with "predict"
        on, one item ahead, never beside Run on all; what it finds is kept like any prediction."""
        if self.session is None or self._batch is not None or self._look_ahead is not None \
                or not self.auto_check.isChecked() or self.image_layer() is None:
            return
        index = self._neighbour(+1)
        if index is None or not self.session.to_predict([index]):
            return
        job, session = self._predictor_args(), self.session
        work = jobs.predict_items(lambda: self._build_predictor(job), session.image, [index], job["choice"],
                                  source_of=lambda i: session.items[i].source_path)
        self._look_ahead_index = index
        self._look_ahead = start_worker(work, on_yield=self._on_look_ahead_event,
                                        on_finished=self._on_look_ahead_finished)

    def _on_look_ahead_event(self, event) -> None:
        if self.session is None or not isinstance(event, jobs.Result):
            return  # a Note or Failed (an unreadable file, a network that will not load) is said when opened
        index, kept = event.value
        fresh = self.session.remember(index, kept)  # refused when the network changed meanwhile
        self._update_row(index)
        waiting, self._awaiting = self._awaiting, None
        if waiting is not None and waiting["index"] == index and waiting["token"] == self._token \
                and fresh and self.image_layer() is not None:  # the open item was waiting for this
            self._running_text = ""
            self._show_prediction(index, kept, self.image_layer())
            self._show_item_state()
            self._update_enabled()
        elif waiting is not None:
            self._awaiting = waiting  # not this one's answer: the finish runs the network for it

    def _on_look_ahead_finished(self) -> None:
        index, self._look_ahead, self._look_ahead_index = self._look_ahead_index, None, None
        waiting, self._awaiting = self._awaiting, None
        if self.session is None or self.image_layer() is None:
            return  # the review's image is gone (the viewer closed, say): nothing to open or look ahead for
        if index is not None and not self.session.is_readable(index):
            self._update_row(index)  # the look-ahead found its file unreadable: marked ⚠ now, said when passed
            self._update_progress()
        if waiting is not None and waiting["token"] == self._token:
            self.open_item(waiting["index"], confirm=False)  # no answer came for it: the network runs now
        elif index is not None and self.session.was_predicted(index) and self.current is not None \
                and not self.busy:
            self.look_ahead()  # the item opened meanwhile may want its own next one (not after a failure)

    def run_on_all(self) -> None:
        """Predict every unreviewed item not predicted with the chosen network yet, in the
        background (progress, Cancel)."""
        if self.session is None or self._batch is not None:
            return
        self._apply_choice()
        # the item the look-ahead is on comes from it (kept like these), not twice
        todo = [i for i in self.session.to_predict(self.order()) if i != self._look_ahead_index]
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


def _with_job(job: dict, events):
    """A prediction job's events, each as (job, event): two runs can be in flight (the network
    changed, then the folder, while the first still ran), and a late answer must not be taken for
    the job started since (it was shown on the next folder's image); it is dropped."""
    for event in events:
        yield job, event
