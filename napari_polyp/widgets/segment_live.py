"""The Segment widget's Live: play a video with the network's mask of each frame.

A mixin of :class:`.segment.SegmentWidget`, thin over :mod:`napari_polyp.inference.live`
(the playback clock, the masks carried by flow to the frames the network has no time for);
the frames are read in a worker, and a layer's removal waits for it to stop.
"""
from __future__ import annotations

import threading

from .. import jobs, layers as L
from ._common import error_text

LIVE_STOP_WAIT_S = 5.0  # the longest a layer's removal waits for Live's worker (one frame: ~10-500 ms)


class SegmentLive:
    """Live in the Segment widget (a mixin of ``SegmentWidget``)."""

    def _init_live(self) -> None:
        self._live_shown = threading.Event()  # set when the last live frame is on screen
        self._live_stop = threading.Event()
        self._live_done = threading.Event()  # set when the live worker has stopped reading frames
        self._live_done.set()
        self._live_active = False
        self.live_carry = True  # Live carries the network's mask by flow to the frames it has no time for
        self.live_stats = None  # the last napari_polyp.inference.live.LiveFrame shown
        self._live_hidden = []  # layers Live hides while it plays (see layers.start_live_view)

    def _on_live_toggled(self, checked: bool) -> None:
        if checked:
            self.start_live()
        else:
            self.stop_live()

    def start_live(self) -> None:
        """Play the chosen video with the network's mask of each frame (the Live button)."""
        image_layer = self.image_layer()
        frames = L.frame_count(image_layer) if image_layer is not None else None
        if self.busy or frames is None:
            self.live_button.setChecked(False)
            if frames is None:
                self._report_error("Live plays a video or a stack of frames: open one first")
            return
        import models

        from ..inference.live import network_threads

        network, checkpoint, instead = self._live_network()
        job = dict(image_layer=image_layer, model=network, checkpoint=checkpoint,
                   device=self.device_combo.currentText(), threshold=self.threshold(),
                   fps=image_layer.metadata.get("fps") or 25.0, frames=frames,
                   first=0, carry=self.live_carry, **self.engine_options())  # from the start, wherever the slider was
        job["threads"] = network_threads(job["threads"])
        # the status line names the network that plays, and the chosen one it stands in for
        job["live_label"] = (models.get_card(network).display_name or network) + (f" in place of {instead}"
                                                                                   if instead else "")
        self._live_stop.clear()
        self._live_done.clear()
        self._live_shown.set()
        self.live_stats = None
        self._live_hidden = L.start_live_view(self.viewer, image_layer)  # made now, not mid-playback
        self._start(self._live_frames(job), job, total=frames, on_result=self._show_live_frame,
                    status=f"live ({job['live_label']}) on {image_layer.name} at {job['fps']:.3g} fps…",
                    finished=self._on_live_finished)
        self._live_active = True

    def _live_network(self):
        """(network, checkpoint, the chosen one and why it does not play, or ""): the chosen network
        when it keeps up with a video in Live (``models.keeps_up_live``), else the task's Live
        network (``models.live_model``) at its default checkpoint."""
        import models

        chosen = self.model_combo.currentText()
        card = models.get_card(chosen)
        if models.keeps_up_live(card):
            return chosen, self.checkpoint(), ""
        network = models.live_model(card.task)
        return network, None, (f"{card.display_name or chosen}, too slow: {card.cpu_ms:.0f} ms a frame, "
                               f"Live needs {models.MAX_LIVE_CPU_MS:.0f} at most")

    def stop_live(self, wait_s: float = 0.0) -> bool:
        """Stop playing (the Live button, unchecked); the frame on screen and its mask stay.
        ``wait_s``: wait that long for the worker to stop reading frames (before its layer is
        removed). Returns whether it has stopped."""
        if self._live_active:
            # The stop event only, not worker.quit(): quitting would leave the generator suspended
            # (never finished), while the event lets it return and say so (_live_done).
            self._live_stop.set()
        return self._live_done.wait(wait_s) if wait_s else self._live_done.is_set()

    def _live_frames(self, job: dict):  # worker thread
        try:
            yield from self._live_frames_until_stopped(job)
        finally:
            self._live_done.set()

    def _live_frames_until_stopped(self, job: dict):
        from ..inference.live import PlaybackClock, live_masks

        try:
            predictor = self._loader({**job, "tta": False})()  # live is about speed
        except Exception as err:  # noqa: BLE001
            yield jobs.Failed(f"cannot load {job['model']}: {error_text(err)}")
            return
        clock = PlaybackClock(job["fps"], job["first"], job["frames"])
        try:
            for shown in live_masks(predictor, job["image_layer"].data, clock, job["threshold"],
                                    self._live_shown, self._live_stop, carry=job["carry"]):
                yield jobs.Result(shown)
        except Exception as err:  # noqa: BLE001
            yield jobs.Failed(f"live: {job['model']} failed on {job['image_layer'].name}: {error_text(err)}")

    def _show_live_frame(self, job: dict, shown) -> None:
        image_layer = job["image_layer"]
        if image_layer not in self.viewer.layers:
            raise ValueError(f"the layer {image_layer.name!r} was closed")
        try:
            L.show_live_frame(self.viewer, image_layer, shown.frame, shown.picture)
        finally:
            self._live_shown.set()
        self.live_stats = shown
        if self._show_progress(shown.frame + 1):
            self.status_label.setText(f"live ({job['live_label']}): frame {shown.frame + 1}/{job['frames']}, "
                                      f"{shown.fps:.1f} fps segmented ({shown.carried} by flow), "
                                      f"{shown.dropped} skipped")

    def _on_live_finished(self) -> None:
        job, stats = self._job, self.live_stats
        if job is not None:
            L.end_live_view(self.viewer, job["image_layer"], self._live_hidden,
                            stats.mask if stats is not None else None)
        self._live_hidden = []
        self._worker = None
        self._job = None
        self._live_active = False
        self._live_stop.set()
        self._set_running(False)
        self.live_button.blockSignals(True)
        self.live_button.setChecked(False)
        self.live_button.blockSignals(False)
        self._update_scope()
        if self._dropped:
            self.status_label.setText(self._dropped)
        elif job is not None and stats is not None and not self.last_error:
            self.status_label.setText(f"live stopped ({job['live_label']}): {stats.shown} frame(s) segmented at "
                                      f"{stats.fps:.1f} fps ({stats.carried} carried by flow), {stats.dropped} skipped")
