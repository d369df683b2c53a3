"""Pre-annotation throughput: `napari-polyp predict` in one process against a local Ray with
2 workers, in the same run, on the same synthetic videos; memory per worker; and, on paper,
what 1,000 one-hour examinations cost on N nodes.

    .venv/bin/python benchmarks/predict_ray.py                       # EA-DK, 2 videos x 300 frames, 640x480
    .venv/bin/python benchmarks/predict_ray.py --model microaunet --frames 600 --json

Each mode is a fresh `napari-polyp predict ... --json` process (the one-process run with
--threads 2, the Ray run with --cluster ray --workers 2 --cpus-per-worker 1, so each actor's
network has one thread); the network's graph is exported before either runs. Figures:
- frames/s end to end: frames / the command's wall time (Ray's start and the actors' included);
- frames/s compute: frames / the time from the first chunk handed out to the last record
  (actors starting included, Ray's own start not);
- frames/s per worker, steady: a worker's frames / the seconds its chunks took (no start-up);
- peak memory per worker: the peak resident memory each worker process reported (its
  ``ru_maxrss``; for one process, the whole process: driver and network).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "napari_polyp" / "io" / "sample_data" / "cju2nfnvxzdkd0878399axlco.jpg"
HOUR_FRAMES = 25 * 3600  # one hour of video at 25 fps


def make_video(path: Path, frames: int, width: int, height: int, seed: int) -> Path:
    """A camera panning and zooming over a Kvasir-SEG sample (upscaled): H.264, 25 fps."""
    from PIL import Image

    from napari_polyp.io.video import write_video

    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.open(SAMPLE).convert("RGB")
    big = np.asarray(image.resize((int(width * 1.6), int(height * 1.6)), Image.BICUBIC))
    rng = np.random.default_rng(seed)
    phase = rng.uniform(0, 6.28)

    def frame(t):
        x = int((big.shape[1] - width) * (0.5 + 0.5 * np.sin(t / 40 + phase)))
        y = int((big.shape[0] - height) * (0.5 + 0.5 * np.cos(t / 55 + phase)))
        return np.ascontiguousarray(big[y:y + height, x:x + width])

    return write_video(path, (frame(t) for t in range(frames)), fps=25)


def predict(inputs, out: Path, extra, env) -> dict:
    command = [sys.executable, "-m", "napari_polyp.cli", "predict", *map(str, inputs), "--out", str(out),
               "--quiet", "--json", *extra]
    started = time.monotonic()
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, env=env, timeout=3600)
    wall = time.monotonic() - started
    if result.returncode != 0:
        raise SystemExit(f"predict failed ({result.returncode}): {result.stderr[-3000:]}")
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    summary["wall_seconds"] = round(wall, 2)
    records = [json.loads(line) for line in (out / "predict-run.jsonl").read_text().splitlines()[1:] if line.strip()]
    per_worker = {}
    for record in records:
        if record.get("status") == "done":
            frames, seconds = per_worker.get(record["worker"], (0, 0.0))
            per_worker[record["worker"]] = (frames + record["frames"], seconds + record["seconds"])
    summary["steady_fps_per_worker"] = {w: round(f / s, 2) for w, (f, s) in per_worker.items() if s > 0}
    return summary


def paper_estimate(per_core_fps: float, cores_per_node=(16, 32), nodes=(1, 10, 50, 100), exams: int = 1000) -> list:
    """Hours to pre-annotate ``exams`` one-hour examinations with one 1-thread worker per core,
    assuming the per-core rate measured here holds on every core (no shared-storage limit)."""
    frames = exams * HOUR_FRAMES
    rows = []
    for cores in cores_per_node:
        for count in nodes:
            hours = frames / (per_core_fps * cores * count) / 3600
            rows.append({"cores_per_node": cores, "nodes": count, "hours": round(hours, 1),
                         "core_hours": round(frames / per_core_fps / 3600)})
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ea-dk")
    parser.add_argument("--videos", type=int, default=2)
    parser.add_argument("--frames", type=int, default=300, help="frames per video")
    parser.add_argument("--size", default="640x480", help="WIDTHxHEIGHT of the videos")
    parser.add_argument("--chunk-frames", type=int, default=50)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}  # the local Ray on 127.0.0.1 only
    with tempfile.TemporaryDirectory(prefix="predict-ray-") as tmp:
        tmp = Path(tmp)
        videos = [make_video(tmp / "in" / f"exam{i}.mp4", args.frames, width, height, seed=i)
                  for i in range(args.videos)]
        base = ["--model", args.model, "--engine", "onnxruntime", "--chunk-frames", str(args.chunk_frames)]
        warm = make_video(tmp / "warm" / "warm.mp4", 3, width, height, seed=99)
        predict([warm], tmp / "warm-out", base, env)  # the graph is exported (or found) before either mode
        load = os.getloadavg()[0]
        one = predict(videos, tmp / "one", base + ["--threads", "2"], env)
        on_ray = predict(videos, tmp / "ray", base + ["--cluster", "ray", "--workers", "2", "--cpus-per-worker", "1"],
                         env)
        load_after = os.getloadavg()[0]
    frames = args.videos * args.frames
    per_core = float(np.mean(list(on_ray["steady_fps_per_worker"].values())))
    result = {
        "model": args.model, "videos": args.videos, "frames": frames, "size": args.size,
        "load_average": [round(load, 2), round(load_after, 2)], "cores": os.cpu_count(),
        "one_process": {"fps_end_to_end": round(frames / one["wall_seconds"], 2), "fps_compute": one["frames_per_s"],
                        "wall_s": one["wall_seconds"], "peak_rss_mb": one["peak_rss_mb_per_worker"],
                        "steady_fps": one["steady_fps_per_worker"]},
        "ray_2_workers": {"fps_end_to_end": round(frames / on_ray["wall_seconds"], 2),
                          "fps_compute": on_ray["frames_per_s"], "wall_s": on_ray["wall_seconds"],
                          "ray_start_s": on_ray.get("ray_connect_seconds"),
                          "peak_rss_mb_per_worker": on_ray["peak_rss_mb_per_worker"],
                          "steady_fps_per_worker": on_ray["steady_fps_per_worker"]},
    }
    result["ratio_ray_over_one_compute"] = round(on_ray["frames_per_s"] / one["frames_per_s"], 2)
    result["ratio_ray_over_one_end_to_end"] = round(one["wall_seconds"] / on_ray["wall_seconds"], 2)
    result["paper_1000_one_hour_exams"] = paper_estimate(per_core)
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{args.model}, {args.videos} videos x {args.frames} frames at {args.size} (load average "
          f"{load:.2f} -> {load_after:.2f}, {os.cpu_count()} cores)")
    for name, row in (("one process, 2 threads", result["one_process"]), ("local Ray, 2 workers x 1", result["ray_2_workers"])):
        print(f"  {name:26s} end to end {row['fps_end_to_end']:6.2f} frames/s ({row['wall_s']:.1f} s), compute "
              f"{row['fps_compute']:6.2f} frames/s, peak RSS MiB per worker {list((row.get('peak_rss_mb') or row['peak_rss_mb_per_worker']).values())}")
    print(f"  Ray / one process: compute {result['ratio_ray_over_one_compute']}x, end to end "
          f"{result['ratio_ray_over_one_end_to_end']}x; Ray start {on_ray.get('ray_connect_seconds')} s; "
          f"steady per worker {list(on_ray['steady_fps_per_worker'].values())} frames/s")
    print(f"  1,000 one-hour exams ({1000 * HOUR_FRAMES:,} frames) at {per_core:.1f} frames/s per core:")
    for row in result["paper_1000_one_hour_exams"]:
        print(f"    {row['nodes']:4d} nodes x {row['cores_per_node']} cores: {row['hours']:8.1f} h "
              f"({row['core_hours']:,} core-hours)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
