"""Live segmentation of a playing video, headless (the Segment widget's "Live" runs it in a worker).

    clock = PlaybackClock(fps=25, first=0, frames=len(video))
    for shown in live_masks(predictor, video, clock):
        ...  # shown.frame, shown.mask (HxW uint8), shown.picture (the frame with the mask's
             # outline drawn in, HxWx3 uint8), shown.dropped, shown.fps

Playback follows the clock, not the network: each step segments the frame that is due
*now*, so when the network (or the display) is slower than the video, frames are
skipped (counted in ``dropped``) instead of the video falling further and further
behind. With ``carry`` (Deep Feature Flow's idea, at mask level: Zhu et al., 2017), a frame that
falls due while the network was busy is not skipped: the last network mask is carried to
it by optical flow (:class:`.flow.FlowWarp`, a few ms), and the network runs
again on the next frame it has time for. An accurate network that answers in about two
frame times is then shown on every frame, about every other frame its own mask.

The image shown and its mask are always of the same frame: the worker draws the
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

from ..conventions import DEFAULT_THRESHOLD
from ..display import outlined
from ..io.images import as_rgb_uint8
from .flow import FlowWarp, small_grey
from .prediction import binary_mask


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
        return max(0.0, -self.lateness(frame))

    def lateness(self, frame: int) -> float:
        """Seconds since ``frame`` fell due (negative: not yet due)."""
        return self.now() - self.started - (frame - self.first) / self.fps


# frames carried by flow in a row at most: the network then runs however late, so the mask
# never drifts from the frame for long (a network three frame times slow still shows every frame)
MAX_CARRIED = 3
# px, the longer side of the grey frames Live's flow runs on: on 2 synthetic 640×480 sequences,
# masks carried 2 frames scored Dice 0.979 at 128 px (2.6 ms a frame) and 0.986 at 320 px (8.6 ms)
LIVE_FLOW_SIDE = 160


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
    seconds: float  # decode + network (or flow) + threshold for this frame
    shown: int  # frames segmented so far
    dropped: int  # frames skipped so far because the previous one was not done in time
    fps: float  # frames segmented per second of playback so far
    carried: int = 0  # frames so far whose mask the flow carried from the network's last
    by_flow: bool = False  # this frame's mask was carried by flow (not the network's own)


def live_masks(predictor, frames, clock: PlaybackClock, threshold: float = DEFAULT_THRESHOLD,
               shown: Optional[threading.Event] = None, stop: Optional[threading.Event] = None,
               carry: bool = False) -> Iterator[LiveFrame]:
    """Segment the due frame, again and again, until the video ends or ``stop`` is set.

    ``shown``: set by the consumer once it has displayed the previous frame; the next
    one is computed meanwhile but not handed over before (at most one frame in flight,
    so a slow display drops frames too instead of queueing them).
    ``carry``: a frame due while the network was busy gets the network's last mask carried
    to it by optical flow (see the module docstring) instead of being skipped.
    """
    carrier = _Carrier() if carry else None
    last = clock.first - 1
    count = dropped = carried = 0
    while not (stop is not None and stop.is_set()):
        frame = clock.due()
        if frame >= clock.frames:
            return
        if frame <= last:  # ahead of the video: wait for the next frame to be due
            time.sleep(min(clock.seconds_until(last + 1), 0.05))
            continue
        start = time.perf_counter()
        # the next frame to show late by a quarter of a frame: the network (about two frame
        # times) would fall behind. Asked of ``last + 1``, not of the due frame: that one can be
        # barely late while the frame before it is a whole frame late, and would be skipped.
        late = clock.lateness(last + 1) > 0.25 / clock.fps
        by_flow = carrier is not None and carrier.ready and late and carrier.in_a_row < MAX_CARRIED
        if by_flow:  # the flow is quick: carry frame by frame and catch up, instead of skipping any
            frame = last + 1
        image = as_rgb_uint8(np.asarray(frames[frame]))
        if by_flow:  # behind: the network's last mask moved here, the network runs next time
            probability = carrier.carry(image)
            carried += 1
        else:
            probability = predictor.predict(image, attention=False).probability
            if carrier is not None:
                carrier.reset(image, probability)
        mask = binary_mask(probability, threshold)
        seconds = time.perf_counter() - start  # decode + network or flow (the outline is not counted)
        dropped += frame - last - 1
        count += 1
        last = frame
        elapsed = max(clock.now() - clock.started, 1e-6)
        if shown is not None:
            while not shown.wait(0.05):  # the display is still busy with the previous frame
                if stop is not None and stop.is_set():
                    return
            shown.clear()
        yield LiveFrame(frame, mask, outlined(image, mask), seconds, count, dropped, count / elapsed, carried, by_flow)


class _Carrier:
    """The network's last probability and the frame it is at, carried forward by flow."""

    def __init__(self):
        self.flow = FlowWarp()
        self.probability: Optional[np.ndarray] = None
        self.grey: Optional[np.ndarray] = None
        self.in_a_row = 0  # frames carried since the network's last mask

    @property
    def ready(self) -> bool:
        return self.probability is not None

    def reset(self, image: np.ndarray, probability: np.ndarray) -> None:
        self.probability, self.grey = np.asarray(probability, np.float32), small_grey(image, LIVE_FLOW_SIDE)
        self.in_a_row = 0

    def carry(self, image: np.ndarray) -> np.ndarray:
        grey = small_grey(image, LIVE_FLOW_SIDE)
        self.probability, _ = self.flow.warp(self.probability, self.grey, grey)
        self.grey = grey
        self.in_a_row += 1
        return self.probability
