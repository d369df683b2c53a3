"""Live segmentation of a playing video, headless (the Segment widget's "Live" runs it in a worker).

    clock = PlaybackClock(fps=25, first=0, frames=len(video))
    for shown in live_masks(predictor, video, clock):
        ...  # shown.frame, shown.mask (HxW uint8), shown.picture (the frame with the mask's
             # outline drawn in, HxWx3 uint8), shown.dropped, shown.fps

Playback follows the clock, not the network: each step segments the frame that is due
*now*, so when the network (or the display) is slower than the video, frames are
skipped (counted in ``dropped``) instead of the video falling further and further
behind. The image shown and its mask are always of the same frame: the worker draws the
outline into a copy of the frame, so the display uploads one picture per frame instead of
slicing the video and a contour layer (on a software-rendered canvas that halves the UI's
share of each frame).
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterator, Optional

import numpy as np

from .conventions import DEFAULT_THRESHOLD
from .display import outlined
from .io.images import as_rgb_uint8


@dataclass
class PlaybackClock:
    """Which frame of a ``frames``-long video playing at ``fps`` from ``first`` is due now."""

    fps: float
    first: int
    frames: int
    now: Callable[[], float] = time.perf_counter

    def __post_init__(self):
        self.fps = float(self.fps) if self.fps and self.fps > 0 else 25.0  # a file without a rate: 25 fps
        self.started = self.now()

    def due(self) -> int:
        """The frame due now (``frames`` or more once the video is over)."""
        return self.first + int((self.now() - self.started) * self.fps)

    def seconds_until(self, frame: int) -> float:
        return max(0.0, self.started + (frame - self.first) / self.fps - self.now())


def network_threads(threads: int) -> int:
    """The engine threads Live gives the network: one fewer than a single image gets, so the
    display keeps a core. Each frame is drawn on the UI thread (on a software-rendered canvas
    that is most of a core); with every core on the network, playback on 2 cores measured
    ~15 fps and 83-94 ms UI stalls (p99), with one left free ~20 fps and 62-66 ms."""
    return max(1, int(threads) - 1)


@dataclass
class LiveFrame:
    frame: int
    mask: np.ndarray  # HxW uint8 {0, 1}
    picture: np.ndarray  # HxWx3 uint8: the frame with the mask's outline drawn in (display.outlined)
    seconds: float  # decode + network + threshold for this frame
    shown: int  # frames segmented so far
    dropped: int  # frames skipped so far because the previous one was not done in time
    fps: float  # frames segmented per second of playback so far


def live_masks(predictor, frames, clock: PlaybackClock, threshold: float = DEFAULT_THRESHOLD,
               shown: Optional[threading.Event] = None, stop: Optional[threading.Event] = None,
               ) -> Iterator[LiveFrame]:
    """Segment the due frame, again and again, until the video ends or ``stop`` is set.

    ``shown``: set by the consumer once it has displayed the previous frame; the next
    one is computed meanwhile but not handed over before (at most one frame in flight,
    so a slow display drops frames too instead of queueing them).
    """
    last = clock.first - 1
    count = dropped = 0
    while not (stop is not None and stop.is_set()):
        frame = clock.due()
        if frame >= clock.frames:
            return
        if frame <= last:  # ahead of the video: wait for the next frame to be due
            time.sleep(min(clock.seconds_until(last + 1), 0.05))
            continue
        start = time.perf_counter()
        image = as_rgb_uint8(np.asarray(frames[frame]))
        mask = predictor.predict(image, attention=False).mask(threshold)
        seconds = time.perf_counter() - start  # decode + network (the outline is not counted)
        dropped += frame - last - 1
        count += 1
        last = frame
        elapsed = max(clock.now() - clock.started, 1e-6)
        if shown is not None:
            while not shown.wait(0.05):  # the display is still busy with the previous frame
                if stop is not None and stop.is_set():
                    return
            shown.clear()
        yield LiveFrame(frame, mask, outlined(image, mask), seconds, count, dropped, count / elapsed)
