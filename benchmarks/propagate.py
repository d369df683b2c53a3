"""Propagation of key-frame masks through video (``napari_polyp.video.propagate``): Dice of the
filled frames, frames per second, and the key frames needed.

    python benchmarks/propagate.py                       # cvc612-seq + 8 synthetic sequences
    python benchmarks/propagate.py --sets cvc612-seq --variants default,flow,always
    python benchmarks/propagate.py --refiner-check       # the refiner with no clicks, deformed priors
    python benchmarks/propagate.py --refiner runs/x/best.pt ...   # a candidate refiner instead of the shipped one

Sets:
- ``cvc612-seq``: ``../shared/data/cvc612-seq``, 20 consecutive frames of one polyp (CVC-ClinicDB,
  another centre; never trained on). Its frames jump: copying the previous frame's true mask scores
  0.72 Dice.
- ``cvc612-seq-mp4``: the same frames written as an mp4 and read back, as the app reads a video.
- ``synthetic``: ``--sequences`` sequences of ``--length`` frames at 640×480, each made from one
  Kvasir-SEG validation image (the stems EA-DK's checkpoint records as its validation split) by a
  seeded camera-motion generator (:func:`synthetic_sequence`): smooth affine and perspective drift,
  zoom, blur, brightness, moving specular highlights and an instrument that crosses the polyp
  (the instrument's pixels are not polyp); the mask moves with the image.

For keys every k frames (k = 1, 5, 10, and only the first frame), the filled frames (not keys)
are scored by Dice against the true masks, beside the per-frame default network (EA-DK, its
probability at 0.5) and copying the nearest key's true mask, on the same frames. k = 1 is
one-step propagation: each frame filled from the previous frame's true mask alone. Keys every
k are frames 0, k, 2k, ... (the last frame is a key only when it falls on one).

*Frames/s*: filled frames per second of ``propagate`` (flow, refiner, blending; frames already
in memory) on the synthetic 640×480 sequences with keys every 5, ``--threads`` threads (ONNX
Runtime and OpenCV). *Keys for 0.85*: the key frames (frame 0 included) a person needs so that
every frame reaches 0.85 Dice, adding the worst frame as a key until none is below (propagation
re-run on the segments the new key splits).

Variants: ``default`` (flow, the refiner where the flow's match is poor), ``flow`` (optical flow
only), ``always`` (the refiner at every step), ``fuse`` (default, with the network's probability
blended in at ``--fuse``).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data"
KEY_SETTINGS = ("1", "5", "10", "first")
TARGET = 0.85
SIZE = (480, 640)  # rows, columns of the synthetic frames


def dice(a, b) -> float:
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else float(2 * np.logical_and(a, b).sum() / total)


# -- the data ---------------------------------------------------------------------------------

def load_cvc612(data_root: Path):
    from napari_polyp.io import read_image, read_mask

    folder = data_root / "cvc612-seq"
    images = sorted((folder / "images").iterdir())
    masks = sorted((folder / "masks").iterdir())
    return [("cvc612-seq", [read_image(p) for p in images], [read_mask(p) > 0 for p in masks])]


def load_cvc612_mp4(data_root: Path):
    """cvc612-seq's frames written as an mp4 and read back (``io.video``), as the app reads a video:
    the compression moves the flow, and what carries past a jump on the PNG frames may not."""
    import tempfile

    from napari_polyp.io.video import VideoFrames, write_video

    (_, frames, truths), = load_cvc612(data_root)
    with tempfile.TemporaryDirectory() as tmp:
        clip = VideoFrames(write_video(Path(tmp) / "cvc612-seq.mp4", frames, fps=25))
        decoded = [np.asarray(clip[i]) for i in range(len(clip))]
    return [("cvc612-seq-mp4", decoded, truths)]


def group_of(sequence: str) -> str:
    """The table row a sequence's figures go to: a real set by its name, the synthetic ones together."""
    return sequence if sequence.startswith("cvc612-seq") else "synthetic"


