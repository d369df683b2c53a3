"""Validation Dice beside Dice at other centres, for shipped or candidate checkpoints.

    python benchmarks/generalisation.py --model ea-dk [--checkpoint FILE ...] [--tta] [--second-opinion]
                                        [--threads 1] [--per-image]

For each checkpoint: its Kvasir-SEG (or PH2) validation split (the stems its header records),
``../shared/data/etis20`` and ``../shared/data/cvc612-seq`` (polyp networks; other centres,
never trained on), each image at its own size through ``napari-polyp evaluate`` (``--second-opinion``:
the masks the task's checking network leaves, and the images where it overruled). Prints one
JSON line per checkpoint and set, then a Markdown table. Development figures on small sets
(n = 90, 20, 20): one image of etis20 moves its mean by up to 0.05.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data"
# what each task is validated on, and its other-centre sets
SETS = {"polyp": ("kvasir-seg", ("etis20", "cvc612-seq")), "skin": ("ph2", ())}


def score(model_name: str, checkpoint, tta: bool, threads, data_root: Path, per_image: bool = False,
          second_opinion: bool = False) -> dict:
    import models
    from napari_polyp.training.evaluate import evaluate, load_model

    task = models.base_card(model_name).task
    own, others = SETS[task]
    model = load_model(model_name, checkpoint)
    row = {"model": model_name, "checkpoint": str(checkpoint or models.default_checkpoint(model_name))}
    for name, split in [(own, "val")] + [(o, "all") for o in others]:
        result = evaluate(model_name, data_root / name, split=split, model=model, tta=tta, threads=threads,
                          second_opinion=second_opinion)
        row[name] = {"n": result["n"], "dice": round(result["dice"], 4), "iou": round(result["iou"], 4)}
        if second_opinion:
            row[name]["overruled"] = result["second_opinion_overruled"]
        if per_image and split == "all":  # each frame of the small other-centre sets: which ones fail
            row[name]["per_image"] = {r["stem"]: r["dice"] for r in result["per_image"]}
        print(json.dumps({"model": model_name, "checkpoint": row["checkpoint"], "set": name, "tta": tta,
                          "second_opinion": second_opinion,
                          **row[name]}), flush=True)
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--checkpoint", action="append", default=None,
                        help="checkpoint file (repeat; default: the model's default checkpoint)")
    parser.add_argument("--tta", action="store_true")
    parser.add_argument("--second-opinion", action="store_true",
                        help="the masks as the task's checking network leaves them (inference.second_opinion)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--data-root", default=str(DATA))
    parser.add_argument("--per-image", action="store_true", help="each other-centre frame's Dice in the JSON lines")
    args = parser.parse_args(argv)
    rows = [score(args.model, c, args.tta, args.threads, Path(args.data_root), args.per_image, args.second_opinion)
            for c in (args.checkpoint or [None])]
    sets = [k for k in rows[0] if k not in ("model", "checkpoint")]
    print("\n| checkpoint | " + " | ".join(f"{s} Dice (n={rows[0][s]['n']})" for s in sets) + " |")
    print("|---|" + "---|" * len(sets))
    for row in rows:
        print(f"| {Path(row['checkpoint']).name} | " + " | ".join(f"{row[s]['dice']:.3f}" for s in sets) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
