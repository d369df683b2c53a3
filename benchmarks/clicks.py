"""Clicks to a good mask (the NoC protocol of interactive segmentation), for the click refiner,
GrabCut and the brush, from several starting masks.

    python benchmarks/clicks.py --set kvasir-val --starts empty,microaunet,default --methods refiner
    python benchmarks/clicks.py --set etis20 --methods refiner,grabcut,brush --threads 2

The simulated annotator (``napari_polyp.corrections.clicks.protocol_click``) clicks at the point
deepest inside the larger error region (false negative or false positive, whichever has the
larger distance-transform maximum; the image border counts as edge), positive in a missed
region; at most ``--max-clicks``; an image whose start already meets a target needs 0 clicks
for it. An image that never meets a target counts ``--max-clicks`` for it.

Methods: ``refiner`` (``ClickSession``: zoom-in, local change, clicks honoured), ``refiner-global``
(the whole image, every change applied, clicks not honoured), ``refiner-nolocal`` (zoom-in, every
change applied), ``refiner-box`` (the first interaction a box around the lesion, counted as one
click, then clicks), ``hybridK`` (the refiner for K clicks, then GrabCut with every click so far and
the refiner's probability as the prior), ``grabcut`` (all clicks so far as discs of
``refine.STROKE_RADIUS``-scaled radius, the start's probability as the prior), ``brush`` (each
click paints a disc of ``--brush-radius`` px). Starts: ``empty``, ``microaunet`` (MicroAUNet's
mask), ``default`` (the task's default network: EA-DK for polyps, EAM-Net for skin), each as the
Segment tab shows it by default (flip TTA where ``tta_fits``, then checked by a second network where
``second_opinion.fits``; ``--plain-start`` for the network's plain mask).

Sets: ``kvasir-val`` and ``ph2-val`` (the seeded validation split the shipped checkpoints
record, n = 90 and 16), ``etis20`` and ``cvc612-seq`` (other centres, never trained on).
Prints one JSON line per (set, start, method), then a Markdown table: NoC@85/90/95 (NoC@90 with
its 95 % bootstrap interval over the images, ``training.intervals``, and at the other centres over
their scenes too), mean Dice after 0, 1, 2, 3,
5, 10 clicks, the share of images the first click made worse, and the median time a click took.
Two runs' ``--per-image`` files compare image by image with ``benchmarks/clicks_compare.py``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data"
TARGETS = (0.85, 0.90, 0.95)
REPORT_AT = (0, 1, 2, 3, 5, 10)
# set -> (folder, task, network whose recorded validation stems choose the images, or None: all)
SETS = {"kvasir-val": ("kvasir-seg", "polyp", "ea-dk"), "ph2-val": ("ph2", "skin", "eam-net"),
        "etis20": ("etis20", "polyp", None), "cvc612-seq": ("cvc612-seq", "polyp", None)}
DEFAULT_NETWORK = {"polyp": "ea-dk", "skin": "eam-net"}


def load_pairs(name: str, data_root: Path, limit):
    import models
    from napari_polyp.io import read_image, read_mask
    from napari_polyp.training import data as data_mod

    folder, task, stems_of = SETS[name]
    pairs = data_mod.find_pairs(data_root / folder)
    if stems_of:
        header = models.peek_header(models.default_checkpoint(stems_of))
        pairs = data_mod.select(pairs, header["training"]["val_stems"])
    pairs = pairs[:limit] if limit else pairs
    return task, [(p.stem, read_image(p.image), read_mask(p.mask) > 0) for p in pairs]


def start_probability(start: str, task: str, image, predictors, as_shown: bool = True) -> np.ndarray:
    if start == "empty":
        return np.zeros(image.shape[:2], np.float32)
    name = DEFAULT_NETWORK[task] if start == "default" else start
    if name not in predictors:
        import models
        from napari_polyp.inference import Predictor
        from napari_polyp.inference.prediction import tta_fits
        from napari_polyp.inference.second_opinion import default_check, with_second_opinion

        # the mask the Segment tab shows by default: flip TTA, then the second opinion, where they fit
        card = models.get_card(name)
        predictor = Predictor(name, tta=as_shown and tta_fits(card))
        if as_shown and default_check(card, predictor.tta):
            predictor = with_second_opinion(predictor)
        predictors[name] = predictor
    return predictors[name].predict(image).probability


def iou(a, b) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def dice(a, b) -> float:
    total = a.sum() + b.sum()
    return 1.0 if total == 0 else float(2 * np.logical_and(a, b).sum() / total)


class Brush:
    def __init__(self, image, probability, radius):
        self.mask, self.radius = probability > 0.5, radius

    def click(self, row, col, positive):
        rr, cc = np.ogrid[:self.mask.shape[0], :self.mask.shape[1]]
        self.mask[(rr - row) ** 2 + (cc - col) ** 2 <= self.radius ** 2] = positive
        return self.mask


class GrabCutClicks:
    """Every click so far as a disc stroke; the start's probability as GrabCut's prior."""

    def __init__(self, image, probability, radius):
        from napari_polyp.corrections.refine import BACKGROUND, FOREGROUND

        self.image, self.probability, self.radius = image, probability, radius
        self.strokes = np.zeros(probability.shape, np.uint8)
        self.labels = {True: FOREGROUND, False: BACKGROUND}

    def click(self, row, col, positive):
        from napari_polyp.corrections.refine import refine

        rr, cc = np.ogrid[:self.strokes.shape[0], :self.strokes.shape[1]]
        self.strokes[(rr - row) ** 2 + (cc - col) ** 2 <= self.radius ** 2] = self.labels[positive]
        return refine(self.image, self.probability, self.strokes).astype(bool)


class HybridClicks:
    """The refiner for the first ``handover`` clicks, then GrabCut: every click so far as a disc
    stroke, the refiner's last probability as its prior (GrabCut's strokes add up where the
    refiner's later clicks change little)."""

    def __init__(self, session, image, radius, handover: int):
        self.session, self.image, self.radius, self.handover = session, image, radius, handover
        self.clicks, self.grabcut = [], None

    def click(self, row, col, positive):
        self.clicks.append((row, col, positive))
        if len(self.clicks) <= self.handover:
            return self.session.click(row, col, positive)
        if self.grabcut is None:  # the handover: the earlier clicks become strokes too
            self.grabcut = GrabCutClicks(self.image, self.session.probability, self.radius)
            rr, cc = np.ogrid[:self.image.shape[0], :self.image.shape[1]]
            for r, c, p in self.clicks[:-1]:
                self.grabcut.strokes[(rr - r) ** 2 + (cc - c) ** 2 <= self.radius ** 2] = self.grabcut.labels[p]
        return self.grabcut.click(row, col, positive)


