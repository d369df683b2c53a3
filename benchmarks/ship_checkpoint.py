"""Turn a run's best.pt into the shipped checkpoint models/checkpoints/<name>.pt.

    python benchmarks/ship_checkpoint.py --model microaunet --run runs/microaunet \
        --data ../shared/data/kvasir-seg [--backbone-weights FILE]

1. scores best.pt (float32) on its validation stems with `evaluate` (full resolution);
2. writes a float16 copy and scores it the same way; keeps float16 when validation
   Dice changes by less than 0.001 (else float32);
3. scores the kept copy once more with flip test-time augmentation (``--tta``);
4. records those validation metrics (n, dice, iou, precision, recall; tta_dice, tta_iou)
   in the header, with the shipped network's own profile (params, GFLOPs, CPU latency at one
   thread: the model card shows these, not its default variant's), and refuses files over 25 MB.

    python benchmarks/ship_checkpoint.py --model dino-keys --profile-only [--backbone-weights FILE]

re-measures the profile of the shipped file and rewrites its header, weights and metrics unchanged.

A polyp network is also scored on the other-centre sets beside --data (``etis20``,
``cvc612-seq``; never trained on): ``metrics["other_centres"]``, which the card shows and
``models.default_model`` weighs.

    python benchmarks/ship_checkpoint.py --model dino-keys --other-centres-only --data ../shared/data/kvasir-seg

adds those figures to the shipped file's header, weights and other metrics unchanged.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch

import models
from models.checkpoint import SHIPPED_DIR, load_into, read_checkpoint, save_checkpoint
from napari_polyp.bench import checkpoint_profile
from napari_polyp.training.evaluate import evaluate

MAX_BYTES = 25 * 1024 * 1024
OTHER_CENTRES = {"polyp": ("etis20", "cvc612-seq"), "skin": ()}  # folders beside --data


def other_centre_scores(name: str, data, model) -> dict:
    """{set: {n, dice, iou}} on the task's other-centre sets found beside ``data``."""
    scores = {}
    for folder in OTHER_CENTRES.get(models.base_card(name).task, ()):
        path = Path(data).parent / folder
        if path.is_dir():
            result = evaluate(name, path, model=model)
            scores[folder] = {k: result[k] for k in ("n", "dice", "iou")}
            print(f"{folder}:", json.dumps(scores[folder]), file=sys.stderr)
    return scores


def _model_from(name, header, state, path, backbone_weights):
    # a frozen pretrained backbone is not in the checkpoint: it comes from backbone_weights
    model = models.create_model(name, checkpoint=False, backbone_weights=backbone_weights,
                                pretrained_backbone=bool(header.get("backbone_sha256")),
                                **header.get("variant", {}))
    if header.get("backbone_sha256") and model.backbone_sha256() != header["backbone_sha256"]:
        raise SystemExit(f"the backbone at hand is not the one {path} was trained on")
    load_into(model, state, path, name)
    model.checkpoint_header, model.checkpoint_path = header, str(path)
    return model


def _header_extras(header: dict) -> dict:
    """What a header holds beyond the fields save_checkpoint writes itself (backbone sha256, ...)."""
    return {k: v for k, v in header.items()
            if k not in ("architecture", "variant", "training", "metrics", "sha256", "dtype", "created")}


