"""Refine from strokes vs a plain brush: Dice after each round of a simulated annotator.

On N validation images (the seeded 10 % split the shipped checkpoints were validated on,
``split_stems(stems, 0.1, 0)``), each network's prediction (threshold 0.5) is corrected
by a simulated annotator who, each round, looks at the current mask and puts one stroke
in the largest false-negative region and one in the largest false-positive region (a
disc of ``--radius`` px at the point deepest inside the region; an error region smaller
than ``--min-area`` px gets none), for up to 5 rounds. The same strokes are used

- by the plain brush: the disc is painted into the mask (foreground or background);
- by refine (GrabCut and random walker): all strokes so far are the hard constraints,
  the network's probability the prior (``napari_polyp.corrections.refine``).

Prints a Markdown table: mean Dice per round (round 0 = the network alone), and the
median/p95 refine time per call at the images' own size (Kvasir-SEG: mostly 622x530).

    OMP_NUM_THREADS=1 python benchmarks/refine_strokes.py --images 50 --threads 1
    python benchmarks/refine_strokes.py --data ../shared/data/ph2 --models eam-net
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

METHODS = ("brush", "grabcut", "random_walker")


def deepest_point(region: np.ndarray):
    from scipy import ndimage as ndi

    distance = ndi.distance_transform_edt(np.pad(region, 1))[1:-1, 1:-1]
    return np.unravel_index(int(np.argmax(distance)), region.shape)


def largest_component(region: np.ndarray) -> np.ndarray:
    from scipy import ndimage as ndi

    labels, count = ndi.label(region, structure=np.ones((3, 3), bool))
    if count == 0:
        return region
    sizes = np.bincount(labels.ravel())[1:]
    return labels == (int(np.argmax(sizes)) + 1)


def disc(shape, center, radius):
    rows, cols = np.ogrid[:shape[0], :shape[1]]
    return (rows - center[0]) ** 2 + (cols - center[1]) ** 2 <= radius ** 2


def next_strokes(mask, truth, radius, min_area):
    """The simulated annotator's strokes for this round: [(label, disc)]."""
    from napari_polyp.corrections.refine import BACKGROUND, FOREGROUND

    strokes = []
    for label, error in ((FOREGROUND, truth & ~mask), (BACKGROUND, mask & ~truth)):
        region = largest_component(error)
        if region.sum() >= min_area:
            strokes.append((label, disc(mask.shape, deepest_point(region), radius)))
    return strokes


def run_image(image, probability, truth, rounds, radius, min_area, methods, times):
    """Dice per round for each method on one image."""
    from napari_polyp.corrections.metrics import dice_iou
    from napari_polyp.corrections.refine import FOREGROUND, refine

    start = probability >= 0.5
    out = {}
    for method in methods:
        mask, labels = start.copy(), np.zeros(truth.shape, np.uint8)
        dice = [dice_iou(mask, truth)[0]]
        for _ in range(rounds):
            strokes = next_strokes(mask, truth, radius, min_area)
            if strokes:
                for label, where in strokes:
                    labels[where] = label  # a later stroke paints over an earlier one, as in a Labels layer
                    if method == "brush":
                        mask[where] = label == FOREGROUND
                if method != "brush":
                    began = time.perf_counter()
                    mask = refine(image, probability, labels, method=method).astype(bool)
                    times.setdefault(method, []).append(time.perf_counter() - began)
            dice.append(dice_iou(mask, truth)[0])
        out[method] = dice
    return out


def predictions(name, pairs, cache_dir: Path):
    """Probability maps of ``pairs`` by network ``name`` (cached as float16 .npz)."""
    from napari_polyp.inference import Predictor
    from napari_polyp.io import read_image

    cache = cache_dir / f"{name}-{len(pairs)}-{pairs[0].stem[:8]}-{pairs[-1].stem[:8]}.npz"
    if cache.is_file():
        with np.load(cache) as saved:
            return [saved[p.stem].astype(np.float32) for p in pairs]
    predictor = Predictor(name, device="cpu")
    maps = [predictor.predict(read_image(p.image)).probability for p in pairs]
    cache_dir.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(cache, **{p.stem: m.astype(np.float16) for p, m in zip(pairs, maps)})
    return maps


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "kvasir-seg"))
    parser.add_argument("--models", default="microaunet,dino-keys")
    parser.add_argument("--images", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--radius", type=int, default=10, help="stroke/brush disc radius in px")
    parser.add_argument("--min-area", type=int, default=50, help="smaller error regions get no stroke")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cache", default=str(Path.home() / ".cache" / "napari-polyp" / "bench-refine"))
    args = parser.parse_args(argv)

    import torch

    from napari_polyp.io import read_image, read_mask
    from napari_polyp.training.data import find_pairs, select, split_stems

    torch.set_num_threads(args.threads)
    pairs = find_pairs(args.data)
    _, val = split_stems([p.stem for p in pairs], 0.1, 0)
    pairs = select(pairs, val[:args.images])
    methods = args.methods.split(",")
    images = [read_image(p.image) for p in pairs]
    truths = [read_mask(p.mask).astype(bool) for p in pairs]
    rows = []
    for name in args.models.split(","):
        maps = predictions(name, pairs, Path(args.cache))
        per_method = {m: [] for m in methods}
        times: dict = {}
        began = time.perf_counter()
        for image, probability, truth in zip(images, maps, truths):
            for method, dice in run_image(image, probability, truth, args.rounds, args.radius, args.min_area,
                                          methods, times).items():
                per_method[method].append(dice)
        print(f"{name}: {len(pairs)} images in {time.perf_counter() - began:.0f} s", file=sys.stderr)
        for method in methods:
            mean = np.mean(np.asarray(per_method[method]), axis=0)
            spent = np.asarray(times.get(method, [np.nan])) * 1000
            rows.append((name, method, mean, np.median(spent), np.percentile(spent, 95), len(times.get(method, []))))
    header = "| network | method | " + " | ".join(f"round {r}" for r in range(args.rounds + 1)) + \
             " | refine ms median | p95 | calls |"
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for name, method, mean, median, p95, calls in rows:
        timing = "– | – | –" if method == "brush" else f"{median:.0f} | {p95:.0f} | {calls}"
        print(f"| {name} | {method} | " + " | ".join(f"{d:.3f}" for d in mean) + f" | {timing} |")
    print(f"\n{len(pairs)} validation images of {args.data}; strokes: discs of radius {args.radius} px, "
          f"error regions under {args.min_area} px get none; {args.threads} torch thread(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
