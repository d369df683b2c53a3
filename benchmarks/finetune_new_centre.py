"""Does fine-tuning on a few corrections adapt the default network to a new centre? Dice gain on
the images *not* corrected, per 10 corrections.

Three sets, each cut into "corrections" (their reference masks, as a clinic would correct them)
and held-out images scored before and after (mean per-image Dice at the training size, the
measure ``finetune`` validates with):

- ``etis20``: ETIS-Larib frames 1-20 (another centre and scope): four polyps, each in consecutive
  frames (1-6, 7-12, 13-18, 19-20). Frames 1-12 are the corrections and 13-20 are scored, then
  the other way round (8 corrections, 12 scored); both directions are pooled (each image scored
  once) and no scored frame shows a polyp the fine-tune saw.
- ``cvc612``: 20 consecutive frames of one polyp (CVC-ClinicDB). The same halves: the first
  part of the sequence teaches, the rest is scored, and back.
- ``shift``: the start checkpoint's own Kvasir-SEG validation split (never trained on) under a
  strong colour + blur shift (``finetune_shift.shift``: red/blue swapped, gamma 0.6, blur 2.5 px,
  applied at full size): the first ``--shift-counts`` images are the corrections, the last 40
  are scored (shifted; the same 40 unshifted show forgetting).

Forgetting on etis20/cvc612: the anchor of ``finetune`` (24 of the start checkpoint's Kvasir
validation images, unshifted), scored before and after. Every fine-tune starts from the default
checkpoint and is thrown away; these sets never train a shipped network. The runs live in a
temporary NAPARI_POLYP_HOME, so the user's preferred checkpoints are untouched.

A variant is ``RECIPE[:key=value,...]`` with RECIPE ``adapt`` (training.finetune.RECIPE) or ``preset``
(the old fine-tune: the network's training preset at lr / 10; ``preset`` alone also keeps the
old default length, 5 epochs) and keys lr, steps, epochs, batch, optimizer, weight_decay, warmup,
augment, replay (a share; 0 = none), bn (frozen | train), blend (WiSE-FT share), train (all | head),
pull (L2-SP: the share of the way back to the start each step takes at the peak learning rate).

    OMP_NUM_THREADS=1 python benchmarks/finetune_new_centre.py --size 256 --threads 1 \\
        --variants "preset;adapt;adapt:bn=train;adapt:replay=0" --sets etis20,cvc612
    OMP_NUM_THREADS=1 python benchmarks/finetune_new_centre.py --size 352 --threads 1 --variants adapt \\
        --sets etis20,cvc612,shift --claim

``--claim`` runs ``finetune`` itself (cross-validated on the corrections) instead of the bare recipe,
so each row also shows the claim a clinic would see; its final checkpoint is the one scored.
``--out FILE.jsonl`` appends one line per fine-tune (the tables are printed at the end; ``--table
FILE.jsonl`` prints them again, for rows of several runs).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

SHARED = ROOT.parent / "shared" / "data"
# etis20 holds four polyps, each seen in consecutive frames (by eye: 1-6, 7-12, 13-18, 19-20); a cut
# inside one would score frames of a polyp the fine-tune saw. Frames 1-12 (two polyps) against 13-20.
ETIS_CUT = 12
KEYS = {"lr": float, "steps": int, "epochs": int, "batch": int, "optimizer": str, "weight_decay": float,
        "warmup": int, "augment": str, "replay": float, "bn": str, "blend": float, "train": str, "pull": float}


def parse_variant(spec: str):
    """"adapt:lr=3e-4,bn=train" -> (recipe, {overrides}, steps or None, epochs or None)."""
    from napari_polyp.training.finetune import recipe_for

    base, _, rest = spec.partition(":")
    values = {}
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        if key not in KEYS:
            raise SystemExit(f"unknown variant key {key!r} in {spec!r}; keys: {', '.join(KEYS)}")
        values[key] = KEYS[key](value)
    steps, epochs = values.pop("steps", None), values.pop("epochs", None)
    if "bn" in values:
        values["freeze_bn"] = values.pop("bn") == "frozen"
    if base == "preset" and steps is None and epochs is None:
        epochs = 5  # the old default length
    recipe = recipe_for("ea-dk", base, **values)
    return recipe, values, steps, epochs


def arrays_of(pairs, size: int, transform=None):
    """PairArrays at ``size``; ``transform`` applied to each image at its full size first."""
    from napari_polyp.io import read_image, read_mask
    from napari_polyp.training.data import PairArrays, resize_like_inference, resize_mask

    out = PairArrays.__new__(PairArrays)
    out.pairs, out.size = list(pairs), size
    out.images = np.zeros((len(pairs), size, size, 3), np.uint8)
    out.masks = np.zeros((len(pairs), size, size), np.uint8)
    for i, p in enumerate(pairs):
        image = read_image(p.image)
        out.images[i] = resize_like_inference(transform(image) if transform else image, size)
        out.masks[i] = resize_mask(read_mask(p.mask), size)
    return out


def write_folder(arrays, folder: Path) -> Path:
    """images/ + masks/ PNGs of arrays (at the training size): a folder of reference masks."""
    from PIL import Image

    for sub in ("images", "masks"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for stem, image, mask in zip(arrays.stems, arrays.images, arrays.masks):
        Image.fromarray(image).save(folder / "images" / f"{stem}.png")
        Image.fromarray(mask * 255).save(folder / "masks" / f"{stem}.png")
    return folder


def build_sets(names: List[str], size: int, header: Dict, shift_counts: List[int], start_data) -> Dict[str, list]:
    """set name -> [(label, corrections, scored, forgetting arrays)]."""
    from finetune_shift import shift

    from napari_polyp.training.data import find_pairs, select
    from napari_polyp.training.finetune import anchor_pairs

    anchor, _ = anchor_pairs(header, None, {}, [], 24, start_data)
    anchor_arrays = arrays_of(anchor, size)
    sets: Dict[str, list] = {}
    for name in names:
        if name in ("etis20", "cvc612"):
            pairs = find_pairs(SHARED / ("etis20" if name == "etis20" else "cvc612-seq"))
            cut = ETIS_CUT if name == "etis20" else len(pairs) // 2
            first, second = pairs[:cut], pairs[cut:]
            a, b = arrays_of(first, size), arrays_of(second, size)
            sets[name] = [(f"{len(first)} first -> rest", a, b, anchor_arrays),
                          (f"{len(second)} last -> rest", b, a, anchor_arrays)]
        elif name == "shift":
            val = select(find_pairs(SHARED / "kvasir-seg"), header["training"]["val_stems"])
            test = val[-40:]
            shifted_test, plain_test = arrays_of(test, size, shift), arrays_of(test, size)
            sets[name] = [(f"{k} shifted -> 40 shifted", arrays_of(val[:k], size, shift), shifted_test, plain_test)
                          for k in shift_counts]
        else:
            raise SystemExit(f"unknown set {name!r}; sets: etis20, cvc612, shift")
    return sets


def one_run(spec: str, corrections, scored, forgetting, args, start, pool, work: Path) -> Dict:
    """Fine-tune on ``corrections`` by the variant and score; returns a row."""
    from napari_polyp.training import finetune as ft

    recipe, values, steps, epochs = parse_variant(spec)
    began = time.perf_counter()
    row: Dict = {"variant": spec, "k": len(corrections), "size": args.size, "seed": args.seed}
    if args.claim:
        folder = write_folder(corrections, work / f"corr-{time.time_ns()}")
        result = ft.finetune(folder, "ea-dk", checkpoint=start, size=args.size, seed=args.seed, steps=steps,
                             epochs=epochs, device="cpu", num_threads=args.threads, anchor_limit=0,
                             start_data=args.start_data,
                             validation="cv", folds=args.folds, recipe=recipe)
        model = ft.load_model("ea-dk", result["checkpoint"], "cpu")
        row.update(claim=result["claim"], cv_before=ft._dice(result["measured"]["before"]),
                   cv_after=ft._dice(result["measured"]["after"]), cv_n=result["validation"]["n"],
                   reason=result["reason"], steps=result["steps"])
    else:
        model = ft.load_model("ea-dk", start, "cpu")
        n_steps = steps or (ft.steps_for_epochs(epochs, len(corrections), recipe, len(pool) if pool else 0)
                            if epochs else recipe.steps)
        facts = ft.fit(model, "ea-dk", corrections, recipe, n_steps, replay=pool if recipe.replay > 0 else None,
                       seed=args.seed)
        row["steps"] = facts["steps"]
    row["train_s"] = round(time.perf_counter() - began, 1)
    rows = ft.item_scores(model, "ea-dk", scored)
    row["after"] = [r["dice"] for r in rows]
    row["forget_after"] = ft.mean_scores(ft.item_scores(model, "ea-dk", forgetting))["dice"]
    if args.blends:  # the same fine-tune, its weights moved back towards the start (WiSE-FT)
        import copy

        start_state = ft.load_model("ea-dk", start, "cpu").state_dict()
        row["blends"] = {}
        for blend in args.blends:
            blended = copy.deepcopy(model)
            ft.blend_weights(blended, start_state, blend)
            row["blends"][str(blend)] = {
                "after": [r["dice"] for r in ft.item_scores(blended, "ea-dk", scored)],
                "forget_after": ft.mean_scores(ft.item_scores(blended, "ea-dk", forgetting))["dice"]}
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default="preset;adapt", help="';'-separated variants (see the docstring)")
    parser.add_argument("--sets", default="etis20,cvc612,shift")
    parser.add_argument("--shift-counts", default="10,20")
    parser.add_argument("--size", type=int, default=352)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--claim", action="store_true", help="run finetune (cross-validated claim) per fine-tune")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--blends", default="", help="also score each fine-tune blended back towards the start "
                        "by these shares (WiSE-FT), e.g. 0.5,0.75: rows VARIANT+blend=B")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--checkpoint", default=None, help="start checkpoint (default: the shipped EA-DK)")
    parser.add_argument("--start-data", type=Path, default=None,
                        help="the start checkpoint's training folder (replay; its validation split is the "
                             "forgetting set) when not where its header says (default then: shared kvasir-seg)")
    parser.add_argument("--out", default=None, help="append one JSON line per fine-tune")
    parser.add_argument("--table", default=None, help="print the tables of a --out FILE.jsonl and stop")
    args = parser.parse_args(argv)
    args.blends = [float(b) for b in args.blends.split(",") if b.strip()]
    if args.table:
        rows = [json.loads(line) for line in open(args.table) if line.strip()]
        print(table(rows, any("claim" in r for r in rows)))
        return 0

    home = tempfile.mkdtemp(prefix="finetune-new-centre-")
    os.environ["NAPARI_POLYP_HOME"] = home  # the user's preferred checkpoints stay untouched
    import torch

    import models
    from models.checkpoint import peek_header
    from napari_polyp.training import finetune as ft

    torch.set_num_threads(args.threads)
    import shutil

    # a copy: the shipped file may be replaced while a long sweep runs
    start = Path(home) / "start-ea-dk.pt"
    shutil.copyfile(args.checkpoint or models.checkpoint.shipped_checkpoint("ea-dk"), start)
    header = peek_header(start)
    if args.start_data is None and not Path(str(ft._origin(header)[0])).is_dir():
        args.start_data = SHARED / "kvasir-seg"  # the shipped header names the folder it was trained from elsewhere
    variants = [v.strip() for v in args.variants.split(";") if v.strip()]
    for spec in variants:
        parse_variant(spec)  # a typo fails before minutes of loading
    began = time.perf_counter()
    sets = build_sets([s.strip() for s in args.sets.split(",")], args.size, header,
                      [int(k) for k in args.shift_counts.split(",")], args.start_data)
    pool_pairs, pool_source = ft.replay_pairs(header, ft.REPLAY_POOL, args.seed, args.start_data)
    pool = arrays_of(pool_pairs, args.size) if pool_pairs else None
    print(f"start {args.checkpoint or 'the shipped ea-dk.pt'} ({header.get('sha256', '')[:12]}); replay: {pool_source}; loaded in "
          f"{time.perf_counter() - began:.0f} s", file=sys.stderr)

    start_model = ft.load_model("ea-dk", start, "cpu")
    before = {}
    for name, runs in sets.items():
        for label, _, scored, forgetting in runs:
            before[name, label] = ([r["dice"] for r in ft.item_scores(start_model, "ea-dk", scored)],
                                   ft.mean_scores(ft.item_scores(start_model, "ea-dk", forgetting))["dice"])
    del start_model

    results: List[Dict] = []
    for spec in variants:
        for name, runs in sets.items():
            for label, corrections, scored, forgetting in runs:
                row = one_run(spec, corrections, scored, forgetting, args, start, pool, Path(home))
                row.update(set=name, run=label, before=before[name, label][0],
                           forget_before=before[name, label][1])
                results.append(row)
                gain = np.mean(row["after"]) - np.mean(row["before"])
                print(f"{spec} | {name} {label}: {np.mean(row['before']):.4f} -> {np.mean(row['after']):.4f} "
                      f"({gain:+.4f}); forgetting set {row['forget_before']:.4f} -> {row['forget_after']:.4f}; "
                      f"{row['train_s']:.0f} s" + (f"; claim {row['claim']} cv {row['cv_before']:.4f} -> "
                                                    f"{row['cv_after']:.4f}" if args.claim else ""),
                      file=sys.stderr, flush=True)
                if args.out:
                    with open(args.out, "a") as fh:
                        fh.write(json.dumps(row) + "\n")
    print(table(results, args.claim))
    print(f"\nea-dk from {Path(start).name} at {args.size} px, seed {args.seed}, {args.threads} thread(s); "
          f"replay: {pool_source}; {time.perf_counter() - began:.0f} s in all")
    return 0


def table(results: List[Dict], claim: bool = False) -> str:
    """One line per variant and set: the held-out images pooled over its runs."""
    lines = ["| variant | set | scored | Dice before → after | gain (per seed) | per 10 corrections | forgetting set "
             "before → after | s per fine-tune |" + (" claim (cv on the corrections) |" if claim else ""),
             "|---|---|---|---|---|---|---|---|" + ("---|" if claim else "")]
    groups: Dict = {}
    expanded = []
    for row in results:
        expanded.append(row)
        for blend, scores in row.get("blends", {}).items():
            expanded.append({**row, **scores, "variant": f"{row['variant']}+blend={blend}", "blends": {}})
    for row in expanded:
        key = (row["variant"], row["set"], row["k"] if row["set"] == "shift" else 0)
        groups.setdefault(key, []).append(row)
    for (variant, name, k), rows in groups.items():
        before = np.mean([d for r in rows for d in r["before"]])
        after = np.mean([d for r in rows for d in r["after"]])
        n = sum(len(r["after"]) for r in rows) // len({r["seed"] for r in rows})  # images, each seed scores all
        per10 = (after - before) * 10 / np.mean([r["k"] for r in rows])
        fb, fa = np.mean([r["forget_before"] for r in rows]), np.mean([r["forget_after"] for r in rows])
        ks = sorted({r["k"] for r in rows}, reverse=True)
        seeds = sorted({r["seed"] for r in rows})
        label = f"{name} ({'/'.join(map(str, ks))} corrections" + (f", {len(seeds)} seeds)" if len(seeds) > 1 else ")")
        spread = ""
        if len(seeds) > 1:  # the gain of each seed (its runs pooled): how much is noise
            gains = [np.mean([d for r in rows if r["seed"] == s for d in r["after"]])
                     - np.mean([d for r in rows if r["seed"] == s for d in r["before"]]) for s in seeds]
            spread = f" ({', '.join(f'{g:+.3f}' for g in gains)})"
        line = (f"| {variant} | {label} | {n} | {before:.4f} → {after:.4f} | {after - before:+.4f}{spread} | "
                f"{per10:+.4f} | {fb:.4f} → {fa:.4f} | {np.mean([r['train_s'] for r in rows]):.0f} |")
        if claim:
            line += " " + "; ".join(f"{'yes' if r['claim'] else 'no'} {r['cv_before']:.3f}→{r['cv_after']:.3f} "
                                    f"(n={r['cv_n']})" for r in rows) + " |"
        lines.append(line)
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
