"""A screenshot of Review on a video with keys (docs/review_video.png), scripted in the real window.

Writes cvc612-seq's 20 consecutive frames (another centre's colonoscopy, never trained on) as an
mp4, opens it in the Workspace's Review tab (the window fitted to a 1366×768 screen), fixes
frames 0 and 10 (their reference masks stand in for the annotator's corrections) and saves them,
two keys, presses Propagate ▶ from frame 0 with the shipped click refiner (to key 10, the two
directions blended), sorts the table *most uncertain first* and opens its top row: the most
doubted carried frame, with its carried mask. Prints the Dice of each carried frame against its
reference mask and its doubt.

    xvfb-run -s "-screen 0 1366x768x24" .venv/bin/python tools/review_video_screenshot.py [--out docs/review_video.png]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "cvc612-seq"

from click_mode_screenshot import dice, save_window, wait  # noqa: E402 (tools/ is the script's folder)


def main(argv=None) -> None:
    import napari
    from qtpy.QtWidgets import QApplication

    from napari_polyp.app import fit_window
    from napari_polyp.io import read_image, read_mask
    from napari_polyp.io.video import write_video

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "review_video.png")
    parser.add_argument("--frames", type=int, default=10, help="frames one Propagate fills")
    args = parser.parse_args(argv)
    images = sorted((DATA / "images").iterdir())
    truths = [read_mask(p) > 0 for p in sorted((DATA / "masks").iterdir())]
    with tempfile.TemporaryDirectory() as tmp:
        clip = write_video(Path(tmp) / "cvc612-seq.mp4", [read_image(p) for p in images], fps=25)
        viewer = napari.Viewer()
        app = QApplication.instance()
        dock, workspace = viewer.window.add_plugin_dock_widget("napari-polyp", "Workspace")
        fit_window(viewer, dock)
        review = workspace.review
        review.set_dataset(Path(tmp) / "corrections")
        review.set_source(clip)
        wait(app, lambda: not review.busy and review.labels_layer() is not None)
        review.advance_check.setChecked(False)
        for key in (args.frames, 0):  # frames fixed by hand and saved: keys
            review.open_item(key, confirm=False)
            wait(app, lambda: not review.busy and review.labels_layer() is not None)
            review.labels_layer().data = truths[key].astype(np.uint8)
            review.save("corrected")
        started = time.perf_counter()
        review.propagate(+1)
        wait(app, lambda: review._propagation is None)
        seconds = time.perf_counter() - started
        video = review.video_review
        scores = {t: dice(video.propagated(t).mask(0.5) > 0, truths[t])
                  for t in range(1, args.frames) if video.propagated(t) is not None}
        print(f"propagated {len(scores)} frames in {seconds:.1f} s; Dice against the reference (doubt): "
              + ", ".join(f"{t}: {d:.3f} ({video.doubt(t):.2f})" for t, d in scores.items())
              + f"; mean {np.mean(list(scores.values())):.3f}")
        review.order_combo.setCurrentText("most uncertain first")
        review.open_item(review.order()[0])
        wait(app, lambda: not review.busy and review.labels_layer() is not None)
        save_window(viewer, app, args.out)
        viewer.close()


if __name__ == "__main__":
    main()
