"""`napari-polyp predict`: segment image files, folders or videos into mask PNGs.

    napari-polyp predict --model microaunet IMG.jpg FOLDER/ clip.mp4 --out masks/

Writes ``<out>/<stem>.png`` (0/255) per image and ``<out>/<video stem>/<frame:06d>.png``
per video frame; ``--probability`` also writes the probability map as 8-bit PNG
(``<stem>_prob.png``). Uses the same Predictor (pre/post-processing) as the app.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Iterator, List, Tuple


def add_arguments(parser) -> None:
    parser.add_argument("inputs", nargs="+", help="image files, folders of images, or video files")
    parser.add_argument("--model", required=True, help="network name")
    parser.add_argument("--checkpoint", default=None, help="checkpoint (default: the model's default one)")
    parser.add_argument("--out", required=True, help="output folder for mask PNGs")
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument("--probability", action="store_true", help="also write probability maps")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--backbone-weights", default=None)
    parser.add_argument("--allow-untrained", action="store_true", help="run a network that has no checkpoint")
    parser.add_argument("--quiet", action="store_true")


def _is_video(path: Path) -> bool:
    try:
        from napari_polyp.io.video import is_video_path
    except ImportError:
        return path.suffix.lower() in (".mp4", ".avi", ".mov", ".mkv")
    return is_video_path(path)


def _list_images(folder: Path) -> List[Path]:
    try:
        from napari_polyp.io.images import list_images
    except ImportError:
        from napari_polyp.training.data import IMAGE_SUFFIXES

        return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    return list_images(folder)


def expand_inputs(inputs) -> List[Tuple[str, Path]]:
    """[("image"|"video", path)] in the order given; folders expand to their images."""
    from napari_polyp.errors import UserError

    items: List[Tuple[str, Path]] = []
    for raw in inputs:
        path = Path(raw)
        if path.is_dir():
            images = _list_images(path)
            if not images:
                raise UserError(f"{path}: no image files in this folder")
            items.extend(("image", p) for p in images)
        elif path.is_file():
            items.append(("video" if _is_video(path) else "image", path))
        else:
            raise FileNotFoundError(f"{path} does not exist")
    return items


def _frames(path: Path) -> Iterator:
    from napari_polyp.io.video import VideoFrames

    frames = VideoFrames(path)
    for i in range(len(frames)):
        yield frames[i]


def _write_png(path: Path, array) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def run(args) -> int:
    import numpy as np

    from napari_polyp.errors import UserError
    from napari_polyp.inference import Predictor
    from napari_polyp.training.data import read_rgb
    from tqdm import tqdm

    import models

    items = expand_inputs(args.inputs)
    checkpoint = args.checkpoint
    if checkpoint is None and models.default_checkpoint(args.model) is None and not args.allow_untrained:
        raise UserError(f"{args.model} has no trained checkpoint: predictions would not be meaningful "
                        "(pass --checkpoint, or --allow-untrained)")
    model = models.create_model(args.model, checkpoint=checkpoint if checkpoint else None,
                                backbone_weights=args.backbone_weights)
    predictor = Predictor(args.model, device=args.device, model=model)
    out = Path(args.out)
    written = 0

    def save(prediction, target: Path) -> None:
        nonlocal written
        _write_png(target.parent / f"{target.name}.png", prediction.mask(args.threshold) * np.uint8(255))
        if args.probability:
            _write_png(target.parent / f"{target.name}_prob.png",
                       (prediction.probability * 255).round().astype(np.uint8))
        written += 1

    for kind, path in tqdm(items, desc="predicting", unit="file", disable=args.quiet, file=sys.stderr):
        if kind == "image":
            save(predictor.predict(read_rgb(path)), out / path.stem)
        else:
            for index, prediction in enumerate(predictor.predict_frames(_frames(path))):
                save(prediction, out / path.stem / f"{index:06d}")
    print(json.dumps({"written": written, "out": str(out), "model": args.model,
                      "checkpoint_sha256": predictor.checkpoint_sha256}))
    return 0
