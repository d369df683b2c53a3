"""Video files as a lazy T x H x W x 3 uint8 array (frames decoded on demand).

A 5-minute 25 fps video at 640x480 is 7500 frames, 6.9 GB as raw RGB, so it is
never decoded whole. :class:`VideoFrames` indexes the packets once (no
decoding: their presentation timestamps give the exact frame count and where
each frame is), then decodes a frame when it is asked for: forward steps
continue the running decoder, jumps seek to the nearest earlier keyframe and
decode up to the exact frame. A small LRU cache serves repeated requests.

napari takes it as layer data directly (it has ``shape``, ``dtype``, ``ndim``,
``size`` and ``__getitem__``).
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import Callable, Iterator, Optional

import numpy as np

from ..errors import InputFileError
from .extensions import VIDEO_EXTENSIONS


def is_video_path(path) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


class VideoFrames:
    """Lazy, random-access RGB frames of one video file (thread-safe).

    ``frames[i]`` -> HxWx3 uint8; ``frames[i, y0:y1]``, ``frames[2:5]`` and
    other numpy-style keys work; ``len(frames)``, ``frames.shape``,
    ``frames.fps``. ``cache_frames`` bounds the decoded frames kept in memory.
    """

    dtype = np.dtype(np.uint8)
    ndim = 4

    def __init__(self, path, cache_frames: int = 16, on_unreadable: Optional[Callable[[str], None]] = None):
        """``on_unreadable``: for a viewer that must draw every frame (napari's layer), a frame
        that cannot be decoded comes back black and this is called once with the reason
        (default: :class:`InputFileError` is raised, as code that saves or trains needs)."""
        self.path = Path(path)
        self.cache_frames = max(1, int(cache_frames))
        self.on_unreadable = on_unreadable
        self._said_unreadable = False
        self._lock = threading.RLock()
        self._cache: "OrderedDict[int, np.ndarray]" = OrderedDict()
        self._container = None
        self._decoder: Optional[Iterator] = None
        self._next_index: Optional[int] = None  # index the running decoder yields next
        self._open_and_index()

    # -- array protocol ---------------------------------------------------
    @property
    def shape(self):
        return (len(self._pts), self.height, self.width, 3)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    def __len__(self) -> int:
        return len(self._pts)

    def __getitem__(self, key):
        key = _expand_key(key if isinstance(key, tuple) else (key,), self.ndim)
        first, rest = key[0], key[1:]
        if isinstance(first, (int, np.integer)):
            return self.frame(int(first))[rest]
        if isinstance(first, slice):
            indices = range(*first.indices(len(self)))
        else:
            indices = np.arange(len(self))[np.asarray(first)].ravel()
        frames = [self.frame(int(i)) for i in indices]
        stacked = np.stack(frames) if frames else np.zeros((0, self.height, self.width, 3), np.uint8)
        return stacked[(slice(None),) + rest]

    def __array__(self, dtype=None, copy=None):
        # Decodes everything: only for code that insists on a plain array.
        out = self[:]
        return out.astype(dtype) if dtype is not None else out

    def __iter__(self):
        for i in range(len(self)):
            yield self.frame(i)

    def __repr__(self) -> str:
        return f"VideoFrames({str(self.path)!r}, shape={self.shape}, fps={self.fps:.3g})"

    # -- decoding ---------------------------------------------------------
    def frame(self, index: int) -> np.ndarray:
        """Frame ``index`` (negative counts from the end) as HxWx3 uint8."""
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"frame {index} out of range for a video of {n} frames")
        index %= n
        with self._lock:
            cached = self._cache.get(index)
            if cached is not None:
                self._cache.move_to_end(index)
                return cached
            try:
                try:
                    return self._decode_to(index)
                except InputFileError:
                    raise
                except Exception as err:  # PyAV raises several error types for broken streams
                    self._decoder = None
                    raise InputFileError(self.path, f"frame {index} cannot be decoded ({_problem(err, self.path)})") \
                        from None
            except InputFileError as err:
                if self.on_unreadable is None:
                    raise
                if not self._said_unreadable:
                    self._said_unreadable = True
                    self.on_unreadable(f"{err}; such frames are shown black")
                return np.zeros((self.height, self.width, 3), np.uint8)

    def close(self) -> None:
        with self._lock:
            self._decoder = None
            self._cache.clear()
            if self._container is not None:
                self._container.close()
                self._container = None

    def __del__(self):  # pragma: no cover - best effort
        try:
            self.close()
        except Exception:
            pass

    def _open_and_index(self) -> None:
        import av

        path = self.path
        if not path.exists():
            raise InputFileError(path, "does not exist")
        if path.stat().st_size == 0:
            raise InputFileError(path, "is empty (0 bytes)")
        try:
            container = av.open(str(path))
        except Exception as err:
            raise InputFileError(path, f"cannot be opened as a video ({_problem(err, path)})") from None
        if not container.streams.video:
            container.close()
            raise InputFileError(path, "has no video stream")
        stream = container.streams.video[0]
        try:
            pts = []
            keyframes = []
            for packet in container.demux(stream):
                if packet.size == 0:  # flush packet at the end
                    continue
                stamp = packet.pts if packet.pts is not None else packet.dts
                if stamp is None:
                    continue
                pts.append(stamp)
                if packet.is_keyframe:
                    keyframes.append(stamp)
        except Exception as err:
            container.close()
            raise InputFileError(path, f"cannot be read as a video ({_problem(err, path)})") from None
        if not pts:
            container.close()
            raise InputFileError(path, "has no video frames")
        self._pts = np.array(sorted(set(pts)), dtype=np.int64)
        self._index_of = {int(p): i for i, p in enumerate(self._pts)}
        self.width = int(stream.codec_context.width)
        self.height = int(stream.codec_context.height)
        rate = stream.average_rate or stream.guessed_rate
        self.fps = float(rate) if rate else 0.0
        self._container = container
        self._stream = stream
        # Decode frame 0 now: a file whose packets parse but whose frames do not
        # decode is refused when it is opened, not later in the middle of napari's draw.
        self.frame(0)

    def _decode_to(self, index: int) -> np.ndarray:
        if self._container is None:
            raise InputFileError(self.path, "the video was closed")
        if self._decoder is None or self._next_index is None or not (
            self._next_index <= index < self._next_index + 2 * self.cache_frames
        ):
            self._seek(index)
        target = int(self._pts[index])
        for frame in self._decoder:
            found = self._index_for(frame)
            if found is None:
                continue
            image = frame.to_ndarray(format="rgb24")
            self._next_index = found + 1
            self._remember(found, image)
            if found >= index:
                if found > index:  # the exact frame was not produced (damaged stream): nearest later one
                    self._remember(index, image)
                return image
        # The decoder ran dry before the frame: the stream ends early.
        self._decoder = None
        raise InputFileError(self.path, f"frame {index} (pts {target}) is missing: the video ends early")

    def _seek(self, index: int) -> None:
        target = int(self._pts[index])
        # Backward to the keyframe at or before the target, then decode forward.
        self._container.seek(target, stream=self._stream, backward=True, any_frame=False)
        self._decoder = self._container.decode(self._stream)
        self._next_index = None

    def _index_for(self, frame) -> Optional[int]:
        stamp = frame.pts if frame.pts is not None else getattr(frame, "dts", None)
        if stamp is None:
            return self._next_index
        found = self._index_of.get(int(stamp))
        if found is None:  # between indexed stamps: the nearest one at or after it
            found = int(np.searchsorted(self._pts, stamp))
            found = min(found, len(self._pts) - 1)
        return found

    def _remember(self, index: int, image: np.ndarray) -> None:
        image.setflags(write=False)  # cached frames are shared: nobody may paint into them
        self._cache[index] = image
        self._cache.move_to_end(index)
        while len(self._cache) > self.cache_frames:
            self._cache.popitem(last=False)


def _expand_key(key: tuple, ndim: int) -> tuple:
    if any(k is Ellipsis for k in key):
        at = next(i for i, k in enumerate(key) if k is Ellipsis)
        fill = (slice(None),) * (ndim - len(key) + 1)
        key = key[:at] + fill + key[at + 1:]
    if len(key) > ndim:
        raise IndexError(f"too many indices for a {ndim}-d video array")
    return key + (slice(None),) * (ndim - len(key))


def _problem(err: Exception, path) -> str:
    """PyAV's error in a few plain words: without the path (the message names it already), the
    errno and the decoder's function name."""
    import re

    lines = str(err).strip().splitlines()
    text = lines[0] if lines else ""
    text = text.replace(f"'{path}'", "").replace(str(path), "")
    text = re.sub(r"\[Errno -?\d+\]\s*", "", text)
    text = re.sub(r"'?\w+\(\)'?", "", text).strip(" :;")
    if text.lower().startswith("invalid data"):
        return "invalid data: the file is damaged, cut short or not a video"
    return text or type(err).__name__


def write_video(path, frames, fps: float = 25.0, codec: str = "libx264") -> Path:
    """Write an iterable of HxWx3 uint8 frames (even sizes for H.264); for tests and benchmarks."""
    import av

    path = Path(path)
    with av.open(str(path), mode="w") as container:
        stream = None
        for frame in frames:
            frame = np.ascontiguousarray(frame, dtype=np.uint8)
            if stream is None:
                stream = container.add_stream(codec, rate=int(round(fps)))
                stream.height, stream.width = frame.shape[:2]
                stream.pix_fmt = "yuv420p"
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        if stream is not None:
            for packet in stream.encode():
                container.mux(packet)
    return path
