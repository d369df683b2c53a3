"""Are synthetic debris lumps hard negatives, and does training on them teach the real ones?

    python benchmarks/debris.py [--checkpoint FILE ...] [--images 24] [--threads 1]

For the shipped EA-DK ("shipped") and each checkpoint given:
- **synthetic**: lumps of ``training/debris.py`` pasted on Kvasir-SEG images (validation stems of
  the shipped checkpoint, at their own size, one seed each): the share of lump pixels called lesion.
  A lump the network already calls background teaches nothing.
- **real**: the shipped network's false blobs at etis20 (the frames where its mask holds no pixel of
  the polyp: a lump of debris or a patch of mucosa taken for it): the mean probability each
  checkpoint gives those blobs (0.5 is the threshold). etis20 is never trained on.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data"


def predictor(checkpoint, threads):
    from napari_polyp.inference import Predictor
    from napari_polyp.training.evaluate import load_model

    return Predictor("ea-dk", model=load_model("ea-dk", None if checkpoint == "shipped" else checkpoint),
                     threads=threads)


def synthetic_scenes(stems, count: int):
    """(image with lumps, lump pixels) on the first ``count`` of the validation ``stems``."""
    from napari_polyp.io import read_image, read_mask
    from napari_polyp.training import data as data_mod
    from napari_polyp.training.debris import paste_debris

    pairs = data_mod.select(data_mod.find_pairs(DATA / "kvasir-seg"), stems)[:count]
    scenes = []
    for seed, pair in enumerate(pairs):
        image, mask = read_image(pair.image), read_mask(pair.mask) > 0
        pasted = paste_debris(image, mask.astype(np.uint8), np.random.default_rng(seed))
        lump = np.abs(pasted.astype(int) - image.astype(int)).sum(axis=2) > 40
        if lump.sum() >= 50:
            scenes.append((pasted, lump))
    return scenes


def false_blobs(shipped):
    """(frame, the shipped network's mask) where that mask holds no pixel of the polyp."""
    from napari_polyp.io import read_image, read_mask
    from napari_polyp.training import data as data_mod

    found = []
    for pair in data_mod.find_pairs(DATA / "etis20"):
        image, truth = read_image(pair.image), read_mask(pair.mask) > 0
        blob = shipped.predict(image).probability > 0.5
        if blob.any() and not (blob & truth).any():
            found.append((pair.stem, image, blob))
    return found


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", action="append", default=[], help="an EA-DK checkpoint (repeat)")
    parser.add_argument("--images", type=int, default=24, help="Kvasir-SEG validation images with lumps")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    shipped = predictor("shipped", args.threads)
    stems = shipped.model.checkpoint_header["training"]["val_stems"]  # the model loaded once
    scenes, blobs = synthetic_scenes(stems, args.images), false_blobs(shipped)
    print(f"{len(scenes)} Kvasir-SEG validation images with lumps; etis20 frames with a false blob: "
          f"{', '.join(stem for stem, _, _ in blobs)}")
    print("\n| checkpoint | synthetic lump pixels called lesion | real false blobs' mean probability |")
    print("|---|---|---|")
    for checkpoint in ["shipped"] + args.checkpoint:
        net = shipped if checkpoint == "shipped" else predictor(checkpoint, args.threads)
        called = np.mean([(net.predict(image).probability[lump] > 0.5).mean() for image, lump in scenes])
        real = np.mean([net.predict(image).probability[blob].mean() for _, image, blob in blobs])
        print(f"| {checkpoint} | {called:.3f} | {real:.3f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
