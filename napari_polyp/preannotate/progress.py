"""Progress of a long run: a tqdm bar with rate and ETA on a terminal, plain lines otherwise."""
from __future__ import annotations

import sys
import time
from typing import Optional


def duration(seconds: float) -> str:
    """3 s, 4 min 05 s, 2 h 07 min."""
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"


class Progress:
    """Frames done out of ``total``. On a terminal a tqdm bar; elsewhere (a log file, CI) one
    line every ``every_s`` seconds and at the end: ``predict: 1,250 / 90,000 frames (1.4%),
    24.8 frames/s, about 59 min left``. ``quiet``: nothing."""

    def __init__(self, total: int, quiet: bool = False, stream=None, every_s: float = 10.0,
                 label: str = "predict", terminal: Optional[bool] = None):
        self.total, self.done = int(total), 0
        self.stream = stream or sys.stderr
        self.quiet, self.every_s, self.label = quiet, every_s, label
        self.started = self._last = time.monotonic()
        terminal = bool(getattr(self.stream, "isatty", lambda: False)()) if terminal is None else terminal
        self._bar = None
        if not quiet and terminal:
            from tqdm import tqdm

            self._bar = tqdm(total=self.total, unit="frame", desc=label, file=self.stream, dynamic_ncols=True,
                             smoothing=0.05)

    def update(self, frames: int = 1) -> None:
        self.done += int(frames)
        if self._bar is not None:
            self._bar.update(frames)
        elif not self.quiet and time.monotonic() - self._last >= self.every_s:
            self._line()

    def rate(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.done / elapsed if elapsed > 0 else 0.0

    def _line(self, final: bool = False) -> None:
        self._last = time.monotonic()
        rate = self.rate()
        share = f" ({100.0 * self.done / self.total:.1f}%)" if self.total else ""
        left = f", about {duration((self.total - self.done) / rate)} left" if rate > 0 and self.done < self.total else ""
        if final:
            left = f" in {duration(time.monotonic() - self.started)}"
        print(f"{self.label}: {self.done:,} / {self.total:,} frames{share}, {rate:.1f} frames/s{left}",
              file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif not self.quiet and self.done:
            self._line(final=True)
