"""Does the uncertainty-ranked queue pick better items to correct? Fine-tune MicroAUNet on the
20 most uncertain vs 20 random items of a held-out pool, and score both on the rest.

The pool is the seeded 10 % validation split of Kvasir-SEG (``split_stems(stems, 0.1, 0)``),
which the shipped checkpoints never trained on. Each pool image is scored with
``napari_polyp.corrections.ranking.uncertainty`` from the shipped MicroAUNet's probability
(plus its disagreement with ``--second`` when given). The 20 most uncertain items, and 20
random ones per ``--seeds``, become a folder of reference masks (the corrections a user
would make); MicroAUNet is fine-tuned from the shipped checkpoint on all 20 (``TrainConfig``
with no validation items, ``--epochs`` epochs at the preset's lr / 10, 1 thread), and
``evaluate`` scores the start and the result on the pool minus both selections (the same
images for the pair), at the images' own size.

    OMP_NUM_THREADS=1 python benchmarks/rank_for_finetune.py --epochs 30 --seeds 0,1,2 --threads 1

Runs in a temporary NAPARI_POLYP_HOME, so the user's preferred checkpoints are untouched.
"""
from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def link_folder(pairs, folder: Path) -> Path:
    """images/ + masks/ of ``pairs`` as symbolic links (a plain folder of reference masks)."""
    for sub in ("images", "masks"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for p in pairs:
        os.symlink(p.image, folder / "images" / p.image.name)
        os.symlink(p.mask, folder / "masks" / p.mask.name)
    return folder


def fine_tune(pairs, work: Path, name: str, start: Path, epochs: int, threads: int, size: int) -> Path:
    from napari_polyp.training.presets import get_preset
    from napari_polyp.training.trainer import TrainConfig, train

    data = link_folder(pairs, work / f"data-{name}")
    config = TrainConfig(model="microaunet", data=str(data), out=str(work / f"run-{name}"), epochs=epochs,
                         size=size, lr=get_preset("microaunet").lr / 10, init_checkpoint=str(start),
                         val_stems=[], num_threads=threads, device="cpu", command=f"rank_for_finetune {name}")
    train(config)
    return work / f"run-{name}" / "last.pt"


def dice_on(pairs, checkpoint: Path, work: Path, name: str) -> float:
    from napari_polyp.training.evaluate import evaluate

    data = link_folder(pairs, work / f"eval-{name}")
    return evaluate("microaunet", data, checkpoint=checkpoint, device="cpu")["dice"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "kvasir-seg"))
    parser.add_argument("--count", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--seeds", default="0,1,2", help="random selections to compare with")
    parser.add_argument("--second", default="", help="a second network for the disagreement term (e.g. dino-keys)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)

    home = tempfile.mkdtemp(prefix="rank-for-finetune-")
    os.environ["NAPARI_POLYP_HOME"] = home  # before models is imported: preferred checkpoints stay untouched
    import torch

    import models
    from napari_polyp.corrections.ranking import most_uncertain_first, uncertainty
    from napari_polyp.inference import Predictor
    from napari_polyp.io import read_image
    from napari_polyp.training.data import find_pairs, select, split_stems

    torch.set_num_threads(args.threads)
    start = models.default_checkpoint("microaunet")
    pairs = find_pairs(args.data)
    _, pool_stems = split_stems([p.stem for p in pairs], 0.1, 0)
    pool = select(pairs, pool_stems)
    began = time.perf_counter()
    first = Predictor("microaunet", checkpoint=start, device="cpu")
    second = Predictor(args.second, device="cpu") if args.second else None
    scores = {}
    for p in pool:
        image = read_image(p.image)
        other = second.predict(image).probability if second else None
        scores[p.stem] = uncertainty(first.predict(image).probability, other)
    ranked = most_uncertain_first(scores)
    chosen = {"uncertain": ranked[:args.count]}
    for seed in [int(s) for s in args.seeds.split(",") if s.strip()]:
        chosen[f"random-{seed}"] = sorted(random.Random(seed).sample(pool_stems, args.count))
    print(f"scored {len(pool)} pool images in {time.perf_counter() - began:.0f} s", file=sys.stderr)

    work = Path(home) / "work"
    after = {}
    for name, stems in chosen.items():
        began = time.perf_counter()
        after[name] = fine_tune(select(pool, stems), work, name, start, args.epochs, args.threads, args.size)
        print(f"fine-tuned on {name} in {time.perf_counter() - began:.0f} s", file=sys.stderr)

    print(f"| selection | mean score of the {args.count} | evaluated on | Dice start | Dice after | gain |")
    print("|---|---|---|---|---|---|")
    uncertain = set(chosen["uncertain"])
    for name, stems in chosen.items():
        if name == "uncertain":
            continue
        rest = [p for p in pool if p.stem not in uncertain | set(stems)]
        base = dice_on(rest, start, work, f"{name}-start")
        for label, picked in (("uncertain", chosen["uncertain"]), (name, stems)):
            dice = dice_on(rest, after[label], work, f"{name}-{label}")
            mean_score = np.mean([scores[s].score for s in picked])
            print(f"| {label} (vs {name}) | {mean_score:.4f} | {len(rest)} images | {base:.4f} | {dice:.4f} | "
                  f"{dice - base:+.4f} |")
    print(f"\npool: {len(pool)} Kvasir-SEG validation images; {args.count} items each; {args.epochs} epochs at "
          f"{args.size} px from {start.name}; score = band entropy"
          + (f" + disagreement with {args.second}" if args.second else "") + f"; {args.threads} thread(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
