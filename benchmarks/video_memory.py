"""Peak memory while a 5-minute 25 fps video is open in napari through the napari-polyp reader.

    xvfb-run -a python benchmarks/video_memory.py [--video /tmp/synthetic_5min.mp4] [--minutes 5] [--size 3840x2160]

Writes a synthetic video once (640x480, 25 fps, H.264 through imageio-ffmpeg;
moving shapes so that frames differ), then, in a fresh process: opens napari,
opens the video with the reader, steps through frames (a forward run and random
jumps, as a user scrubbing the slider does), and optionally runs one network on
the current frame (T-stacked mask/probability/attention layers). Prints the
process RSS (resident memory) at each step and the peak, sampled every 5 ms.
The whole video as raw RGB would take T*H*W*3 bytes; that figure is printed for scale.
"""
from __future__ import annotations

import argparse
import random
import subprocess
import sys
import threading
import time
from pathlib import Path


def generate(path: Path, minutes: float, fps: int = 25, size=(640, 480)) -> None:
    import imageio_ffmpeg
    import numpy as np

    width, height = size
    frames = int(round(minutes * 60 * fps))
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([(xx * 255 // width), (yy * 255 // height), np.full_like(xx, 90)], -1).astype(np.uint8)
    writer = imageio_ffmpeg.write_frames(str(path), (width, height), fps=fps, codec="libx264",
                                         quality=None, bitrate=None, pix_fmt_in="rgb24",
                                         output_params=["-preset", "ultrafast", "-crf", "28"],
                                         macro_block_size=16)
    writer.send(None)
    for t in range(frames):
        frame = np.roll(base, shift=(t * 3) % width, axis=1)
        cy, cx = height // 2 + int(100 * np.sin(t / 25)), (t * 5) % width
        frame[max(0, cy - 30):cy + 30, max(0, cx - 30):cx + 30] = (250, 200, 40)
        writer.send(np.ascontiguousarray(frame))
    writer.close()


class PeakRSS:
    def __init__(self, interval=0.005):
        import psutil

        self.process = psutil.Process()
        self.peak = self.process.memory_info().rss
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(self.interval)

    def now(self) -> int:
        rss = self.process.memory_info().rss
        self.peak = max(self.peak, rss)
        return rss

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def mib(n: int) -> str:
    return f"{n / 2**20:8.1f} MiB"


def measure(path: Path, frames_to_step: int, predict_with: str) -> None:
    import napari
    from qtpy.QtWidgets import QApplication

    with PeakRSS() as rss:
        viewer = napari.Viewer(show=True)
        QApplication.processEvents()
        print(f"napari open, no layer:            {mib(rss.now())}")
        start = time.perf_counter()
        [layer] = viewer.open(str(path), plugin="napari-polyp")
        QApplication.processEvents()
        opened = time.perf_counter() - start
        t, h, w, _ = layer.data.shape
        print(f"video opened ({t} frames {w}x{h}, {opened:.2f} s): {mib(rss.now())}"
              f"   (raw RGB would be {t * h * w * 3 / 2**30:.1f} GiB)")
        start = time.perf_counter()
        for i in range(frames_to_step):
            viewer.dims.set_current_step(0, i)
            QApplication.processEvents()
        forward = (time.perf_counter() - start) / max(frames_to_step, 1)
        print(f"stepped frames 0..{frames_to_step - 1} ({1000 * forward:.1f} ms/frame): {mib(rss.now())}")
        rng = random.Random(0)
        jumps = [rng.randrange(t) for _ in range(20)]
        start = time.perf_counter()
        for i in jumps:
            viewer.dims.set_current_step(0, i)
            QApplication.processEvents()
        jump = (time.perf_counter() - start) / len(jumps)
        print(f"20 random jumps ({1000 * jump:.0f} ms/jump):        {mib(rss.now())}")
        if predict_with:
            from napari_polyp.widgets.segment import RANDOM_WEIGHTS, SegmentWidget

            widget = SegmentWidget(viewer)
            viewer.window.add_dock_widget(widget)
            widget.image_combo.setCurrentText(layer.name)
            widget.model_combo.setCurrentText(predict_with)
            widget.checkpoint_combo.setCurrentText(RANDOM_WEIGHTS)
            widget.device_combo.setCurrentText("cpu")
            widget.run()
            while widget.busy:
                QApplication.processEvents()
                time.sleep(0.005)
            if widget.last_error:
                print("prediction failed:", widget.last_error)
            print(f"after {predict_with} on one frame (T-stacked layers): {mib(rss.now())}")
        viewer.close()
    print(f"PEAK RSS while the video was open:  {mib(rss.peak)}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", type=Path, default=Path("/tmp/synthetic_5min_640x480.mp4"))
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--step", type=int, default=100, help="frames to step through one by one")
    parser.add_argument("--predict-with", default="microaunet", help="network to run on one frame ('' to skip)")
    parser.add_argument("--generate-only", action="store_true")
    parser.add_argument("--size", default="640x480", help="WIDTHxHEIGHT of the generated video (4K: 3840x2160)")
    args = parser.parse_args(argv)
    size = tuple(int(v) for v in args.size.lower().split("x"))
    if args.generate_only:
        generate(args.video, args.minutes, size=size)
        return 0
    if not args.video.exists():
        start = time.perf_counter()
        # In a child process, so that encoding does not count towards the peak measured here.
        subprocess.run([sys.executable, __file__, "--video", str(args.video), "--minutes", str(args.minutes),
                        "--size", args.size, "--generate-only"], check=True)
        print(f"wrote {args.video} ({args.video.stat().st_size / 2**20:.1f} MiB) in "
              f"{time.perf_counter() - start:.0f} s")
    measure(args.video, args.step, args.predict_with)
    return 0


if __name__ == "__main__":
    sys.exit(main())
