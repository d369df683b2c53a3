"""Background work, headless: one protocol for every job, and the prediction jobs themselves.

A job is a generator run in a worker thread (``widgets._common.start_worker``); it yields
events, never touches a layer or a widget, and the widget shows them on the main thread:

    Progress(done, total)      how far it is (a progress bar)
    Note(text)                 a sentence for the status line; the job goes on
    Result(value)              a part of the result to show now (one frame's prediction)
    Failed(message)            one line naming the file or network and the problem
    Finished(value)            the last event: the whole result (``None`` when there is none)

Fine-tuning also yields its ``training.trainer.TrainEvent`` progress (loss and Dice curves).

A prediction made here is a :class:`Predicted`: the network's probability and attention maps
with a typed :class:`Provenance` (the :class:`ModelChoice` it was made with, the weights'
sha256, the source file, engine and device); the layers' metadata is written from it in one
place (:meth:`Provenance.metadata`), whatever widget ran the job.

    for event in predict_frames(load_predictor, read_frame, frames=[0, 1, 2], choice=choice):
        ...   # Note, Result(Predicted), Failed
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, Optional, Sequence, Union

import numpy as np

from .errors import error_text
from .io.images import as_rgb_uint8
from .inference.prediction import binary_mask

VIDEO_BATCH = 4  # frames per network call in whole-video runs: small, so results show as they come


# -- the protocol -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Progress:
    done: int
    total: int


@dataclass(frozen=True)
class Note:
    text: str


@dataclass(frozen=True)
class Result:
    value: Any


@dataclass(frozen=True)
class Failed:
    message: str


@dataclass(frozen=True)
class Finished:
    value: Any = None


Event = Union[Progress, Note, Result, Failed, Finished]


# -- what a prediction is made with, and where it came from ------------------------------------

def checkpoint_stamp(checkpoint) -> str:
    """Size and modification time of a checkpoint file ("" for random weights or a missing
    file): a file rewritten in place (fine-tuning) is another checkpoint."""
    if not checkpoint:
        return ""
    try:
        stat = Path(checkpoint).stat()
    except OSError:
        return ""
    return f"{stat.st_size}:{stat.st_mtime_ns}"


@dataclass(frozen=True)
class ModelChoice:
    """What a prediction is made with. Any change makes the predictions of the old one stale.

    checkpoint: the weights file ("" for random weights); stamp: :func:`checkpoint_stamp`
    of it, read when the choice is made."""

    network: str
    checkpoint: str = ""
    stamp: str = ""
    tta: bool = False
    second_opinion: str = ""  # the network that checks the masks ("" none; ``inference.second_opinion``)

    @classmethod
    def of(cls, network: str, checkpoint=None, tta: bool = False, second_opinion: str = "") -> "ModelChoice":
        checkpoint = str(checkpoint) if checkpoint else ""
        return cls(str(network), checkpoint, checkpoint_stamp(checkpoint), bool(tta), str(second_opinion or ""))

    def label(self) -> str:
        """How the item line and the table name it: "ea-dk", "ea-dk +TTA", "ea-dk +TTA, checked by
        dino-keys", "ea-dk (random weights)"."""
        return (self.network + (" +TTA" if self.tta else "") + ("" if self.checkpoint else " (random weights)")
                + (f", checked by {self.second_opinion}" if self.second_opinion else ""))


@dataclass(frozen=True)
class Provenance:
    """Where a prediction came from: the choice it was made with, the weights' sha256 the
    network reported ("" when untrained), the image file (or video) it was made of, and
    what ran it (engine, device, seconds)."""

    choice: ModelChoice
    checkpoint_sha256: str = ""
    source: str = ""
    engine: str = ""
    device: str = ""
    seconds: float = 0.0
    propagated_from: Optional[int] = None  # a video frame's mask carried from this key frame
    second_opinion: str = ""  # what the checking network said ("dino-keys agrees", "... overruled ...")

    def metadata(self) -> Dict[str, Any]:
        """The prediction layers' metadata (the threshold and time are added where the mask is made)."""
        meta = {"model": self.choice.network, "checkpoint_sha256": self.checkpoint_sha256,
                "checkpoint": self.choice.checkpoint or "random weights", "tta": self.choice.tta}
        if self.source:
            meta["source_path"] = self.source
        meta.update({k: v for k, v in (("engine", self.engine), ("device", self.device)) if v})
        if self.seconds:
            meta["seconds"] = round(float(self.seconds), 4)
        if self.propagated_from is not None:
            meta["propagated_from"] = int(self.propagated_from)
        if self.second_opinion:
            meta["second_opinion"] = self.second_opinion
        return meta


@dataclass(frozen=True)
class Predicted:
    """A network's output for one image (probability and attention maps at the image's
    size) with its provenance; the mask is derived at whatever threshold is asked."""

    probability: np.ndarray
    attention: Dict[str, np.ndarray]
    provenance: Provenance
    frame: Optional[int] = None  # the video frame it is of (None: a still image)

    def mask(self, threshold: float) -> np.ndarray:
        return binary_mask(self.probability, threshold)


def predicted(prediction, choice: ModelChoice, source="", frame: Optional[int] = None,
              device: str = "") -> Predicted:
    """A :class:`napari_polyp.inference.prediction.Prediction` (or anything with ``probability``,
    ``attention`` and ``checkpoint_sha256``) as made with ``choice``."""
    provenance = Provenance(choice, str(getattr(prediction, "checkpoint_sha256", "") or ""), str(source or ""),
                            str(getattr(prediction, "engine", "") or ""), device,
                            float(getattr(prediction, "seconds", 0.0) or 0.0),
                            second_opinion=str(getattr(prediction, "second_opinion", "") or ""))
    return Predicted(np.asarray(prediction.probability, np.float32), dict(prediction.attention or {}),
                     provenance, frame)


