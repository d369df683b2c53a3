"""Live at the accurate network's quality: the network on the frames it keeps up with, its mask
carried by optical flow to the frames between (``live_masks(..., carry=True)``), against the
same network and the fast one (MicroAUNet) on the frames they keep up with alone.

    python benchmarks/live_carry.py [--sequences 6] [--length 75] [--threads 1] [--fps 25]

Plays each synthetic 640×480 sequence of ``benchmarks/propagate.py`` (a seeded camera moving
over a Kvasir-SEG validation image, the true mask moved with it) in real time through
:func:`napari_polyp.inference.live.live_masks`, as the Segment widget's Live does but without a window
(the display's own cost is measured by ``benchmarks/live_video.py``). For each way it reports
the frames shown per second of playback, the frames skipped, and the mean Dice of the masks
shown against the true masks of their frames; the reference is the default network run on
every frame with no clock ("per frame, offline"). Networks are served from their ONNX graphs
(ONNX Runtime, ``--threads``; Live gives the network one thread fewer than the cores).
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
sys.path.insert(0, str(ROOT / "benchmarks"))


def served(network: str, threads: int):
    import models
    from napari_polyp.inference.predictors import default_predictor_factory

    return default_predictor_factory(network, str(models.default_checkpoint(network)), "cpu", "auto", threads)


def play(predictor, frames, truths, fps: float, carry: bool) -> dict:
    from napari_polyp.inference.live import PlaybackClock, live_masks
    from propagate import dice

    shown = list(live_masks(predictor, frames, PlaybackClock(fps, 0, len(frames)), carry=carry))
    scores = [dice(s.mask > 0, truths[s.frame]) for s in shown]
    last = shown[-1]
    return {"shown": len(shown), "fps": last.fps, "dropped": last.dropped, "carried": last.carried,
            "dice": float(np.mean(scores)), "dice_flow": float(np.mean([d for d, s in zip(scores, shown) if s.by_flow]))
            if last.carried else None}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequences", type=int, default=6)
    parser.add_argument("--length", type=int, default=75, help="frames per sequence (3 s at 25 fps)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--fps", type=float, default=25.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--default", default="ea-dk", help="the accurate network")
    parser.add_argument("--fast", default="microaunet", help="the fast network")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    args = parser.parse_args(argv)
    from propagate import dice, load_synthetic

    sequences = load_synthetic(args.data, args.sequences, args.length, args.seed)
    networks = {args.default: served(args.default, args.threads), args.fast: served(args.fast, args.threads)}
    for net in networks.values():  # warm up (graph load, first-run allocations)
        net.predict(sequences[0][1][0], attention=False)
    ways = {f"{args.default} + flow (Live)": (args.default, True), f"{args.default} alone": (args.default, False),
            f"{args.fast} alone": (args.fast, False)}
    rows = {name: [] for name in ways}
    offline = []
    for name, frames, truths in sequences:
        net = networks[args.default]
        offline.append(float(np.mean([dice(net.predict(f, attention=False).mask(0.5) > 0, t)
                                      for f, t in zip(frames, truths)])))
        for way, (network, carry) in ways.items():
            rows[way].append(play(networks[network], frames, truths, args.fps, carry))
            time.sleep(0.2)
    n = len(sequences)
    print(f"\n{n} synthetic sequences of {args.length} frames at 640×480, played at {args.fps:g} fps; "
          f"ONNX Runtime, {args.threads} thread(s)\n")
    print("| way | frames shown / s | skipped (of all frames) | carried by flow | mean Dice of the masks shown |")
    print("|---|---|---|---|---|")
    print(f"| {args.default} per frame, offline (no clock) | – | – | – | {np.mean(offline):.3f} |")
    summary = {"offline_dice": float(np.mean(offline))}
    for way, results in rows.items():
        fps = np.mean([r["fps"] for r in results])
        skipped = np.sum([r["dropped"] for r in results]) / (n * args.length)
        carried = np.sum([r["carried"] for r in results]) / (n * args.length)
        dice_shown = np.mean([r["dice"] for r in results])
        print(f"| {way} | {fps:.1f} | {100 * skipped:.0f} % | {100 * carried:.0f} % | {dice_shown:.3f} |")
        summary[way] = {"fps": round(float(fps), 2), "skipped": round(float(skipped), 3),
                        "carried": round(float(carried), 3), "dice": round(float(dice_shown), 4)}
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
