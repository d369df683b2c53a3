"""The Review widget on a video: Propagate ◀ / ▶ from the open key frame, Accept range.

A mixin of :class:`.review.ReviewWidget`, thin over
:class:`napari_polyp.corrections.video_review.VideoReview` (keys, propagation, accepting a
range); the propagation runs as a job (:mod:`napari_polyp.jobs`) with progress and Cancel.
The row shows only while the source is a video.
"""
from __future__ import annotations

from typing import Optional

from qtpy.QtWidgets import QHBoxLayout, QPushButton, QSpinBox, QWidget

from .. import jobs
from ..errors import UserError
from ..corrections.video_review import PROPAGATE_FRAMES
from ._common import start_worker


class ReviewVideo:
    """Keys and propagation in the Review widget (a mixin of ``ReviewWidget``)."""

    def _build_video_row(self) -> QWidget:
        row = QWidget()
        layout = QHBoxLayout(row)
        layout.setContentsMargins(0, 0, 0, 0)
        self.propagate_back_button = QPushButton("◀")
        self.propagate_back_button.setToolTip("Propagate backward: carry this key frame's mask to the frames before "
                                              "it (to the previous key, or the number of frames set)")
        self.propagate_back_button.clicked.connect(lambda: self.propagate(-1))
        self.propagate_button = QPushButton("Propagate ▶")
        self.propagate_button.setToolTip("Carry this key frame's mask to the frames after it (to the next key, "
                                         "or the number of frames set). A frame you save is a key.")
        self.propagate_button.clicked.connect(lambda: self.propagate(+1))
        self.span_spin = QSpinBox()
        self.span_spin.setRange(1, 10_000)
        self.span_spin.setValue(PROPAGATE_FRAMES)
        self.span_spin.setToolTip("Frames one Propagate fills at most")
        self.accept_range_button = QPushButton("Accept range")
        self.accept_range_button.setToolTip("Save the frames carried next to this key, on both sides up to the next "
                                            "key or a doubtful frame (↝?), as accepted (recorded as propagated)")
        self.accept_range_button.clicked.connect(self.accept_range)
        for widget in (self.propagate_back_button, self.propagate_button, self.span_spin, self.accept_range_button):
            layout.addWidget(widget)
        row.setVisible(False)
        self._propagation = None  # the running propagation's worker
        self._propagation_said = False  # whether it ended with its Finished (else it was cancelled or failed)
        return row

    def _start_video_review(self) -> None:
        """A video's session gets keys and propagation; a folder's does not (the row hides)."""
        from ..corrections.video_review import VideoReview

        video = self.session is not None and self.session.video is not None and len(self.session) > 0 \
            and self.session.items[0].frame is not None
        self.video_review = VideoReview(self.session, self.propagate_fn) if video else None
        self.video_row.setVisible(bool(video))

    def _row_of(self, index: int) -> dict:
        """The table row; on a video, its status says key / propagated from k / accepted (from k)."""
        row = self.session.table_row(index)
        if self.video_review is not None and row["status"] != "unreadable":
            row["status"] = self.video_review.state(index)
            doubt = self.video_review.doubt(index)
            if doubt is not None:  # a carried mask on offer: its doubt, not the network's uncertainty
                row["network"], row["uncertainty"] = "carried", doubt
        return row

    def propagate(self, step: int) -> bool:
        """Propagate from the open frame (a key) forward (+1) or backward (-1), in the background."""
        video, index = self.video_review, self.current
        if video is None or index is None or self._propagation is not None or self.busy:
            return False
        key = video.key_for(index, step)  # the open frame, or the key behind it (or, else, beyond it)
        if key is None:
            self._report_error(f"frame {index} is not a key and the video has none yet: save a frame that shows "
                               "the lesion (A or C), then propagate from it")
            return False
        try:
            work = video.propagate(key, step, self.span_spin.value())
        except UserError as err:  # (an empty key): said once, here, before any job starts
            self._report_error(str(err))
            return False
        span = video.span(key, step, self.span_spin.value())
        self.batch_progress.setRange(0, max(len(span), 1))
        self.batch_progress.setValue(0)
        self.status_label.setText(f"propagating from key frame {key} "
                                  f"{'forward' if step > 0 else 'backward'} over {len(span)} frame(s)…")
        self._propagation_said = False
        self._propagation = start_worker(work, on_yield=self._on_propagation_event,
                                         on_error=self._report_error, on_finished=self._on_propagation_finished)
        self._update_enabled()
        return True

    def _on_propagation_event(self, event) -> None:
        if isinstance(event, jobs.Progress):
            self.batch_progress.setValue(event.done)
        elif isinstance(event, jobs.Note):
            self.status_label.setText(event.text)
        elif isinstance(event, jobs.Failed):
            self._report_error(f"propagate: {event.message}")
        elif isinstance(event, jobs.Finished) and self.session is not None:
            self._propagation_said = True
            filled = event.value or []
            self._refresh_list()  # re-sorted: "most uncertain first" puts the new doubtful frames on top
            if self.current in filled and not self.is_dirty():
                self.open_item(self.current, confirm=False)  # the open frame shows its carried mask now
            self.status_label.setText(self._propagation_summary(filled))
            self.status_label.setToolTip("\n".join(self.video_review.stops))  # the whole of why, each step

    def _propagation_summary(self, filled) -> str:
        """One short line: frames filled, the doubtful ones, where each direction stopped."""
        video = self.video_review
        parts = [f"propagated to {len(filled)} frame(s)"]
        doubtful = [f for f in filled if video.is_unsure(f)]
        if doubtful:
            parts.append(f"↝? carried past a jump: frame{'s' if len(doubtful) > 1 else ''} {_runs(doubtful)}")
        parts += [f"{stop.direction} stopped at frame {stop.frame} ({stop.reason})" for stop in video.stopped]
        return "; ".join(parts) + (": check them (N), then Accept range" if filled else "")

    def _on_propagation_finished(self) -> None:
        if not self._propagation_said and self.status_label.text().startswith("propagating"):
            self.status_label.setText("propagation cancelled: no frame filled")  # nothing is kept half-done
        self._propagation = None
        self._update_enabled()

    def cancel_propagation(self) -> None:
        if self._propagation is not None:
            self._propagation.quit()

    def accept_range(self) -> int:
        """Save the carried frames next to the open key, on both sides up to the next key or the
        first doubtful frame, as accepted (on a carried frame: its stretch, from the keys on either
        side); returns how many."""
        video, index = self.video_review, self.current
        if video is None or index is None or self._propagation is not None:
            return 0
        if video.is_key(index):
            runs = [(index, +1), (index, -1)]
        else:
            runs = [(k, step) for k, step in ((video.key_behind(index, +1), +1), (video.key_behind(index, -1), -1))
                    if k is not None]
        records = []
        try:
            for key, step in runs:
                records += video.accept_range(key, step)
        except Exception as err:  # noqa: BLE001 -- the records saved so far stay; say why it stopped
            from ._common import error_text

            self._report_error(f"accept range stopped: {error_text(err)}")
        for record in records:
            self._update_row(int(record.extra["frame"]))
        self._update_progress()
        keys = ", ".join(str(k) for k in sorted({k for k, _ in runs})) or str(index)
        unsure = sorted({f for f in (video.first_unsure(k, step) for k, step in runs) if f is not None})
        parts = [f"accepted {len(records)} carried frame(s) next to key frame {keys}"] if records else []
        parts += [f"frame {f} was carried past a jump of the view: look at it, then Accept or fix it on its own"
                  for f in unsure]
        if any(int(r.extra["frame"]) == index for r in records):
            self.open_item(index, confirm=False)  # the open frame is saved now: show it as saved
        self.status_label.setText("; ".join(parts) or f"no carried frames next to key frame {keys}: Propagate first")
        return len(records)

    def propagated_prediction(self, index: int) -> Optional[jobs.Predicted]:
        """The open frame's carried mask, when a Propagate filled it (shown instead of the network's)."""
        return self.video_review.propagated(index) if self.video_review is not None else None


def _runs(frames) -> str:
    """Frame numbers as runs: [4, 5, 6, 9] -> "4–6, 9"."""
    runs, start = [], None
    for i, frame in enumerate(frames):
        start = frame if start is None else start
        if i + 1 == len(frames) or frames[i + 1] != frame + 1:
            runs.append(str(frame) if frame == start else f"{start}–{frame}")
            start = None
    return ", ".join(runs)