def make_method(method: str, image, probability, args):
    from napari_polyp.corrections.clicks import ClickSession

    if method == "refiner":
        return ClickSession(image, probability, threads=args.threads, checkpoint=args.checkpoint)
    if method == "refiner-global":
        return ClickSession(image, probability, threads=args.threads, checkpoint=args.checkpoint, zoom=False, local=False, honour_clicks=False)
    if method == "refiner-nolocal":
        return ClickSession(image, probability, threads=args.threads, checkpoint=args.checkpoint, local=False)
    if method.startswith("refiner-r"):  # refiner-r08: changes within 8 % of the side of the click
        return ClickSession(image, probability, threads=args.threads, checkpoint=args.checkpoint, influence=int(method[9:]) / 100)
    if method == "refiner-onelook":  # no second, zoomed-in look at a lesion found from nothing
        return ClickSession(image, probability, threads=args.threads, checkpoint=args.checkpoint, second_look=False)
    if method == "refiner-box":
        return ClickSession(image, probability, threads=args.threads, checkpoint=args.checkpoint)
    radius = max(3, round(args.brush_radius * max(image.shape[:2]) / 600))
    if method.startswith("hybrid"):  # hybrid3: the refiner for 3 clicks, then GrabCut with all of them
        return HybridClicks(ClickSession(image, probability, threads=args.threads, checkpoint=args.checkpoint), image, radius, int(method[6:]))
    return Brush(image, probability, radius) if method == "brush" else GrabCutClicks(image, probability, radius)


def run_image(method: str, image, truth, probability, args):
    """Dice after each click (index 0: the start), clicks to each target, seconds per click,
    IoU after each click."""
    from napari_polyp.corrections.clicks import protocol_click

    mask = probability > 0.5
    dices, ious, seconds = [dice(mask, truth)], [iou(mask, truth)], []
    tool = make_method(method, image, probability, args)
    needed = max(REPORT_AT)
    if method == "refiner-box" and truth.any():  # the first interaction: a box around the lesion
        rows, cols = np.nonzero(truth.any(1))[0], np.nonzero(truth.any(0))[0]
        started = time.perf_counter()
        mask = np.asarray(tool.drag_box(rows[0], cols[0], rows[-1] + 1, cols[-1] + 1), bool)
        seconds.append(time.perf_counter() - started)
        dices.append(dice(mask, truth)), ious.append(iou(mask, truth))
    while len(dices) <= args.max_clicks and (len(dices) <= needed or ious[-1] < max(TARGETS)):
        click = protocol_click(mask, truth)
        if click is None:
            dices.append(dices[-1]), ious.append(ious[-1])
            continue
        started = time.perf_counter()
        mask = np.asarray(tool.click(click.row, click.col, click.positive), bool)
        seconds.append(time.perf_counter() - started)
        dices.append(dice(mask, truth)), ious.append(iou(mask, truth))
    noc = {t: next((k for k, v in enumerate(ious) if v >= t), args.max_clicks) for t in TARGETS}
    return dices, noc, seconds, ious


