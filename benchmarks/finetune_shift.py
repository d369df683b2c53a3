"""Dice gain per 10 corrections on a shifted set: MicroAUNet trained on Kvasir-SEG, fine-tuned
on 10/20/40 images altered by a strong colour + blur shift, scored on other shifted images.

The shift (fixed, deterministic): red and blue channels swapped, gamma 0.6, Gaussian blur
sigma 2.5 px -- a different endoscope/light source and a defocused lens. The pool is the
seeded 10 % validation split of Kvasir-SEG (never trained on by the shipped checkpoint):
its last ``--eval`` images (sorted by stem) are the test images, the first 10/20/40 the
"corrections" (their reference masks, as a user would correct them). Each run starts
from the shipped checkpoint (``--epochs`` epochs, preset lr / 10, no validation split, all
items trained on) and is scored with ``evaluate`` on the shifted test images and, to show
forgetting, on the same images unshifted.

    OMP_NUM_THREADS=1 python benchmarks/finetune_shift.py --counts 10,20,40 --epochs 30 --threads 1
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def shift(image: np.ndarray) -> np.ndarray:
    """The colour + blur shift (see the module docstring)."""
    import cv2

    shifted = image[..., ::-1].astype(np.float32) / 255.0  # red <-> blue
    shifted = np.power(shifted, 0.6)
    shifted = cv2.GaussianBlur(shifted, (0, 0), 2.5)
    return np.clip(shifted * 255.0 + 0.5, 0, 255).astype(np.uint8)


def write_folder(pairs, folder: Path, shifted: bool) -> Path:
    from PIL import Image

    from napari_polyp.io import read_image

    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(parents=True, exist_ok=True)
    for p in pairs:
        image = read_image(p.image)
        Image.fromarray(shift(image) if shifted else image).save(folder / "images" / f"{p.stem}.png")
        os.symlink(p.mask, folder / "masks" / p.mask.name)
    return folder


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "kvasir-seg"))
    parser.add_argument("--counts", default="10,20,40")
    parser.add_argument("--eval", type=int, default=40, help="shifted test images")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)

    home = tempfile.mkdtemp(prefix="finetune-shift-")
    os.environ["NAPARI_POLYP_HOME"] = home  # the user's preferred checkpoints stay untouched
    import torch

    import models
    from napari_polyp.training.data import find_pairs, select, split_stems
    from napari_polyp.training.evaluate import evaluate
    from napari_polyp.training.presets import get_preset
    from napari_polyp.training.trainer import TrainConfig, train

    torch.set_num_threads(args.threads)
    start = models.default_checkpoint("microaunet")
    counts = [int(c) for c in args.counts.split(",")]
    pairs = find_pairs(args.data)
    _, pool_stems = split_stems([p.stem for p in pairs], 0.1, 0)
    pool = select(pairs, pool_stems)
    test, corrections = pool[-args.eval:], pool[:-args.eval]
    if max(counts) > len(corrections):
        raise SystemExit(f"only {len(corrections)} pool images are left for corrections")
    work = Path(home)
    test_shifted = write_folder(test, work / "test-shifted", True)
    test_plain = write_folder(test, work / "test-plain", False)

    def scores(checkpoint) -> tuple:
        return (evaluate("microaunet", test_shifted, checkpoint=checkpoint, device="cpu")["dice"],
                evaluate("microaunet", test_plain, checkpoint=checkpoint, device="cpu")["dice"])

    base_shifted, base_plain = scores(start)
    rows = []
    for count in counts:
        began = time.perf_counter()
        data = write_folder(corrections[:count], work / f"corrections-{count}", True)
        config = TrainConfig(model="microaunet", data=str(data), out=str(work / f"run-{count}"), epochs=args.epochs,
                             size=args.size, lr=get_preset("microaunet").lr / 10, init_checkpoint=str(start),
                             val_stems=[], num_threads=args.threads, device="cpu", command=f"finetune_shift {count}")
        train(config)
        shifted, plain = scores(work / f"run-{count}" / "last.pt")
        rows.append((count, shifted, plain, time.perf_counter() - began))
        print(f"{count} corrections: {rows[-1][-1]:.0f} s", file=sys.stderr)

    print("| corrections | Dice shifted (start → after) | gain | gain per 10 corrections | Dice unshifted "
          "(start → after) | train + eval s |")
    print("|---|---|---|---|---|---|")
    for count, shifted, plain, seconds in rows:
        gain = shifted - base_shifted
        print(f"| {count} | {base_shifted:.4f} → {shifted:.4f} | {gain:+.4f} | {gain * 10 / count:+.4f} | "
              f"{base_plain:.4f} → {plain:.4f} | {seconds:.0f} |")
    print(f"\n{len(test)} shifted test images (Kvasir-SEG validation split); {args.epochs} epochs at {args.size} px "
          f"from {start.name}; {args.threads} thread(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
