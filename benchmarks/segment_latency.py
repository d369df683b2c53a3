"""Time from pressing Run in the Segment widget to the mask being there, on a *new* image, per network.

    xvfb-run -a python benchmarks/segment_latency.py [--models a,b] [--repeats 5] [--size 600]
        [--engine auto|torch|onnxruntime] [--threads N] [--new-image same-layer|new-layer]
        [--tta default|on|off] [--second-opinion default|on|off]

For each network: a real napari viewer with the Segment widget docked as users get it,
the network's default checkpoint (random weights where none is shipped). Each press
segments a new ``--size`` px colonoscopy image (new pixels each time): with
``same-layer`` (default) the image layer is given the new image, as Review's next
item does, and the output layers are re-used; with ``new-layer`` the previous image
layer is closed and a new one added on top (File > Open), which adds new output layers. The first press includes building the
network ("cold"; with ONNX Runtime, also loading or exporting its graph); the median
of the next ``--repeats`` presses is the figure reported. Measured: Run clicked -> the
mask layer updated on the main thread (the repaint follows within one event-loop turn).
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
    parser.add_argument("--size", type=int, default=600, help="side of the new image each press segments")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--engine", default="auto", choices=("auto", "torch", "onnxruntime"))
    parser.add_argument("--threads", type=int, default=0, help="network threads (default: physical cores)")
    parser.add_argument("--tta", default="default", choices=("default", "on", "off"),
                        help="flip TTA: the widget's default for each network, or forced")
    parser.add_argument("--second-opinion", default="default", choices=("default", "on", "off"),
                        help="the checking network (inference.second_opinion): the widget's default, or forced "
                             "(on: where the network has one)")
    parser.add_argument("--new-image", default="same-layer", choices=("same-layer", "new-layer"))
    args = parser.parse_args(argv)

    import napari
    import numpy as np
    from qtpy.QtWidgets import QApplication

    import models
    from napari_polyp.io.samples import colonoscopy_sample
    from skimage.transform import resize

    names = [m for m in args.models.split(",") if m] or models.list_models()
    viewer = napari.Viewer(show=True)
    (sample, _meta, _), _truth = colonoscopy_sample()
    base = (resize(sample, (args.size, args.size), preserve_range=True, anti_aliasing=True)).astype(np.uint8)
    _, widget = viewer.window.add_plugin_dock_widget("napari-polyp", "Segment")
    widget.device_combo.setCurrentText(args.device)
    widget.engine_combo.setCurrentText(args.engine)
    if args.threads:
        widget.threads_spin.setValue(args.threads)
    counter = iter(range(10**6))

    def open_new_image() -> None:
        n = next(counter)
        image = np.roll(base, shift=7 * n, axis=1)  # new pixels each time
        if args.new_image == "same-layer" and "photo" in viewer.layers:
            viewer.layers["photo"].data = image
        else:
            for layer in [lay for lay in viewer.layers if lay.name.startswith("photo") and getattr(lay, "rgb", False)]:
                viewer.layers.remove(layer)
            name = "photo" if args.new_image == "same-layer" else f"photo {n}"
            viewer.add_image(image, name=name, rgb=True)
            widget.image_combo.setCurrentText(name)
        QApplication.processEvents()

    def press_run() -> float:
        open_new_image()
        widget.run_button.click()
        while widget.busy:
            QApplication.processEvents()
            time.sleep(0.001)
        QApplication.processEvents()
        if widget.last_error:
            raise RuntimeError(widget.last_error)
        return widget.last_latency_s

    print(f"new {args.size}x{args.size} image per press ({args.new_image}), device {args.device}, engine {args.engine}, threads "
          f"{widget.threads_spin.value()}, cpus {os.cpu_count()}, load avg {os.getloadavg()[0]:.2f}")
    print(f"{'network':12s} {'engine':12s} {'TTA':4s} {'checked by':10s} {'weights':28s} {'cold s':>7s} "
          f"{'median s':>9s}  layers  runs")
    for name in names:
        widget.model_combo.setCurrentText(name)
        if args.tta != "default":
            widget.tta_check.setChecked(args.tta == "on")
        tta = "on" if widget.tta_check.isChecked() else "off"
        if args.second_opinion != "default":
            widget.second_check.setChecked(args.second_opinion == "on")
        checked_by = widget.second_opinion() or "-"
        weights = widget.checkpoint_combo.currentText()
        cold = press_run()
        layers_before = len(viewer.layers)
        warm = [press_run() for _ in range(args.repeats)]
        engine = widget.mask_layer().metadata.get("engine", "?")
        print(f"{name:12s} {engine:12s} {tta:4s} {checked_by:10s} {weights[:28]:28s} {cold:7.3f} {statistics.median(warm):9.3f}  "
              f"{layers_before}->{len(viewer.layers)}  " + " ".join(f"{t:.3f}" for t in warm), flush=True)
    print(f"load avg at end {os.getloadavg()[0]:.2f}")
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
