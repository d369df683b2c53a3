"""One network per process, and the chunks it runs: the same code in one process and on Ray.

:class:`PredictorSpec` says how a worker gets its network. Where the network runs in ONNX
Runtime (the default on CPUs) the spec *is* the graph: its verified bytes, the card and the
checkpoint's sha256, so every worker (on any node) runs the very bytes the driver checked,
imports no torch and builds nothing; one process and Ray give the same masks bit for bit.
Otherwise (``--engine torch``, a GPU) each worker builds the network from the checkpoint
path, which must be readable there.

:class:`ChunkPredictor` holds that network, loaded once, and runs chunks: an image ->
``<target>.png`` (0/255, written atomically) and ``_prob.png``; a video's frame range -> those
frames of ``<target>.zarr``. Its ``__call__`` is the Ray Data batch interface (a batch of
chunks as JSON -> their records as JSON); :meth:`ChunkPredictor.run` is the same for one
chunk. A chunk that fails is a record with the error in one line, never an exception: only
a process that dies makes Ray retry.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from ..conventions import DEFAULT_THRESHOLD


@dataclass
class PredictorSpec:
    kind: str  # "graph" (ONNX Runtime, the bytes travel) | "build" (the network is built in the worker)
    model: str
    tta: bool = False
    engine: str = "onnxruntime"  # what runs the network
    checkpoint_sha256: str = ""
    checkpoint: str = ""  # the checkpoint's path ("" for random weights)
    card: object = None  # graph: the model card (input size, normalisation)
    graph: bytes = b""  # graph: the ONNX file's bytes, verified against the cache's index
    key: dict = field(default_factory=dict)  # graph: what it was exported from (engine.export_key)
    device: str = "auto"  # build: torch's device
    backbone_weights: str = ""  # build
    second: Optional["PredictorSpec"] = None  # the network that checks this one's masks (--second-opinion)

    def describe(self) -> dict:
        described = {"model": self.model, "checkpoint": self.checkpoint, "checkpoint_sha256": self.checkpoint_sha256,
                     "tta": self.tta, "engine": self.engine}
        if self.second is not None:
            described["second_opinion"] = {"model": self.second.model,
                                           "checkpoint_sha256": self.second.checkpoint_sha256}
        return described


def spec_from_predictor(predictor, args) -> PredictorSpec:
    """The spec that gives a worker the same network as ``predictor`` (built or served by the
    driver): its graph where it runs in ONNX Runtime, else the build arguments."""
    from ..inference.engine import verified_graph
    from ..inference.second_opinion import SecondOpinion

    if isinstance(predictor, SecondOpinion):
        spec = spec_from_predictor(predictor.first, args)
        spec.second = spec_from_predictor(predictor.second, argparse.Namespace(device=args.device,
                                                                               backbone_weights=None))
        return spec
    checkpoint = str(getattr(predictor, "checkpoint_path", "") or "")
    runner = getattr(predictor, "runner", None)
    if getattr(predictor, "engine", "") == "onnxruntime" and getattr(runner, "path", None) is not None:
        return PredictorSpec("graph", predictor.model_name, tta=bool(getattr(predictor, "tta", False)),
                             checkpoint_sha256=predictor.checkpoint_sha256, checkpoint=checkpoint,
                             card=predictor.card, graph=verified_graph(runner.path), key=dict(runner.key))
    return PredictorSpec("build", predictor.model_name, tta=bool(getattr(predictor, "tta", False)),
                         engine=predictor.engine, checkpoint_sha256=predictor.checkpoint_sha256,
                         checkpoint=checkpoint, device=str(args.device),
                         backbone_weights=str(args.backbone_weights or ""))


def predictor_from_spec(spec: PredictorSpec, threads: Optional[int] = None):
    """The network a spec describes, ready to predict (``threads``: ONNX Runtime's or torch's)."""
    from ..inference.engine import physical_cores

    if spec.second is not None:
        from ..inference.second_opinion import SecondOpinion

        return SecondOpinion(predictor_from_spec(replace(spec, second=None), threads),
                             predictor_from_spec(spec.second, threads))
    threads = int(threads or physical_cores())
    if spec.kind == "graph":
        from ..inference.engine import open_export
        from ..inference.prediction import ServedPredictor

        runner = open_export(Path(spec.checkpoint or f"{spec.model}.onnx"), spec.key, threads, spec.graph)
        return ServedPredictor(spec.model, spec.card, runner, spec.checkpoint_sha256, spec.checkpoint, tta=spec.tta)
    import models
    from ..inference import Predictor

    model = models.create_model(spec.model, checkpoint=spec.checkpoint or False,
                                backbone_weights=spec.backbone_weights or None)
    return Predictor(spec.model, device=spec.device, model=model, tta=spec.tta, engine=spec.engine, threads=threads)


def peak_rss_mb() -> float:
    """This process's peak resident memory so far (MiB)."""
    try:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return round(peak / 1024.0, 1) if os.name != "darwin" else round(peak / 2**20, 1)
    except (ImportError, OSError):  # pragma: no cover - Windows
        return 0.0