def summarise(rows, args, scenes=None) -> dict:
    """The row of the table; ``scenes`` (a scene number per image, other centres): NoC@90's interval
    over whole scenes too."""
    from napari_polyp.training.intervals import mean_interval

    curve = {k: float(np.mean([r[0][min(k, len(r[0]) - 1)] for r in rows])) for k in REPORT_AT}
    noc = {t: float(np.mean([r[1][t] for r in rows])) for t in TARGETS}
    intervals = {f"{int(t * 100)}": mean_interval([r[1][t] for r in rows]) for t in TARGETS}
    by_scene = mean_interval([r[1][0.90] for r in rows], groups=scenes) if scenes is not None else None
    worse = float(np.mean([r[0][1] < r[0][0] - 1e-9 for r in rows]))
    seconds = [s for r in rows for s in r[2]]
    return {"n": len(rows), "noc": {f"{int(t * 100)}": round(v, 2) for t, v in noc.items()},
            "noc_interval": {k: [round(i.low, 2), round(i.high, 2)] for k, i in intervals.items()},
            **({"noc90_scene_interval": by_scene.as_dict(2)} if by_scene is not None else {}),
            "dice": {str(k): round(v, 4) for k, v in curve.items()}, "first_click_worse": round(worse, 3),
            "median_click_s": round(float(np.median(seconds)), 4) if seconds else None}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", action="append", default=None, choices=sorted(SETS))
    parser.add_argument("--starts", default="empty,microaunet,default")
    parser.add_argument("--methods", default="refiner")
    parser.add_argument("--max-clicks", type=int, default=20)
    parser.add_argument("--brush-radius", type=float, default=10.0, help="px on a 600-px image")
    parser.add_argument("--limit", type=int, default=None, help="first N images of each set")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--checkpoint", default=None, help="a click-refiner checkpoint (default: the shipped one)")
    parser.add_argument("--data-root", default=str(DATA))
    parser.add_argument("--per-image", type=Path, default=None,
                        help="append one JSON line per image (IoU after each click, NoC) to this file")
    parser.add_argument("--plain-start", action="store_true",
                        help="start from the networks' plain masks (the Segment tab turns flip TTA and the "
                             "second opinion on where they fit)")
    args = parser.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    table, predictors = [], {}
    for set_name in args.set or ["kvasir-val"]:
        task, pairs = load_pairs(set_name, Path(args.data_root), args.limit)
        scenes = None
        if SETS[set_name][2] is None:  # another centre's frames come in scenes (training.intervals)
            from napari_polyp.training.intervals import scene_groups

            scenes = scene_groups([stem for stem, _, _ in pairs], [image for _, image, _ in pairs])
        for start in [s for s in args.starts.split(",") if s]:
            if start == "microaunet" and task != "polyp":
                continue
            starts = [start_probability(start, task, image, predictors, not args.plain_start) for _, image, _ in pairs]
            for method in [m for m in args.methods.split(",") if m]:
                rows = []
                for (stem, image, truth), p in zip(pairs, starts):
                    rows.append(run_image(method, image, truth, p, args))
                    if args.per_image:
                        with args.per_image.open("a") as out:
                            out.write(json.dumps({"set": set_name, "start": start, "method": method, "stem": stem,
                                                  "iou": [round(v, 4) for v in rows[-1][3]],
                                                  "noc": {str(t): n for t, n in rows[-1][1].items()}}) + "\n")
                result = {"set": set_name, "start": start, "method": method, **summarise(rows, args, scenes)}
                print(json.dumps(result), flush=True)
                table.append(result)
    print("\n| set | start | method | n | NoC@85 | NoC@90 [95 % interval] | NoC@95 | "
          + " | ".join(f"Dice@{k}" for k in REPORT_AT) + " | 1st click worse | s/click |")
    print("|---" * (10 + len(REPORT_AT)) + "|")
    for r in table:
        low, high = r["noc_interval"]["90"]
        scenes = r.get("noc90_scene_interval")
        over_scenes = "" if not scenes else (
            f", over {scenes['groups']} scenes [{scenes['low']:.2f}, {scenes['high']:.2f}]" if scenes["groups"] > 1
            else ", one scene")
        noc = [f"{r['noc']['85']:.2f}", f"{r['noc']['90']:.2f} [{low:.2f}, {high:.2f}]{over_scenes}",
               f"{r['noc']['95']:.2f}"]
        print(f"| {r['set']} | {r['start']} | {r['method']} | {r['n']} | " + " | ".join(noc) + " | "
              + " | ".join(f"{r['dice'][str(k)]:.3f}" for k in REPORT_AT)
              + f" | {100 * r['first_click_worse']:.0f} % | {r['median_click_s']} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
