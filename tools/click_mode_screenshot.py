"""A screenshot of Click mode in use (docs/click_mode.png), scripted in the real window.

Opens a few Kvasir-SEG images with their reference masks in the Workspace (the window fitted
to a 1366×768 screen), lets a network predict the first, enters Click mode (key K) and makes a
few clicks as an annotator would: each at the point deepest inside the larger error region
(the NoC protocol's simulated annotator, :func:`napari_polyp.corrections.clicks.protocol_click`),
sent through the canvas like a mouse click (left = lesion, right = background). The refiner
is the shipped one (models/checkpoints/click-refiner.pt). The window is saved with the Correct
tab open, and the Dice against the reference after each click is printed.

    xvfb-run -s "-screen 0 1366x768x24" .venv/bin/python tools/click_mode_screenshot.py \
        [--out docs/click_mode.png] [--network microaunet] [--clicks 3] [--image 0]
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "kvasir-seg"

from napari_polyp.app import wait_until  # noqa: E402 -- after the path above

CORRECT_TAB = 2



def sample(n: int, first: int, out: Path) -> Path:
    images, masks = out / "images", out / "masks"
    images.mkdir(parents=True)
    masks.mkdir()
    for path in sorted((DATA / "images").iterdir())[first:first + n]:
        shutil.copy(path, images / path.name)
        shutil.copy(next((DATA / "masks").glob(path.stem + ".*")), masks / path.name)
    return images


def dice(mask, truth) -> float:
    return 2 * float((mask & truth).sum()) / max(float(mask.sum() + truth.sum()), 1.0)


def close_toasts(viewer) -> None:
    """The notification toasts (napari's PyQt5 deprecation notice) would cover the canvas."""
    from napari._qt.dialogs.qt_notification import NapariQtNotification

    for toast in viewer.window._qt_window.findChildren(NapariQtNotification):
        toast.close()


def save_window(viewer, app, out: Path) -> None:
    """The whole window as a PNG, once the toasts are closed and the dock has settled."""
    close_toasts(viewer)
    end = time.perf_counter() + 0.5  # the dock's layout follows the last message
    while time.perf_counter() < end:
        app.processEvents()
        time.sleep(0.01)
    app.processEvents()
    out.parent.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(path=str(out), canvas_only=False, flash=False)
    print(f"screenshot {out} ({viewer.window._qt_window.width()}×{viewer.window._qt_window.height()})")


def main(argv=None) -> None:
    import napari
    from qtpy.QtWidgets import QApplication

    from napari_polyp.app import fit_window
    from napari_polyp.corrections.clicks import protocol_click
    from napari_polyp.io.masks import read_mask

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "click_mode.png")
    parser.add_argument("--network", default="microaunet", help="the network whose mask is corrected")
    parser.add_argument("--clicks", type=int, default=3)
    parser.add_argument("--image", type=int, default=0, help="which Kvasir-SEG image (sorted by name) to open")
    args = parser.parse_args(argv)
    if not (ROOT / "models" / "checkpoints" / "click-refiner.pt").is_file():
        raise SystemExit("models/checkpoints/click-refiner.pt is not there: no shipped refiner to show")
    with tempfile.TemporaryDirectory() as tmp:
        images = sample(3, args.image, Path(tmp) / "kvasir")
        viewer = napari.Viewer()
        app = QApplication.instance()
        dock, workspace = viewer.window.add_plugin_dock_widget("napari-polyp", "Workspace")
        fit_window(viewer, dock)
        workspace.segment.model_combo.setCurrentText(args.network)
        review = workspace.review
        review.set_dataset(Path(tmp) / "out")
        review.set_source(images)
        wait_until(lambda: not review.busy and review.labels_layer() is not None)
        name = review.session.items[review.current].name
        truth = read_mask(images.parent / "masks" / name) > 0
        workspace.tabs.setCurrentIndex(CORRECT_TAB)
        mode = workspace.click_mode
        labels = viewer.layers["Review mask"]
        review.reference_check.setChecked(False)  # the clicks and the mask alone
        mode.toggle()
        wait_until(lambda: not mode.loading)  # the refiner loads while the annotator aims
        mask = np.asarray(labels.data) > 0
        print(f"{name}: {args.network} Dice {dice(mask, truth):.3f}")
        canvas = viewer.window._qt_viewer.canvas
        for _ in range(args.clicks):
            click = protocol_click(mask, truth)
            if click is None:
                break
            mapped = canvas.view.scene.transform.map([click.col, click.row, 0, 1])
            pos = mapped[:2] / mapped[3]
            button = 1 if click.positive else 2
            canvas._scene_canvas.events.mouse_press(pos=pos, button=button, modifiers=())
            canvas._scene_canvas.events.mouse_release(pos=pos, button=button, modifiers=())
            wait_until(lambda: not mode.busy)
            mask = np.asarray(labels.data) > 0
            print(f"{'positive' if click.positive else 'negative'} click at ({click.row}, {click.col}): "
                  f"Dice {dice(mask, truth):.3f} ({mode.last_seconds * 1000:.0f} ms) — {mode.message}")
        save_window(viewer, app, args.out)
        viewer.close()


if __name__ == "__main__":
    main()
