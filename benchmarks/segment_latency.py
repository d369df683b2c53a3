"""Time from pressing Run in the Segment widget to the mask layer being there, per network.

    xvfb-run -a python benchmarks/segment_latency.py [--models a,b] [--repeats 5] [--device cpu]

For each network: the sample colonoscopy image (Kvasir-SEG, 384x363), a real
napari viewer with the Segment widget, the network's default checkpoint (random
weights where none is shipped). The first press includes building the network
("cold"); the next ``--repeats`` presses reuse the cached Predictor, and their
median is the figure reported. Measured: Run clicked -> mask layer updated on the
main thread (the next repaint follows within one event-loop turn).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="", help="comma-separated (default: all registered)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    args = parser.parse_args(argv)

    import torch
    if args.threads:
        torch.set_num_threads(args.threads)
    import napari
    from qtpy.QtWidgets import QApplication

    import models
    from napari_polyp.io.samples import colonoscopy_sample
    from napari_polyp.widgets.segment import SegmentWidget

    names = [m for m in args.models.split(",") if m] or models.list_models()
    viewer = napari.Viewer(show=True)
    (image, meta, _), _truth = colonoscopy_sample()
    viewer.add_image(image, **meta)
    widget = SegmentWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Segment")
    widget.device_combo.setCurrentText(args.device)

    def press_run() -> float:
        widget.run_button.click()
        while widget.busy:
            QApplication.processEvents()
            time.sleep(0.002)
        QApplication.processEvents()
        if widget.last_error:
            raise RuntimeError(widget.last_error)
        return widget.last_latency_s

    print(f"image {image.shape[1]}x{image.shape[0]}, device {args.device}, torch threads "
          f"{torch.get_num_threads()}, cpus {os.cpu_count()}, load avg {os.getloadavg()[0]:.2f}")
    print(f"{'network':12s} {'weights':28s} {'cold s':>7s} {'median s':>9s}  runs")
    rows = []
    for name in names:
        widget.model_combo.setCurrentText(name)
        weights = widget.checkpoint_combo.currentText()
        cold = press_run()
        warm = [press_run() for _ in range(args.repeats)]
        median = statistics.median(warm)
        rows.append((name, weights, cold, median, warm))
        print(f"{name:12s} {weights:28s} {cold:7.3f} {median:9.3f}  " + " ".join(f"{t:.3f}" for t in warm),
              flush=True)
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