# -- prediction jobs (generators over arrays, never layers) -------------------------------------

def _load(load_predictor: Callable, what: str):
    """(predictor, None) or (None, Failed): a network that cannot be built is one line."""
    try:
        return load_predictor(), None
    except Exception as err:  # noqa: BLE001 -- shown to the user, never a traceback
        return None, Failed(f"cannot load {what}: {error_text(err)}")


def predict_frames(load_predictor: Callable, read_frame: Callable[[Optional[int]], np.ndarray],
                   frames: Sequence[Optional[int]], choice: ModelChoice, source="", device: str = "",
                   name: str = "the image") -> Iterator[Event]:
    """Segment's Run: each frame's :class:`Predicted` as a ``Result`` (a still image is the
    frame ``None``); a video goes in batches of :data:`VIDEO_BATCH` frames of one size."""
    predictor, failed = _load(load_predictor, choice.network)
    if failed:
        yield failed
        return
    if getattr(predictor, "engine_note", ""):  # e.g. ONNX Runtime could not be used
        yield Note(predictor.engine_note)
    batch = VIDEO_BATCH if len(frames) > 1 and hasattr(predictor, "predict_batch") else 1
    for start in range(0, len(frames), batch):
        chunk = list(frames[start:start + batch])
        try:
            images = [read_frame(frame) for frame in chunk]
            predictions = predictor.predict_batch(np.stack(images)) if batch > 1 and _same_shape(images) \
                else [predictor.predict(image) for image in images]
        except Exception as err:  # noqa: BLE001
            where = "" if chunk == [None] else f" (frames {chunk[0]}-{chunk[-1]})"
            yield Failed(f"{choice.network} failed on {name}{where}: {error_text(err)}")
            return
        for frame, prediction in zip(chunk, predictions):
            yield Result(predicted(prediction, choice, source, frame, device))
    yield Finished(len(frames))


def compare_frame(loaders: Sequence[tuple], image: np.ndarray, source="", device: str = "") -> Iterator[Event]:
    """Compare: two networks on one image. ``loaders`` are (choice, load_predictor) pairs;
    ``Finished`` holds the two :class:`Predicted`."""
    results = []
    for done, (choice, load_predictor) in enumerate(loaders, 1):
        predictor, failed = _load(load_predictor, choice.network)
        if failed:
            yield failed
            return
        try:
            results.append(predicted(predictor.predict(image), choice, source, device=device))
        except Exception as err:  # noqa: BLE001
            yield Failed(f"compare: {choice.network} failed: {error_text(err)}")
            return
        yield Progress(done, len(loaders))
    yield Finished(tuple(results))


def predict_items(load_predictor: Callable, read_item: Callable[[int], np.ndarray], indices: Sequence[int],
                  choice: ModelChoice, source_of: Callable[[int], Any]) -> Iterator[Event]:
    """Review's Run on all: each item's prediction as ``Result((index, Predicted))``; an item
    that cannot be read or predicted is a ``Note`` and the others go on."""
    predictor, failed = _load(load_predictor, choice.network)
    if failed:
        yield failed
        return
    for done, index in enumerate(indices, 1):
        try:
            yield Result((index, predicted(predictor.predict(read_item(index)), choice, source_of(index))))
        except Exception as err:  # noqa: BLE001 -- one bad file does not stop the others
            yield Note(f"skipped {error_text(err)}")
        yield Progress(done, len(indices))
    yield Finished(len(indices))


class Stopped(Exception):
    """Raised inside a job's work when it was asked to stop (:func:`with_progress`)."""


def with_progress(work: Callable[[Callable[[int, int], None]], Any]) -> Iterator[Event]:
    """A blocking call that reports progress through a callback, as a job: ``work(progress)``
    runs in a thread of its own and its ``progress(done, total)`` calls come out as
    ``Progress`` events, then ``Finished(its return value)`` or ``Failed``. Closing the job
    (Cancel) makes the next ``progress`` call raise :class:`Stopped`, and the job ends quietly."""
    import queue
    import threading

    events: "queue.Queue" = queue.Queue()
    stop = threading.Event()

    def progress(done: int, total: int) -> None:
        if stop.is_set():
            raise Stopped()
        events.put(Progress(int(done), int(total)))

    def run() -> None:
        try:
            events.put(Finished(work(progress)))
        except Stopped:
            events.put(None)
        except Exception as err:  # noqa: BLE001 -- one line for the user
            events.put(Failed(error_text(err)))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        while True:
            event = events.get()
            if event is None:
                return
            yield event
            if isinstance(event, (Finished, Failed)):
                return
    finally:
        stop.set()  # a job closed early (Cancel): the work stops at its next progress call


def frame_reader(data) -> Callable[[Optional[int]], np.ndarray]:
    """Frame ``f`` of an image layer's data (``None``: the data is one still image) as HxWx3
    uint8, read when asked (a video's frames are read lazily, in the worker)."""
    def read(frame: Optional[int] = None) -> np.ndarray:
        return as_rgb_uint8(np.asarray(data if frame is None else data[int(frame)]))
    return read


def _same_shape(images) -> bool:
    return len({np.shape(image) for image in images}) == 1

