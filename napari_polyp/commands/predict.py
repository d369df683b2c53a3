"""`napari-polyp predict`: segment images and videos (folders walked recursively), resumably,
in one process or on a Ray cluster.

    napari-polyp predict --model ea-dk archive/ --out masks/                 # one process
    napari-polyp predict archive/ --out masks/ --cluster ray --workers 2     # a local Ray
    napari-polyp predict archive/ --out /shared/masks --cluster auto         # the running cluster
    napari-polyp predict archive/ --out masks/ --parts 4 --part 0            # a quarter, no Ray
    napari-polyp predict --task dermoscopy IMD002.bmp --out masks/           # the task's best network

Writes ``<out>/<stem>.png`` (0/255) per image, ``<out>/<stem>.zarr`` per video (a mask store,
:mod:`napari_polyp.io.mask_store`: uint8 0/1, one compressed chunk a frame, the provenance in
its attributes); a folder's files keep their relative folders under ``<out>``.
``--probability`` also writes probabilities (``<stem>_prob.png``, or in the store), uint8.

``<out>/predict-run.jsonl`` is the run manifest (:mod:`napari_polyp.preannotate.manifest`):
running the same command again skips what is done and re-runs what failed; a killed run
loses only the chunks (``--chunk-frames`` frames of a video, or an image) in flight. Another
run's manifest in ``--out`` is refused unless ``--overwrite``. Two inputs that would write
the same output are refused before anything runs. A file that cannot be read is skipped, the
rest done, and everything skipped or failed is named at the end (exit status 1); ``--strict``
stops at the first one instead. Without ``--cluster`` Ray is never imported.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Dict, List

from ..conventions import DEFAULT_THRESHOLD


def add_arguments(parser) -> None:
    parser.add_argument("inputs", nargs="+", help="image files, video files, or folders of them (walked recursively)")
    import models

    parser.add_argument("--model", default=None,
                        help="network name (default: the best trained network for --task)")
    parser.add_argument("--task", default=None, choices=tuple(models.TASKS),
                        help="what the images show (default colonoscopy): picks the network when --model "
                             "is not given, and warns when --model was made for another task")
    parser.add_argument("--checkpoint", default=None, help="checkpoint (default: the model's default one)")
    parser.add_argument("--out", required=True, help="output folder (mask PNGs, video mask stores, the run manifest)")
    parser.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD)
    parser.add_argument("--probability", action="store_true", help="also write probability maps (uint8)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--backbone-weights", default=None)
    parser.add_argument("--allow-untrained", action="store_true", help="run a network that has no checkpoint")
    parser.add_argument("--strict", action="store_true", help="stop at the first file that cannot be read")
    parser.add_argument("--tta", action="store_true",
                        help="flip test-time augmentation: average over the image and its mirror images (3× slower)")
    add_second_opinion_argument(parser)
    from napari_polyp.inference.engine import add_arguments as add_engine_arguments

    add_engine_arguments(parser)
    run = parser.add_argument_group("resumable runs")
    from napari_polyp.preannotate.plan import DEFAULT_CHUNK_FRAMES

    run.add_argument("--chunk-frames", type=int, default=DEFAULT_CHUNK_FRAMES,
                     help=f"frames of a video per chunk, the unit of work, retry and resume (default {DEFAULT_CHUNK_FRAMES})")
    run.add_argument("--overwrite", action="store_true",
                     help="start over where --out holds the manifest of another run (other inputs or settings)")
    run.add_argument("--parts", type=int, default=None, help="split the inputs into N parts (with --part)")
    run.add_argument("--part", type=int, default=None,
                     help="run part K of --parts N (K = 0 .. N-1; inputs sorted by path, every N-th from the K-th)")
    cluster = parser.add_argument_group("Ray (only with --cluster)")
    cluster.add_argument("--cluster", default=None, metavar="ray|auto|ray://HOST:PORT",
                         help="run on Ray Data: ray starts a local Ray, auto joins the running cluster, "
                              "ray://HOST:PORT a remote one (inputs and --out on a file system every node sees)")
    cluster.add_argument("--workers", type=int, default=None,
                         help="Ray actors, one network each (default: the cluster's CPUs / --cpus-per-worker)")
    cluster.add_argument("--cpus-per-worker", type=float, default=1.0,
                         help="CPUs each actor reserves (default 1; also its threads unless --threads)")
    cluster.add_argument("--gpus-per-worker", type=float, default=0.0,
                         help="GPUs each actor reserves (GPU nodes; the network then runs in torch on the GPU)")
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON object on stdout")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or progress lines")


def check_out_folder(out: Path) -> None:
    from napari_polyp.errors import UserError

    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; give a folder for the masks")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"--out {out}: cannot create this folder ({err.strerror or err})") from None


def add_second_opinion_argument(parser) -> None:
    """``--second-opinion``, for predict and evaluate alike."""
    parser.add_argument("--second-opinion", action="store_true",
                        help="let the task's checking network (models.SECOND_OPINION: DINO-keys for polyps) "
                             "overrule the mask where it sees none of it (DINO-keys: about 0.25 s more an image on 2 cores)")


def _load_predictor(args):
    """The network --model names, checked by a second one where --second-opinion asks."""
    from napari_polyp.inference.second_opinion import with_second_opinion

    predictor = _load_network(args)
    if getattr(args, "second_opinion", False):
        predictor = with_second_opinion(predictor, args.device, args.engine, args.threads)
    return predictor


def _load_network(args):
    import models
    from napari_polyp.errors import UserError
    from napari_polyp.inference import Predictor

    if args.checkpoint is None and models.default_checkpoint(args.model) is None and not args.allow_untrained:
        raise UserError(f"{args.model} has no trained checkpoint: predictions would not be meaningful "
                        "(pass --checkpoint, or --allow-untrained)")
    if not args.backbone_weights:  # (another backbone file means another network: build it)
        from napari_polyp.inference.prediction import served_if_on_cpu

        checkpoint = args.checkpoint or models.default_checkpoint(args.model)
        served = served_if_on_cpu(args.model, checkpoint and str(checkpoint), args.device, args.engine,
                                  args.threads, tta=args.tta)
        if served is not None:
            return served
    model = models.create_model(args.model, checkpoint=args.checkpoint or None, backbone_weights=args.backbone_weights)
    return Predictor(args.model, device=args.device, model=model, tta=args.tta, engine=args.engine,
                     threads=args.threads)


def choose_model(args) -> str:
    """--model, or the task's default network; a network made for another task than
    --task names is run (the user asked for it) with a warning on stderr."""
    import models

    if args.model is None:
        return models.default_model(args.task or "colonoscopy")
    mismatch = models.task_mismatch(args.model, args.task, subject="--task names")
    if mismatch:
        print(f"napari-polyp predict: warning: {mismatch}", file=sys.stderr)
    return args.model


def _check_arguments(args) -> None:
    from napari_polyp.errors import UserError

    if args.chunk_frames < 1:
        raise UserError(f"--chunk-frames must be 1 or more, not {args.chunk_frames}")
    if not 0.0 <= args.threshold <= 1.0:
        raise UserError(f"--threshold must be between 0 and 1, not {args.threshold}")
    if args.cluster is None:
        for name, value, default in (("--workers", args.workers, None), ("--cpus-per-worker", args.cpus_per_worker, 1.0),
                                     ("--gpus-per-worker", args.gpus_per_worker, 0.0)):
            if value != default:
                raise UserError(f"{name} needs --cluster (ray, auto or ray://HOST:PORT); without it one process runs")
        return
    if args.workers is not None and args.workers < 1:
        raise UserError(f"--workers must be 1 or more, not {args.workers}")
    if args.cpus_per_worker <= 0 or args.gpus_per_worker < 0:
        raise UserError("--cpus-per-worker must be above 0 and --gpus-per-worker 0 or more")


def _identity(args, spec, items, threshold: float) -> dict:
    """What makes two runs the same run (and a manifest resumable)."""
    identity = {"model": spec.model, "checkpoint_sha256": spec.checkpoint_sha256, "tta": spec.tta,
                "engine": spec.engine, "threshold": threshold, "probability": bool(args.probability),
                "chunk_frames": int(args.chunk_frames), "inputs": sorted(item.key for item in items)}
    if spec.second is not None:  # absent otherwise: a run made before the option resumes as it was
        identity["second_opinion"] = spec.describe()["second_opinion"]
    return identity


def _provenance(spec, identity: dict, item, stat, frames) -> dict:
    return {"source": item.key, "source_size": stat.st_size, "source_mtime_ns": stat.st_mtime_ns,
            "frames": len(frames), "fps": frames.fps, **spec.describe(),
            "threshold": identity["threshold"], "probability": identity["probability"],
            "run": hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16],
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "written_by": "napari-polyp predict"}


def _video_store(item, spec, identity: dict, resumed: bool):
    """The mask store of a video: the one there when it belongs to this run and the video is
    unchanged (resuming reads no video), else a new one (the video's frames counted once)."""
    from napari_polyp.io.mask_store import MaskStore, is_mask_store
    from napari_polyp.io.video import VideoFrames

    target = item.outputs(False)[0]
    stat = os.stat(item.path)
    run = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
    if resumed and is_mask_store(target):
        try:
            store = MaskStore.open(target)
            attrs = store.attrs
            if (attrs.get("run"), attrs.get("source_size"), attrs.get("source_mtime_ns")) == \
                    (run, stat.st_size, stat.st_mtime_ns):
                return store
        except Exception:  # noqa: BLE001 -- a damaged store is made again
            pass
    frames = VideoFrames(item.path, cache_frames=1)  # InputFileError (file + problem) when unreadable
    try:
        shape = (len(frames), frames.height, frames.width)
        attrs = _provenance(spec, identity, item, stat, frames)
    finally:
        frames.close()
    return MaskStore.create(target, shape, probabilities=identity["probability"], attrs=attrs, overwrite=True)


def run(args) -> int:
    from napari_polyp.errors import UserError
    from napari_polyp.inference.engine import physical_cores
    from napari_polyp.preannotate.manifest import RunManifest, manifest_path
    from napari_polyp.preannotate.plan import (
        check_collisions, chunk_frames_of, expand_inputs, frame_ranges, make_chunk, select_part,
    )
    from napari_polyp.preannotate.progress import Progress
    from napari_polyp.preannotate.worker import spec_from_predictor

    started = time.monotonic()
    _check_arguments(args)
    out = Path(args.out)
    items = expand_inputs(args.inputs, out)
    check_collisions(items, args.probability)
    items = select_part(items, args.parts, args.part)
    check_out_folder(out)
    args.model = choose_model(args)
    predictor = _load_predictor(args)
    spec = spec_from_predictor(predictor, args)
    if spec.kind == "graph":
        predictor = None  # the workers open theirs from the spec: the same graph bytes everywhere
    identity = _identity(args, spec, items, args.threshold)
    path = manifest_path(out, args.parts, args.part)

    summary: Dict[str, object] = {"out": str(out), "manifest": str(path), **spec.describe(),
                                  "threshold": args.threshold, "cluster": args.cluster,
                                  "part": [args.part, args.parts] if args.parts is not None else None,
                                  "inputs": len(items), "images": sum(i.kind == "image" for i in items),
                                  "videos": sum(i.kind == "video" for i in items)}
    unreadable: List[dict] = []
    failed: List[dict] = []
    workers_memory: Dict[str, float] = {}
    counts = {"done_now": 0, "done_before": 0, "frames": 0, "written": 0}

    with RunManifest.start(path, identity, overwrite=args.overwrite) as manifest:
        todo: List[dict] = []
        for item in items:
            if item.kind == "image":
                chunk = make_chunk(item)
                if manifest.done(chunk["id"]) and all(p.is_file() for p in item.outputs(args.probability)):
                    counts["done_before"] += 1
                else:
                    todo.append(chunk)
                continue
            try:
                store = _video_store(item, spec, identity, manifest.resumed)
            except (UserError, OSError) as err:
                problem = str(err) if str(item.path) in str(err) else f"{item.path}: {err}"
                if args.strict:
                    raise UserError(f"stopped at the first unreadable file (--strict): {problem}") from None
                unreadable.append({"file": str(item.path), "problem": problem})
                manifest.record({"chunk": item.key, "status": "failed", "error": problem})
                continue
            written = set(store.written())
            for start, stop in frame_ranges(len(store), args.chunk_frames):
                chunk = make_chunk(item, start, stop)
                if manifest.done(chunk["id"]) and all(i in written for i in range(start, stop)):
                    counts["done_before"] += 1
                else:
                    todo.append(chunk)

        frames_of = {chunk["id"]: chunk_frames_of(chunk) for chunk in todo}
        image_chunks = {chunk["id"] for chunk in todo if chunk["kind"] == "image"}
        progress = Progress(sum(frames_of.values()), quiet=args.quiet)

        def on_record(record: dict) -> None:
            manifest.record(record)
            if record.get("worker"):
                workers_memory[record["worker"]] = max(workers_memory.get(record["worker"], 0.0),
                                                       float(record.get("peak_rss_mb") or 0.0))
            if record["status"] == "done":
                counts["done_now"] += 1
                counts["frames"] += int(record.get("frames", 0))
                counts["written"] += int(record.get("frames", 0))
                return
            if args.strict:
                raise UserError(f"stopped at the first unreadable file (--strict): {record['error']}")
            if record["chunk"] in image_chunks:
                unreadable.append({"file": record["chunk"], "problem": record["error"]})
            else:
                failed.append({"chunk": record["chunk"], "problem": record["error"]})

        compute_started = time.monotonic()
        try:
            if todo and args.cluster:
                predictor = None
                summary.update(_run_on_ray(args, spec, todo, on_record, progress, frames_of))
            elif todo:
                from napari_polyp.preannotate.worker import ChunkPredictor

                worker = ChunkPredictor(spec, args.threshold, args.probability,
                                        threads=args.threads or physical_cores(), predictor=predictor)
                summary["workers"] = 1
                try:
                    for chunk in todo:
                        on_record(worker.run(chunk, on_frames=progress.update))
                finally:
                    worker.close()
        finally:
            progress.close()
        # the network's time, actors starting included, Ray's own start or join not
        compute_seconds = time.monotonic() - compute_started - float(summary.get("ray_connect_seconds", 0.0))

    summary.update(
        chunks=counts["done_before"] + len(todo), done_now=counts["done_now"], done_before=counts["done_before"], frames=counts["frames"],
        written=counts["written"], seconds=round(time.monotonic() - started, 3),
        compute_seconds=round(compute_seconds, 3),
        frames_per_s=round(counts["frames"] / compute_seconds, 2) if compute_seconds > 0 and counts["frames"] else 0.0,
        peak_rss_mb_per_worker=workers_memory, failed=failed, unreadable=unreadable,
        skipped=[{"file": u["file"], "problem": u["problem"]} for u in unreadable]
        + [{"file": f["chunk"], "problem": f["problem"]} for f in failed])
    _print_summary(summary, as_json=args.json)
    return _report_problems(unreadable, failed)


def _run_on_ray(args, spec, todo, on_record, progress, frames_of) -> dict:
    from napari_polyp.preannotate import on_ray

    started = time.monotonic()
    cluster = on_ray.connect(args.cluster)
    connect_seconds = time.monotonic() - started
    workers = args.workers or max(1, int(cluster["cpus"] // args.cpus_per_worker))
    try:
        def record_and_count(record: dict) -> None:
            on_record(record)
            progress.update(frames_of.get(record["chunk"], 0))

        on_ray.run_chunks(todo, spec, record_and_count, threshold=args.threshold, probability=args.probability,
                          workers=workers, cpus_per_worker=args.cpus_per_worker,
                          gpus_per_worker=args.gpus_per_worker, threads=args.threads)
    finally:
        if cluster["started"]:
            on_ray.shutdown()
    return {"workers": workers, "cluster_cpus": cluster["cpus"], "cluster_nodes": cluster["nodes"],
            "ray_connect_seconds": round(connect_seconds, 3)}


def _print_summary(summary: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(summary))
        return
    from napari_polyp.preannotate.progress import duration

    what = []
    if summary["videos"]:
        what.append(f"{summary['videos']} video(s)")
    if summary["images"]:
        what.append(f"{summary['images']} image(s)")
    rate = f", {summary['frames_per_s']} frames/s" if summary["frames"] else ""
    lines = [f"predicted {' and '.join(what) or 'nothing'} with {summary['model']} ({summary['engine']}"
             + (f", {summary['cluster']}, {summary.get('workers')} workers" if summary["cluster"] else "") + "): "
             f"{summary['done_now']} chunk(s) done now ({summary['frames']:,} frames in "
             f"{duration(summary['compute_seconds'])}{rate})"]
    if summary["done_before"]:
        lines.append(f"{summary['done_before']} chunk(s) done by an earlier run were kept")
    lines.append(f"masks in {summary['out']}; the run manifest is {summary['manifest']}")
    print("\n".join(lines))


def _report_problems(unreadable: List[dict], failed: List[dict]) -> int:
    """Name every file skipped and chunk failed on stderr; 1 when there was any, else 0."""
    from ..io.skipped import report_skipped

    status = report_skipped("predict", [u["problem"] for u in unreadable])
    if failed:
        print(f"napari-polyp predict: {len(failed)} video chunk(s) failed:", file=sys.stderr)
        for entry in failed:
            print(f"  {entry['chunk']}: {entry['problem']}", file=sys.stderr)
        status = 1
    if status:
        print("napari-polyp predict: the rest is done; running the same command again retries only these",
              file=sys.stderr)
    return status
