"""A screenshot of refine-from-strokes in use (docs/refine_in_use.png), scripted in the real window.

Opens three Kvasir-SEG images with their reference masks in the Workspace (1366×768), lets
MicroAUNet predict the first, paints one foreground stroke (label 1) inside the largest missed
part of the polyp and one background stroke (label 2) inside the largest false alarm, as the
annotator would with the brush, presses Refine, and saves the window with the Correct tab open.

    xvfb-run -s "-screen 0 1920x1080x24" .venv/bin/python benchmarks/refine_screenshot.py [--out docs/refine_in_use.png]
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from scipy import ndimage

from review_20 import laptop_window, sample_folder, wait

CORRECT_TAB = 2


def stroke_in_largest(region: np.ndarray, radius: int = 6):
    """A disc of ``radius`` at the point deepest inside the largest connected part of ``region``."""
    labelled, count = ndimage.label(region)
    if count == 0:
        return None
    sizes = ndimage.sum(region, labelled, range(1, count + 1))
    largest = labelled == (1 + int(np.argmax(sizes)))
    depth = ndimage.distance_transform_edt(largest)
    cy, cx = np.unravel_index(int(np.argmax(depth)), depth.shape)
    yy, xx = np.ogrid[:region.shape[0], :region.shape[1]]
    return ((yy - cy) ** 2 + (xx - cx) ** 2 <= radius ** 2) & largest


def main(argv=None) -> None:
    import napari
    from qtpy.QtWidgets import QApplication

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/refine_in_use.png"))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        images = sample_folder("kvasir-seg", 3, Path(tmp) / "kvasir")
        viewer = napari.Viewer()
        app = QApplication.instance()
        laptop_window(viewer)
        _, workspace = viewer.window.add_plugin_dock_widget("napari-polyp", "Workspace")
        workspace.segment.model_combo.setCurrentText("microaunet")
        review = workspace.review
        review.set_dataset(Path(tmp) / "out")
        review.set_source(images)
        wait(app, lambda: not review.busy and review.labels_layer() is not None)
        mask = np.asarray(review.labels_layer().data) > 0
        reference = np.asarray(review._layer(next(n for n in (layer.name for layer in viewer.layers)
                                                  if n.endswith("reference"))).data) > 0
        workspace.draw_strokes()
        strokes = review.strokes_layer(create=True)
        painted = np.zeros(mask.shape, np.uint8)
        for label, region in ((1, reference & ~mask), (2, mask & ~reference)):
            disc = stroke_in_largest(region)
            if disc is not None:
                painted[disc] = label
        strokes.data = painted
        before = mask.copy()
        changed = review.refine()
        after = np.asarray(review.labels_layer().data) > 0
        dice = lambda m: 2 * (m & reference).sum() / max(m.sum() + reference.sum(), 1)  # noqa: E731
        print(f"refine changed {changed} pixels; Dice vs reference {dice(before):.3f} -> {dice(after):.3f}")
        workspace.tabs.setCurrentIndex(CORRECT_TAB)
        app.processEvents()
        args.out.parent.mkdir(parents=True, exist_ok=True)
        viewer.screenshot(path=str(args.out), canvas_only=False, flash=False)
        print(f"screenshot {args.out}")
        viewer.close()


if __name__ == "__main__":
    main()
