"""`napari-polyp predict`: segment image files, folders or videos into mask PNGs.

    napari-polyp predict --model microaunet IMG.jpg FOLDER/ clip.mp4 --out masks/
    napari-polyp predict --task dermoscopy IMD002.bmp --out masks/   # the task's best network

Writes ``<out>/<stem>.png`` (0/255) per image and ``<out>/<video stem>/<frame:06d>.png``
per video frame; ``--probability`` also writes the probability map as 8-bit PNG
(``<stem>_prob.png``). Uses the same Predictor (pre/post-processing) as the app.

Two inputs that would write the same output file (``d1/a.png`` and ``d2/a.png``) are
refused before anything runs. A file that cannot be read is skipped and reported at
the end (exit status 1); ``--strict`` stops at the first one instead.
"""
from __future__ import annotations

import json
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Tuple


def add_arguments(parser) -> None:
    parser.add_argument("inputs", nargs="+", help="image files, folders of images, or video files")
    import models

    parser.add_argument("--model", default=None,
                        help="network name (default: the best trained network for --task)")
    parser.add_argument("--task", default=None, choices=tuple(models.TASKS),
                        help="what the images show (default colonoscopy): picks the network when --model "
                             "is not given, and warns when --model was made for another task")
    parser.add_argument("--checkpoint", default=None, help="checkpoint (default: the model's default one)")
    parser.add_argument("--out", required=True, help="output folder for mask PNGs")
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument("--probability", action="store_true", help="also write probability maps")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--backbone-weights", default=None)
    parser.add_argument("--allow-untrained", action="store_true", help="run a network that has no checkpoint")
    parser.add_argument("--strict", action="store_true", help="stop at the first file that cannot be read")
    parser.add_argument("--tta", action="store_true",
                        help="flip test-time augmentation: average over the image and its mirror images (3× slower)")
    from napari_polyp.engine import add_arguments as add_engine_arguments

    add_engine_arguments(parser)
    parser.add_argument("--quiet", action="store_true")


@dataclass(frozen=True)
class Job:
    kind: str  # "image" | "video"
    path: Path
    target: Path  # <out>/<stem> for an image, <out>/<video stem>/ for a video's frames


def expand_inputs(inputs) -> List[Tuple[str, Path]]:
    """[("image"|"video", path)] in the order given; folders expand to their images;
    a file named twice is kept once."""
    from napari_polyp.errors import UserError
    from napari_polyp.io.images import list_images
    from napari_polyp.io.video import is_video_path

    items: List[Tuple[str, Path]] = []
    for raw in inputs:
        path = Path(raw)
        if path.is_dir():
            images = list_images(path)
            if not images:
                raise UserError(f"{path}: no image files in this folder")
            items.extend(("image", p) for p in images)
        elif path.is_file():
            items.append(("video" if is_video_path(path) else "image", path))
        else:
            raise UserError(f"{path}: no such file or folder")
    seen, unique = set(), []
    for kind, path in items:
        if path.resolve() not in seen:
            seen.add(path.resolve())
            unique.append((kind, path))
    return unique


def plan_jobs(items: List[Tuple[str, Path]], out: Path, probability: bool) -> List[Job]:
    """One job per input, each with its own output; refuses inputs whose outputs would collide."""
    from napari_polyp.errors import UserError

    jobs = [Job(kind, path, out / path.stem) for kind, path in items]
    writers: Dict[Path, List[Path]] = defaultdict(list)
    for job in jobs:
        for output in _outputs(job, probability):
            writers[output].append(job.path)
    clashes = {output: paths for output, paths in writers.items() if len(paths) > 1}
    if clashes:
        lines = [f"  {' and '.join(str(p) for p in paths)} would both write {output}"
                 for output, paths in sorted(clashes.items())[:10]]
        more = f"\n  ... and {len(clashes) - 10} more" if len(clashes) > 10 else ""
        raise UserError("inputs with the same file name would overwrite each other's masks:\n"
                        + "\n".join(lines) + more
                        + "\nrename them, or run them one at a time with different --out folders")
    return jobs


def _outputs(job: Job, probability: bool) -> List[Path]:
    """The files (or, for a video, the folder) a job writes, as collision keys."""
    if job.kind == "video":
        return [job.target]
    outputs = [job.target.parent / f"{job.target.name}.png"]
    if probability:
        outputs.append(job.target.parent / f"{job.target.name}_prob.png")
    return outputs


def check_out_folder(out: Path) -> None:
    from napari_polyp.errors import UserError

    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; give a folder for the mask PNGs")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"--out {out}: cannot create this folder ({err.strerror or err})") from None


def _frames(path: Path) -> Iterator:
    from napari_polyp.io.video import VideoFrames

    frames = VideoFrames(path)
    for i in range(len(frames)):
        yield frames[i]


def _write_png(path: Path, array) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _load_predictor(args):
    import models
    from napari_polyp.errors import UserError
    from napari_polyp.inference import Predictor

    if args.checkpoint is None and models.default_checkpoint(args.model) is None and not args.allow_untrained:
        raise UserError(f"{args.model} has no trained checkpoint: predictions would not be meaningful "
                        "(pass --checkpoint, or --allow-untrained)")
    if not args.backbone_weights:  # (another backbone file means another network: build it)
        from napari_polyp.prediction import served_if_on_cpu

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


def run(args) -> int:
    import numpy as np
    from tqdm import tqdm

    from napari_polyp.errors import UserError
    from napari_polyp.io.images import read_image

    from .batch import report_skipped

    out = Path(args.out)
    jobs = plan_jobs(expand_inputs(args.inputs), out, args.probability)
    check_out_folder(out)
    args.model = choose_model(args)
    predictor = _load_predictor(args)
    written = 0
    skipped: List[Tuple[Path, str]] = []

    def save(prediction, target: Path) -> None:
        nonlocal written
        _write_png(target.parent / f"{target.name}.png", prediction.mask(args.threshold) * np.uint8(255))
        if args.probability:
            _write_png(target.parent / f"{target.name}_prob.png",
                       (prediction.probability * 255).round().astype(np.uint8))
        written += 1

    for job in tqdm(jobs, desc="predicting", unit="file", disable=args.quiet, file=sys.stderr):
        try:
            if job.kind == "image":
                save(predictor.predict(read_image(job.path)), job.target)
            else:
                for index, prediction in enumerate(predictor.predict_frames(_frames(job.path))):
                    save(prediction, job.target / f"{index:06d}")
        except (UserError, OSError) as err:
            if args.strict:
                raise UserError(f"stopped at the first unreadable file (--strict): {_problem(job.path, err)}") from None
            skipped.append((job.path, _problem(job.path, err)))
    print(json.dumps({"written": written, "skipped": [{"file": str(p), "problem": m} for p, m in skipped],
                      "out": str(out), "model": args.model, "checkpoint_sha256": predictor.checkpoint_sha256}))
    return report_skipped("predict", [problem for _, problem in skipped])


def _problem(path: Path, err: Exception) -> str:
    text = str(err)
    return text if str(path) in text else f"{path}: {text}"