def validation_pairs(data_root: Path, count: int):
    import models
    from napari_polyp.training import data as data_mod

    pairs = data_mod.find_pairs(data_root / "kvasir-seg")
    header = models.peek_header(models.default_checkpoint("ea-dk"))
    return data_mod.select(pairs, header["training"]["val_stems"])[:count]


def load_synthetic(data_root: Path, count: int, length: int, seed: int):
    from napari_polyp.io import read_image, read_mask

    out = []
    for index, pair in enumerate(validation_pairs(data_root, count)):
        rng = np.random.default_rng([seed, index])
        frames, masks = synthetic_sequence(read_image(pair.image), read_mask(pair.mask) > 0, rng, length)
        out.append((f"synthetic/{pair.stem}", frames, masks))
    return out


def _smooth_walk(rng, length: int, scale: float, smooth: float = 0.85) -> np.ndarray:
    """A smooth random trajectory (velocity with momentum), starting at 0."""
    velocity, position, out = 0.0, 0.0, []
    for _ in range(length):
        velocity = smooth * velocity + (1 - smooth) * rng.normal(0, scale)
        position += velocity
        out.append(position)
    return np.asarray(out) - out[0]


def synthetic_sequence(image: np.ndarray, mask: np.ndarray, rng, length: int = 30, size=SIZE):
    """``length`` frames (rows x columns ``size``) of a seeded camera moving over a still image:
    a homography per frame (drift, zoom, rotation, perspective tilt) around the polyp, then
    brightness, blur, specular highlights and an instrument crossing the polyp. Returns
    (frames: list of HxWx3 uint8, masks: list of HxW bool, the polyp minus the instrument)."""
    import cv2

    out_h, out_w = size
    src_h, src_w = mask.shape
    ys, xs = np.nonzero(mask)
    cy, cx = (ys.mean(), xs.mean()) if len(ys) else (src_h / 2, src_w / 2)
    # the window's scale: source px per output px, so the view shows about 60 % of the image's side
    base = 0.6 * min(src_h / out_h, src_w / out_w)
    offset_x = _smooth_walk(rng, length, 0.025 * src_w) + rng.uniform(-0.1, 0.1) * src_w
    offset_y = _smooth_walk(rng, length, 0.025 * src_h) + rng.uniform(-0.1, 0.1) * src_h
    zoom = np.exp(_smooth_walk(rng, length, 0.02))
    angle = _smooth_walk(rng, length, 0.01) + rng.uniform(-0.2, 0.2)
    tilt_x, tilt_y = _smooth_walk(rng, length, 2e-5), _smooth_walk(rng, length, 2e-5)
    gain = 1.0 + 0.15 * np.sin(np.linspace(0, rng.uniform(1, 3) * np.pi, length) + rng.uniform(0, 6))
    blur = np.clip(_smooth_walk(rng, length, 0.3) + rng.uniform(0, 1), 0, 2.5)
    speculars = [(rng.uniform(0.2, 0.8) * out_w, rng.uniform(0.2, 0.8) * out_h, rng.uniform(4, 12),
                  rng.normal(0, 2, 2)) for _ in range(rng.integers(3, 7))]
    enter, leave = sorted(rng.integers(length // 5, length, 2))
    side = rng.integers(4)
    frames, masks = [], []
    for t in range(length):
        # output px -> source px: centre the polyp (plus drift), scale, rotate, tilt
        c, s = np.cos(angle[t]), np.sin(angle[t])
        k = base / zoom[t]
        to_centre = np.array([[1, 0, -out_w / 2], [0, 1, -out_h / 2], [0, 0, 1]])
        tilt = np.array([[1, 0, 0], [0, 1, 0], [tilt_x[t], tilt_y[t], 1]])
        rotate_scale = np.array([[k * c, -k * s, 0], [k * s, k * c, 0], [0, 0, 1]])
        half_w, half_h = out_w / 2 * k, out_h / 2 * k  # the window stays inside the image
        centre_x = np.clip(cx + offset_x[t], half_w, max(src_w - half_w, half_w))
        centre_y = np.clip(cy + offset_y[t], half_h, max(src_h - half_h, half_h))
        to_source = np.array([[1, 0, centre_x], [0, 1, centre_y], [0, 0, 1]])
        homography = to_source @ rotate_scale @ tilt @ to_centre
        flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
        frame = cv2.warpPerspective(image, homography, (out_w, out_h), flags=flags)
        truth = cv2.warpPerspective(mask.astype(np.uint8), homography, (out_w, out_h),
                                    flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP) > 0
        frame = np.clip(frame.astype(np.float32) * gain[t], 0, 255)
        for x, y, radius, drift in speculars:  # highlights: move with the light, flicker
            if rng.random() < 0.8:
                px, py = x + drift[0] * t, y + drift[1] * t
                cv2.ellipse(frame, (int(px), int(py)), (int(radius * 1.6), int(radius)), float(rng.uniform(0, 180)),
                            0, 360, (255, 255, 255), -1, cv2.LINE_AA)
        if enter <= t <= leave:
            frame, instrument = _instrument(frame, t, enter, leave, side, truth, rng)
            truth &= ~instrument
        if blur[t] > 0.3:
            frame = cv2.GaussianBlur(frame, (0, 0), float(blur[t]))
        frames.append(np.clip(frame, 0, 255).astype(np.uint8))
        masks.append(truth)
    return frames, masks


def _instrument(frame, t, enter, leave, side, truth, rng):
    """A grey metallic shaft from one border whose tip moves over the polyp and back."""
    import cv2

    h, w = truth.shape
    ys, xs = np.nonzero(truth)
    target = (xs.mean(), ys.mean()) if len(ys) else (w / 2, h / 2)
    start = [(0, h * 0.7), (w, h * 0.7), (w * 0.3, h), (w * 0.7, 0)][side]
    phase = np.sin(np.pi * (t - enter + 1) / (leave - enter + 2))  # 0 -> 1 -> 0
    tip = (start[0] + (target[0] - start[0]) * phase, start[1] + (target[1] - start[1]) * phase)
    width = int(0.05 * w)
    drawn = np.zeros((h, w), np.uint8)
    cv2.line(drawn, (int(start[0]), int(start[1])), (int(tip[0]), int(tip[1])), 1, width, cv2.LINE_AA)
    cv2.circle(drawn, (int(tip[0]), int(tip[1])), width // 2, 1, -1, cv2.LINE_AA)
    region = drawn > 0
    shade = np.linspace(150, 215, w, dtype=np.float32)[None, :].repeat(h, 0)
    frame = frame.copy()
    frame[region] = np.stack([shade[region], shade[region] * 0.97, shade[region] * 0.95], -1)
    return frame, region


# -- scoring --------------------------------------------------------------------------------

def key_indices(setting: str, n: int):
    return [0] if setting == "first" else list(range(0, n, int(setting)))


def run_setting(frames, truths, probs, setting: str, options: dict):
    """(filled frames, their propagated masks, seconds of propagate)."""
    from napari_polyp.video import propagate

    n = len(frames)
    options = dict(options)
    probs = probs if options.pop("network", False) else None
    if setting == "1":  # one-step: each frame from the previous frame's true mask alone
        masks, seconds = {}, 0.0
        for t in range(1, n):
            started = time.perf_counter()
            result = propagate(frames[t - 1:t + 1], {0: truths[t - 1]},
                               None if probs is None else probs[t - 1:t + 1], **options)
            seconds += time.perf_counter() - started
            masks[t] = result[1]
        return masks, seconds
    keys = key_indices(setting, n)
    started = time.perf_counter()
    cpu = time.process_time()
    result = propagate(frames, {k: truths[k] for k in keys}, probs, **options)
    seconds = time.perf_counter() - started
    result.cpu_seconds = time.process_time() - cpu
    return {t: result[t] for t in result.filled}, seconds, result


def nearest_key_copy(truths, setting: str, t: int):
    if setting == "1":
        return truths[t - 1]
    keys = key_indices(setting, len(truths))
    nearest = min(keys, key=lambda k: (abs(k - t), k))
    return truths[nearest]


def keys_for_target(frames, truths, options: dict, target: float = TARGET) -> int:
    """Key frames (0 included) until every frame reaches ``target`` Dice, the worst frame made
    a key each time; segments between keys are propagated once each (they are independent)."""
    from napari_polyp.video import propagate

    n = len(frames)
    keys, cache = [0], {}
    options = {k: v for k, v in options.items() if k not in ("network", "fuse")}

    def segment(a, b):  # frames a..b (b None: to the end), keys at a (and b)
        if (a, b) not in cache:
            stop = n if b is None else b + 1
            given = {0: truths[a]} if b is None else {0: truths[a], b - a: truths[b]}
            result = propagate(frames[a:stop], given, **options)
            cache[(a, b)] = {a + i: result[i] for i in range(len(result))}
        return cache[(a, b)]

    while True:
        scores = {}
        for a, b in zip(keys, keys[1:] + [None]):
            if (b if b is not None else n) - a <= 1 and b is not None:
                continue
            if b is None and a == n - 1:
                continue
            for t, mask in segment(a, b).items():
                if t not in keys:
                    scores[t] = dice(mask, truths[t])
        worst = min(scores, key=scores.get) if scores else None
        if worst is None or scores[worst] >= target:
            return len(keys)
        keys = sorted(keys + [worst])


def score_sequence(name, frames, truths, probs, variants, args):
    rows = []
    for variant in variants:
        options = variant_options(variant, args)
        for setting in KEY_SETTINGS:
            out = run_setting(frames, truths, probs, setting, options)
            masks, seconds = out[0], out[1]
            filled = sorted(masks)
            row = {"sequence": name, "variant": variant, "keys": setting, "filled": len(filled),
                   "dice": [dice(masks[t], truths[t]) for t in filled],
                   "network": [dice(probs[t] >= 0.5, truths[t]) for t in filled] if probs is not None else None,
                   "copy": [dice(nearest_key_copy(truths, setting, t), truths[t]) for t in filled],
                   "seconds": seconds}
            if len(out) > 2:
                result = out[2]
                row["quality"] = [result.quality[t].score for t in filled]
                row["stops"] = [s.message() for s in result.stops]
                row["refiner_runs"] = result.refiner_runs
                row["cpu_seconds"] = result.cpu_seconds
            rows.append(row)
        if args.keys_needed and variant in args.keys_needed.split(","):
            started = time.perf_counter()
            needed = keys_for_target(frames, truths, options)
            rows.append({"sequence": name, "variant": variant, "keys_needed": needed, "frames": len(frames),
                         "seconds": time.perf_counter() - started})
    return rows


def variant_options(variant: str, args) -> dict:
    """``propagate``'s options for a variant; "network": whether it is given the per-frame
    network's probabilities (frames no direction reaches take its mask)."""
    runner = refiner(args.threads, args.refiner)
    return {"default": {"runner": runner}, "flow": {"refine": False},
            "always": {"runner": runner, "refine_below": 2.0},
            "network": {"runner": runner, "network": True},
            "fuse": {"runner": runner, "fuse": args.fuse, "network": True}}[variant]


_RUNNER = {}


def refiner(threads, checkpoint=None):
    """The shipped click refiner's runner, or ``checkpoint``'s (a candidate, before shipping)."""
    if "r" not in _RUNNER:
        from napari_polyp.inference.refiner import refiner_runner

        _RUNNER["r"] = refiner_runner(checkpoint, threads=threads)
    return _RUNNER["r"]


def network_probabilities(frames, threads, cache, network: str = "ea-dk"):
    """The network's probability of every frame (no TTA, as Live and whole-video runs)."""
    if network not in cache:
        from napari_polyp.inference import Predictor

        cache[network] = Predictor(network, threads=threads)
    return [cache[network].predict(f).probability for f in frames]


# -- the refiner with no clicks ------------------------------------------------------------------

def refiner_check(data_root: Path, count: int, threads, seed: int, checkpoint=None):
    """The refiner with no clicks on deformed true masks (MaskTrack's deformations) of Kvasir-SEG
    validation images: Dice of the prior and of the refined mask."""
    import cv2

    from napari_polyp.io import read_image, read_mask
    from napari_polyp.video import refine_mask

    runner = refiner(threads, checkpoint)
    rng = np.random.default_rng(seed)
    table = {}
    for pair in validation_pairs(data_root, count):
        image, truth = read_image(pair.image), read_mask(pair.mask) > 0
        h, w = truth.shape
        side = np.sqrt(truth.sum())
        ys, xs = np.nonzero(truth)
        cy, cx = ys.mean(), xs.mean()
        shift = np.float32([[1, 0, rng.uniform(-.15, .15) * side], [0, 1, rng.uniform(-.15, .15) * side]])
        f = rng.choice([0.85, 1.15])
        scale = np.float32([[f, 0, cx * (1 - f)], [0, f, cy * (1 - f)]])
        noise = [cv2.GaussianBlur(rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), 0.2 * side) for _ in range(2)]
        noise = [(n_ * 0.1 * side / (np.abs(n_).max() + 1e-6)).astype(np.float32) for n_ in noise]
        gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
        priors = {
            "true mask": truth,
            "shifted 15 %": cv2.warpAffine(truth.astype(np.uint8), shift, (w, h)) > 0,
            "scaled ±15 %": cv2.warpAffine(truth.astype(np.uint8), scale, (w, h)) > 0,
            "elastic 10 %": cv2.remap(truth.astype(np.float32), gx + noise[0], gy + noise[1], cv2.INTER_LINEAR) > 0.5,
            "dilated 5 px": cv2.dilate(truth.astype(np.uint8), np.ones((11, 11), np.uint8)) > 0,
            "eroded 5 px": cv2.erode(truth.astype(np.uint8), np.ones((11, 11), np.uint8)) > 0,
        }
        for kind, prior in priors.items():
            refined = refine_mask(image, prior.astype(np.float32), runner) >= 0.5
            table.setdefault(kind, []).append((dice(prior, truth), dice(refined, truth)))
    # cvc612-seq (another centre): the previous frame's true mask carried by the optical flow
    from napari_polyp.video import _Carrier, _Reader

    (_, frames, truths), = load_cvc612(data_root)
    carrier = _Carrier(_Reader(frames, len(frames)), None, 320, 9.0, 0.0)
    for t in range(1, len(frames)):
        warped, _ = carrier.flow.warp(truths[t - 1].astype(np.float32), carrier.reader.small(t - 1, 320),
                                      carrier.reader.small(t, 320))
        refined = refine_mask(frames[t], warped, runner) >= 0.5
        table.setdefault("cvc612-seq: previous true mask, warped by flow (n=19)", []).append(
            (dice(warped >= 0.5, truths[t]), dice(refined, truths[t])))
    print("\n| prior (Kvasir-SEG validation, n=%d, unless named) | prior Dice | refined, no clicks | refined better |"
          % count)
    print("|---|---|---|---|")
    for kind, values in table.items():
        v = np.asarray(values)
        print(f"| {kind} | {v[:, 0].mean():.3f} | {v[:, 1].mean():.3f} | {np.mean(v[:, 1] > v[:, 0] + 1e-9):.0%} |")


# -- temporal smoothing ---------------------------------------------------------------------------

def smoothing_rows(name, frames, truths, probs, network: str, weights):
    from napari_polyp.video import smooth_probabilities

    rows = []
    for weight in weights:
        started = time.perf_counter()
        smoothed = list(smooth_probabilities(frames, probs, weight)) if weight else list(probs)
        seconds = time.perf_counter() - started
        rows.append({"sequence": name, "smoothing": weight, "network": network, "frames": len(frames),
                     "dice": [dice(p >= 0.5, t) for p, t in zip(smoothed, truths)], "seconds": seconds})
    return rows


def smoothing_table(rows):
    print("\n| set | network | previous frame's share | Dice of every frame | frames/s of smoothing |")
    print("|---|---|---|---|---|")
    groups = {}
    for r in rows:
        groups.setdefault((group_of(r["sequence"]), r["network"], r["smoothing"]), []).append(r)
    for (group, network, weight), rs in groups.items():
        d = np.concatenate([r["dice"] for r in rs])
        fps = sum(r["frames"] for r in rs) / max(sum(r["seconds"] for r in rs), 1e-9) if weight else float("nan")
        print(f"| {group} (n={len(rs)}) | {network} | {weight} (off)" if not weight else
              f"| {group} (n={len(rs)}) | {network} | {weight}", end="")
        print(f" | {d.mean():.3f} | {'' if not weight else f'{fps:.0f}'} |")


# -- speed ----------------------------------------------------------------------------------------

def speed(data_root: Path, args):
    """Frames/s of propagate at 640×480: synthetic sequences, keys every 5, repeated; the
    refiner where the flow is unsure (default) and at every step (always: the worst case)."""
    from napari_polyp.video import propagate

    sequences = load_synthetic(data_root, 2, 60, args.seed + 1)
    print("\n| variant | frames | repeats | frames/s (median wall) | CPU ms/frame | refiner runs/frame | load average |")
    print("|---|---|---|---|---|---|---|")
    for variant in ("flow", "default", "always"):
        options = {k: v for k, v in variant_options(variant, args).items() if k != "network"}
        walls, cpus, runs, frames = [], [], [], 0
        for _ in range(3):
            for _, seq, truths in sequences:
                keys = {k: truths[k] for k in range(0, len(seq), 5)}
                started, cpu = time.perf_counter(), time.process_time()
                result = propagate(seq, keys, **options)
                walls.append(len(result.filled) / (time.perf_counter() - started))
                cpus.append((time.process_time() - cpu) / len(result.filled))
                runs.append(result.refiner_runs / len(result.filled))
                frames = len(result.filled)
        load = os.getloadavg()[0]
        print(f"| {variant} | {frames} × {len(sequences)} | 3 | {np.median(walls):.1f} | {1000 * np.median(cpus):.0f} | "
              f"{np.mean(runs):.2f} | {load:.1f} |", flush=True)


# -- report ------------------------------------------------------------------------------------

def summarise(rows, sets):
    print("\n| set | variant | keys | filled frames | propagated Dice | per-frame EA-DK | nearest key's mask | frames/s "
          "| CPU ms/frame | refiner runs/frame |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    groups = {}
    for r in rows:
        if "keys" not in r:
            continue
        groups.setdefault((group_of(r["sequence"]), r["variant"], r["keys"]), []).append(r)
    for (group, variant, keys), rs in groups.items():
        d = np.concatenate([r["dice"] for r in rs])
        net = np.concatenate([r["network"] for r in rs]) if rs[0]["network"] is not None else None
        cp = np.concatenate([r["copy"] for r in rs])
        frames = sum(r["filled"] for r in rs)
        fps = frames / max(sum(r["seconds"] for r in rs), 1e-9)
        cpu = f"{1000 * sum(r['cpu_seconds'] for r in rs) / frames:.0f}" if "cpu_seconds" in rs[0] else ""
        runs = f"{sum(r['refiner_runs'] for r in rs) / frames:.2f}" if "refiner_runs" in rs[0] else ""
        label = {"1": "every frame (one step)", "first": "first only"}.get(keys, f"every {keys}")
        print(f"| {group} (n={len(rs)}) | {variant} | {label} | {len(d)} | {d.mean():.3f} | "
              f"{'' if net is None else f'{net.mean():.3f}'} | {cp.mean():.3f} | {fps:.1f} | {cpu} | {runs} |")
    needed = [r for r in rows if "keys_needed" in r]
    if needed:
        print("\n| set | variant | key frames for every frame ≥ 0.85 (mean) | frames | share |")
        print("|---|---|---|---|---|")
        by = {}
        for r in needed:
            by.setdefault((group_of(r["sequence"]), r["variant"]), []).append(r)
        for (group, variant), rs in by.items():
            k = np.mean([r["keys_needed"] for r in rs])
            f = np.mean([r["frames"] for r in rs])
            print(f"| {group} (n={len(rs)}) | {variant} | {k:.1f} | {f:.0f} | {k / f:.0%} |")
    scored = [r for r in rows if r.get("quality") and r["keys"] in ("5", "10", "first")]
    if scored:
        from scipy.stats import spearmanr

        q = np.concatenate([r["quality"] for r in scored])
        d = np.concatenate([r["dice"] for r in scored])
        print(f"\nquality score against true Dice (filled frames, keys every 5/10/first, all variants): "
              f"Spearman {spearmanr(q, d).correlation:.2f}, n={len(q)}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default="cvc612-seq,synthetic")
    parser.add_argument("--variants", default="default,flow")
    parser.add_argument("--sequences", type=int, default=8)
    parser.add_argument("--length", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--fuse", type=float, default=0.25)
    parser.add_argument("--keys-needed", default="default", help="variants to count key frames for ('' none)")
    parser.add_argument("--no-network", action="store_true", help="skip the per-frame EA-DK comparison")
    parser.add_argument("--refiner-check", action="store_true")
    parser.add_argument("--refiner", default=None, help="a click-refiner checkpoint (default: the shipped one)")
    parser.add_argument("--speed", action="store_true", help="only frames/s at 640×480 (keys every 5)")
    parser.add_argument("--smoothing", default="", help="networks whose per-frame probabilities to smooth in "
                        "time, e.g. ea-dk,microaunet ('' none)")
    parser.add_argument("--smoothing-weights", default="0,0.3,0.5,0.7")
    parser.add_argument("--data-root", default=str(DATA))
    parser.add_argument("--json", default=None, help="write every row to this file")
    args = parser.parse_args(argv)
    import cv2

    cv2.setNumThreads(args.threads)
    data_root = Path(args.data_root)
    if args.refiner_check:
        refiner_check(data_root, 30, args.threads, args.seed, args.refiner)
        return 0
    if args.speed:
        speed(data_root, args)
        return 0
    sequences = []
    for name in args.sets.split(","):
        if name == "cvc612-seq":
            sequences += load_cvc612(data_root)
        elif name == "cvc612-seq-mp4":
            sequences += load_cvc612_mp4(data_root)
        elif name == "synthetic":
            sequences += load_synthetic(data_root, args.sequences, args.length, args.seed)
    variants = [v for v in args.variants.split(",") if v]
    rows, cache, smooth = [], {}, []
    print(json.dumps({"load_average": [round(v, 2) for v in os.getloadavg()], "threads": args.threads}))
    for name, frames, truths in sequences:
        probs = None if args.no_network else network_probabilities(frames, args.threads, cache)
        for network in [m for m in args.smoothing.split(",") if m]:
            p = probs if network == "ea-dk" and probs is not None else \
                network_probabilities(frames, args.threads, cache, network)
            weights = [float(w) for w in args.smoothing_weights.split(",")]
            for row in smoothing_rows(name, frames, truths, p, network, weights):
                smooth.append(row)
                print(json.dumps({k: (round(float(np.mean(v)), 4) if k == "dice" else v) for k, v in row.items()}),
                      flush=True)
        for row in score_sequence(name, frames, truths, probs, variants, args):
            rows.append(row)
            brief = {k: (round(float(np.mean(v)), 4) if isinstance(v, list) and v and not isinstance(v[0], str)
                         else v) for k, v in row.items()}
            print(json.dumps(brief), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows))
    summarise(rows, args.sets)
    if smooth:
        smoothing_table(smooth)
    print(json.dumps({"load_average": [round(v, 2) for v in os.getloadavg()]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