def _training_size(name: str, header: dict) -> int:
    return int(header.get("training", {}).get("size") or models.base_card(name).input_size)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--run", help="run folder with best.pt")
    parser.add_argument("--data")
    parser.add_argument("--profile-only", action="store_true",
                        help="re-measure the shipped file's profile; weights and metrics unchanged")
    parser.add_argument("--other-centres-only", action="store_true",
                        help="score the shipped file on the other-centre sets beside --data; weights unchanged")
    parser.add_argument("--backbone-weights", default=None)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.profile_only:
        return reprofile(args.model, args.backbone_weights)
    if args.other_centres_only:
        return rescore_other_centres(args.model, args.data, args.backbone_weights)
    if not (args.run and args.data):
        parser.error("--run and --data are needed (or --profile-only)")

    best = Path(args.run) / "best.pt"
    header, state = read_checkpoint(best, expected_architecture=args.model)
    fp32 = evaluate(args.model, args.data, split="val", model=_model_from(args.model, header, state, best,
                                                                          args.backbone_weights))
    print("float32:", json.dumps(fp32), file=sys.stderr)
    keep = _header_extras(header)
    keep["torch"] = str(torch.__version__)
    model = _model_from(args.model, header, state, best, args.backbone_weights)
    with tempfile.TemporaryDirectory() as tmp:
        half_path = Path(tmp) / "half.pt"
        save_checkpoint(model, half_path, architecture=args.model, variant=header.get("variant"),
                        training=header.get("training"), metrics=header.get("metrics"), extra=keep, half=True)
        half = models.create_model(args.model, checkpoint=half_path, backbone_weights=args.backbone_weights)
        fp16 = evaluate(args.model, args.data, split="val", model=half)
    print("float16:", json.dumps(fp16), file=sys.stderr)
    use_half = abs(fp16["dice"] - fp32["dice"]) < 1e-3
    chosen = fp16 if use_half else fp32
    tta = evaluate(args.model, args.data, split="val", model=half if use_half else model, tta=True)
    print("with flip TTA:", json.dumps(tta), file=sys.stderr)
    metrics = {k: chosen[k] for k in ("n", "dice", "iou", "precision", "recall")}
    metrics.update(split="validation", resolution="each image's own size (napari-polyp evaluate)",
                   threshold=0.5, training_time_metrics=header.get("metrics", {}),
                   float32_dice=fp32["dice"], float16_dice=fp16["dice"], tta_dice=tta["dice"], tta_iou=tta["iou"])
    metrics["other_centres"] = other_centre_scores(args.model, args.data, half if use_half else model)
    keep["profile"] = checkpoint_profile(model.float(), _training_size(args.model, header))
    target = SHIPPED_DIR / f"{args.model}.pt"
    save_checkpoint(model, target, architecture=args.model, variant=header.get("variant"),
                    training=header.get("training"), metrics=metrics, extra=keep, half=use_half)
    size = target.stat().st_size
    if size > MAX_BYTES:
        target.unlink()
        raise SystemExit(f"{target} would be {size / 2**20:.1f} MB (> 25 MB): not shipped")
    print(json.dumps({"shipped": str(target), "half": use_half, "bytes": size, **metrics}))
    return 0


def reprofile(name: str, backbone_weights) -> int:
    target = SHIPPED_DIR / f"{name}.pt"
    header, state = read_checkpoint(target, expected_architecture=name)
    model = _model_from(name, header, state, target, backbone_weights)
    keep = _header_extras(header)
    keep["profile"] = checkpoint_profile(model.float(), _training_size(name, header))
    _rewrite(target, model, header, header.get("metrics"), keep)
    print(json.dumps({"reprofiled": str(target), **keep["profile"]}))
    return 0


def rescore_other_centres(name: str, data, backbone_weights) -> int:
    if not data:
        raise SystemExit("--other-centres-only needs --data (the other-centre sets are found beside it)")
    target = SHIPPED_DIR / f"{name}.pt"
    header, state = read_checkpoint(target, expected_architecture=name)
    model = _model_from(name, header, state, target, backbone_weights)
    metrics = dict(header.get("metrics", {}), other_centres=other_centre_scores(name, data, model))
    _rewrite(target, model, header, metrics, _header_extras(header))
    print(json.dumps({"rescored": str(target), "other_centres": metrics["other_centres"]}))
    return 0


def _rewrite(target: Path, model, header: dict, metrics, keep: dict) -> None:
    """Save the very weights again with a new header (refused when their sha256 would change)."""
    fresh = target.with_name(f".{target.name}.rewritten")
    written = save_checkpoint(model, fresh, architecture=target.stem, variant=header.get("variant"),
                              training=header.get("training"), metrics=metrics, extra=keep,
                              half=header.get("dtype") == "float16")
    if written["sha256"] != header["sha256"]:  # the very weights, or nothing is replaced
        fresh.unlink()
        raise SystemExit(f"{target}: re-saving would change the weights' sha256; left as it was")
    fresh.replace(target)


if __name__ == "__main__":
    sys.exit(main())