def _problem(path: str, err: BaseException) -> str:
    """One line naming the file and what went wrong."""
    from ..errors import UserError

    text = " ".join(str(err).split()) or type(err).__name__
    if not isinstance(err, (UserError, OSError)):
        text = f"{type(err).__name__}: {text}"
    return text if path in text else f"{path}: {text}"


def write_png_atomic(path: Path, array: np.ndarray) -> None:
    """A PNG written to a temporary name and renamed: a killed process leaves no half file."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        Image.fromarray(array).save(tmp, format="PNG")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class ChunkPredictor:
    """Runs chunks with one network, loaded once (a Ray Data actor, or the one process).

    ``spec``: :class:`PredictorSpec`; ``threshold``: the mask rule; ``probability``: also
    store probabilities; ``threads``: the network's CPU threads; ``predictor``: one built
    already for ``spec`` (the one process reuses the driver's torch network)."""

    def __init__(self, spec: PredictorSpec, threshold: float = DEFAULT_THRESHOLD, probability: bool = False,
                 threads: Optional[int] = None, predictor=None):
        started = time.perf_counter()
        self.predictor = predictor if predictor is not None else predictor_from_spec(spec, threads)
        self.threshold = float(threshold)
        self.probability = bool(probability)
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        self.load_seconds = round(time.perf_counter() - started, 3)
        self._video = None  # (path, VideoFrames): consecutive chunks of one video reuse its index
        self._store = None  # (target, MaskStore)
        self._overruled = 0  # frames of the chunk in progress whose mask the second opinion gave

    # -- Ray Data: a batch of chunks (one column of JSON) -> their records ----------------------
    def __call__(self, batch: dict) -> dict:
        return {"record": [json.dumps(self.run(json.loads(str(text)))) for text in batch["chunk"]]}

    # -- one chunk ---------------------------------------------------------------------------------
    def run(self, chunk: dict, on_frames: Optional[Callable[[int], None]] = None) -> dict:
        """Run one chunk, write its outputs; returns its record (``status`` done or failed).
        ``on_frames(n)`` is told of frames as they are done (the one-process progress bar)."""
        started = time.perf_counter()
        record = {"chunk": chunk["id"], "worker": self.worker}
        self._overruled = 0
        try:
            frames = self._run_image(chunk) if chunk["kind"] == "image" else self._run_video(chunk, on_frames)
            record.update(status="done", frames=frames)
            if self._overruled:  # frames whose mask is the second opinion's (--second-opinion)
                record["overruled"] = self._overruled
            if chunk["kind"] == "image" and on_frames:
                on_frames(1)
        except Exception as err:  # noqa: BLE001 -- a chunk's failure is recorded, the run goes on
            self._video = None if self._video and self._video[0] == chunk["path"] else self._video
            record.update(status="failed", error=_problem(chunk["path"], err))
        record.update(seconds=round(time.perf_counter() - started, 4), peak_rss_mb=peak_rss_mb())
        return record

    def _run_image(self, chunk: dict) -> int:
        from ..io.images import read_image

        prediction = self.predictor.predict(read_image(chunk["path"]), attention=False)
        self._overruled += prediction.overruled
        target = Path(chunk["target"])
        write_png_atomic(target, prediction.mask(self.threshold) * np.uint8(255))
        if self.probability:
            write_png_atomic(target.with_name(target.name[:-len(".png")] + "_prob.png"),
                             (prediction.probability * 255).round().astype(np.uint8))
        return 1

    def _frames(self, path: str):
        from ..io.video import VideoFrames

        if self._video is None or self._video[0] != path:
            if self._video is not None:
                self._video[1].close()
            self._video = (path, VideoFrames(path, cache_frames=4))
        return self._video[1]

    def _mask_store(self, target: str):
        from ..io.mask_store import MaskStore

        if self._store is None or self._store[0] != target:
            self._store = (target, MaskStore.open(target, mode="r+"))
        return self._store[1]

    def _run_video(self, chunk: dict, on_frames) -> int:
        from ..errors import UserError

        frames, store = self._frames(chunk["path"]), self._mask_store(chunk["target"])
        if store.shape != (len(frames), frames.height, frames.width):
            raise UserError(f"{chunk['path']}: the video is now {len(frames)} frames of "
                            f"{frames.height}×{frames.width}, its mask store {chunk['target']} was made for "
                            f"{store.shape}: the file changed since the run began (run with --overwrite)")
        for index in range(chunk["start"], chunk["stop"]):
            prediction = self.predictor.predict(frames[index], attention=False)
            self._overruled += prediction.overruled
            store.write(index, prediction.mask(self.threshold), prediction.probability if self.probability else None)
            if on_frames:
                on_frames(1)
        return chunk["stop"] - chunk["start"]

    def close(self) -> None:
        if self._video is not None:
            self._video[1].close()
            self._video = None
