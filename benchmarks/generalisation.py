"""Validation Dice beside Dice at other centres, for shipped or candidate checkpoints.

    python benchmarks/generalisation.py --model ea-dk [--checkpoint FILE ...] [--tta] [--second-opinion]
                                        [--threads 1] [--per-image]

For each checkpoint: its Kvasir-SEG (or PH2) validation split (the stems its header records),
``../shared/data/etis20`` and ``../shared/data/cvc612-seq`` (polyp networks; other centres,
never trained on), each image at its own size through ``napari-polyp evaluate`` (``--second-opinion``:
the masks the task's checking network leaves, and the images where it overruled). Prints one
JSON line per checkpoint and set, then a Markdown table: each mean with its 95 % bootstrap
interval over the images (at the other centres also over their scenes, whole runs of alike
frames resampled: etis20 is four scenes, cvc612-seq one, which gives no interval), and from the
second checkpoint on, its change from the first on the same images (paired interval;
``training.intervals``). Development figures on small sets (n = 90, 20, 20): one image of etis20
moves its mean by up to 0.05.
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
    from napari_polyp.training.intervals import mean_interval

    task = models.base_card(model_name).task
    own, others = SETS[task]
    model = load_model(model_name, checkpoint)
    row = {"model": model_name, "checkpoint": str(checkpoint or models.default_checkpoint(model_name))}
    for name, split in [(own, "val")] + [(o, "all") for o in others]:
        result = evaluate(model_name, data_root / name, split=split, model=model, tta=tta, threads=threads,
                          second_opinion=second_opinion)
        dices = {r["stem"]: r["dice"] for r in result["per_image"]}
        row[name] = {"n": result["n"], "dice": round(result["dice"], 4), "iou": round(result["iou"], 4),
                     "interval": mean_interval(list(dices.values())).as_dict()}
        if split == "all":  # another centre's frames come in scenes: the interval of its scenes too
            scenes = scenes_of(data_root / name, list(dices))
            row[name]["scenes"] = scenes
            row[name]["scene_interval"] = mean_interval(list(dices.values()), groups=scenes).as_dict()
        if second_opinion:
            row[name]["overruled"] = result["second_opinion_overruled"]
        shown = dict(row[name], per_image=dices) if per_image and split == "all" else row[name]
        print(json.dumps({"model": model_name, "checkpoint": row["checkpoint"], "set": name, "tta": tta,
                          "second_opinion": second_opinion, **shown}), flush=True)
        row[name]["per_image"] = dices  # for the paired change against the first checkpoint
    return row


def scenes_of(folder: Path, stems) -> list:
    """A scene number for each of ``stems`` (``training.intervals.scene_groups``)."""
    from napari_polyp.io import read_image
    from napari_polyp.training import data as data_mod
    from napari_polyp.training.intervals import scene_groups

    image_of = {p.stem: p.image for p in data_mod.find_pairs(folder)}
    return scene_groups(stems, [read_image(image_of[stem]) for stem in stems])


def markdown_table(rows) -> str:
    """One row per checkpoint: each set's Dice with its interval; from the second checkpoint on,
    the change from the first on the same images with its paired interval."""
    from napari_polyp.training.intervals import Interval, paired_interval

    sets = [k for k in rows[0] if k not in ("model", "checkpoint")]
    lines = ["| checkpoint | " + " | ".join(f"{s} Dice (n={rows[0][s]['n']}), 95 % interval" for s in sets) + " |",
             "|---|" + "---|" * len(sets)]
    for index, row in enumerate(rows):
        cells = []
        for s in sets:
            cell = Interval.from_dict(row[s]["interval"]).format()
            if "scene_interval" in row[s]:
                scenes = Interval.from_dict(row[s]["scene_interval"])
                cell += (f", over {scenes.groups} scenes [{scenes.low:.3f}, {scenes.high:.3f}]" if scenes.groups > 1
                         else ", one scene: no interval over scenes")
            if index:
                first, this = rows[0][s]["per_image"], row[s]["per_image"]
                stems = sorted(first.keys() & this.keys())
                change = paired_interval([first[k] for k in stems], [this[k] for k in stems])
                cell += f"; change {change.format(signed=True)}"
            cells.append(cell)
        lines.append(f"| {Path(row['checkpoint']).name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


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
    print("\n" + markdown_table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
