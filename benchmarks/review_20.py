"""Inputs and seconds to review 20 colonoscopy images, before and after the workspace;
and the workspace screenshots in docs/.

Scripts the real window (napari under Xvfb, 1366×768) on 20 Kvasir-SEG images with
their reference masks and the shipped MicroAUNet checkpoint:

- before: the three docks of the old design (Segment, Review, Clean up) with the Review
  widget as it was before the workspace (commit 64e9d88): each image is predicted when
  opened, the annotator clicks Accept (the old widget had keys only for next/previous);
  when the Accept button is below the window's edge, a scroll is needed first;
- after: the workspace dock, the window fitted to the screen (`app.fit_window`); one click on
  "Run on all", then key A per image, typed into the item table (the widget with focus).

Every input is sent through Qt (QTest clicks on the buttons and keys), and
the seconds are the wall time from opening the folder to the 20th record on disk: the
time spent waiting for the software, not a person's thinking time.

    xvfb-run -s "-screen 0 1920x1080x24" .venv/bin/python benchmarks/review_20.py [--shots docs/]
    xvfb-run -s "-screen 0 1024x768x24" .venv/bin/python benchmarks/review_20.py --after-only --size 1024x768 --shots docs/
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"

from napari_polyp.app import wait_until  # noqa: E402 -- after the path above

BEFORE_COMMIT = "64e9d88"
SIZE = (1366, 768)


def sample_folder(dataset: str, n: int, out: Path) -> Path:
    """``out/images`` and ``out/masks`` with the first ``n`` pairs of a shared data set."""
    images, masks = out / "images", out / "masks"
    images.mkdir(parents=True)
    masks.mkdir()
    for path in sorted((DATA / dataset / "images").iterdir())[:n]:
        shutil.copy(path, images / path.name)
        mask = next((DATA / dataset / "masks").glob(path.stem + ".*"))
        shutil.copy(mask, masks / mask.name)
    return images


def old_review_class():
    """The Review widget of BEFORE_COMMIT, loaded from git without touching the work tree."""
    source = subprocess.run(["git", "show", f"{BEFORE_COMMIT}:napari_polyp/widgets/review.py"], cwd=ROOT,
                            check=True, capture_output=True, text=True).stdout
    module = types.ModuleType("napari_polyp.widgets._review_before")
    module.__package__ = "napari_polyp.widgets"
    sys.modules[module.__name__] = module
    exec(compile(source, "review_before.py", "exec"), module.__dict__)  # noqa: S102 -- our own history
    return module.ReviewWidget



def records(folder: Path) -> int:
    manifest = folder / "manifest.jsonl"
    return len(manifest.read_text().splitlines()) if manifest.exists() else 0


def laptop_window(viewer):
    window = viewer.window._qt_window
    window.showNormal()
    window.resize(*SIZE)
    return window


def on_screen(widget, window) -> bool:
    bottom = widget.mapTo(window, widget.rect().bottomLeft()).y()
    return widget.isVisible() and 0 <= bottom <= window.height() and not widget.visibleRegion().isEmpty()


def run_before(app, images: Path, out: Path) -> dict:
    import napari
    from qtpy.QtCore import Qt
    from qtpy.QtTest import QTest

    from napari_polyp.widgets.cleanup import CleanupWidget
    from napari_polyp.widgets.segment import SegmentWidget

    viewer = napari.Viewer()
    window = laptop_window(viewer)
    viewer.window.add_dock_widget(SegmentWidget(viewer), name="Segment")
    review = old_review_class()(viewer, ask_unsaved=lambda name: "discard")
    viewer.window.add_dock_widget(review, name="Review")
    viewer.window.add_dock_widget(CleanupWidget(viewer), name="Clean up")
    review.model_combo.setCurrentText("microaunet")
    inputs = {"clicks": 0, "keys": 0, "scrolls": 0}
    start = time.perf_counter()
    review.set_dataset(out)
    review.set_source(images)
    accept = review.status_buttons["accepted"]
    while records(out) < 20:
        wait_until(lambda: not review.busy and review.labels_layer() is not None)
        if not on_screen(accept, window):
            inputs["scrolls"] += 1  # the annotator scrolls the dock to reach Accept
        QTest.mouseClick(accept, Qt.LeftButton)
        inputs["clicks"] += 1
        app.processEvents()
    seconds = time.perf_counter() - start
    accept_visible = on_screen(accept, window)
    viewer.close()
    return {"flow": "before", "seconds": round(seconds, 2), **inputs,
            "inputs": sum(inputs.values()), "accept_on_screen": accept_visible}


def run_after(app, images: Path, out: Path, shots: Path = None, size=SIZE) -> dict:
    import napari
    from qtpy.QtCore import QRect, Qt
    from qtpy.QtTest import QTest

    from napari_polyp.app import fit_window

    viewer = napari.Viewer()
    window = viewer.window._qt_window
    dock, workspace = viewer.window.add_plugin_dock_widget("napari-polyp", "Workspace")
    fit_window(viewer, dock, QRect(0, 0, *size))  # as `napari-polyp app` fits a screen of this size
    app.processEvents()
    review = workspace.review
    workspace.segment.model_combo.setCurrentText("microaunet")
    inputs = {"clicks": 0, "keys": 0, "scrolls": 0}
    start = time.perf_counter()
    review.set_dataset(out)
    review.set_source(images)
    QTest.mouseClick(review.run_all_button, Qt.LeftButton)
    inputs["clicks"] += 1
    shot_taken = False
    while records(out) < 20:
        wait_until(lambda: not review.busy and review.labels_layer() is not None)
        if shots is not None and not shot_taken:
            app.processEvents()
            name = "workspace_colonoscopy.png" if tuple(size) == SIZE else f"workspace_{size[0]}x{size[1]}.png"
            viewer.screenshot(path=str(shots / name), canvas_only=False, flash=False)
            shot_taken = True
        if not on_screen(review.status_buttons["accepted"], window):
            inputs["scrolls"] += 1
        # the key goes to the widget with focus, as a keyboard sends it: the item table after the
        # first click in it (napari's canvas used to be the only place the keys worked)
        review.item_list.setFocus()
        QTest.keyClick(review.item_list, Qt.Key_A)
        inputs["keys"] += 1
        app.processEvents()
    seconds = time.perf_counter() - start
    if shots is not None:
        wait_until(lambda: review._batch is None)
        review.order_combo.setCurrentText("worst Dice first")
        review.open_item(review.order()[0], confirm=False)
        wait_until(lambda: not review.busy and review.labels_layer() is not None)
        app.processEvents()
        viewer.screenshot(path=str(shots / "workspace_table.png"), canvas_only=False, flash=False)
        attention_shot(app, viewer, workspace, shots)
    viewer.close()
    return {"flow": "after", "window": f"{size[0]}x{size[1]}", "seconds": round(seconds, 2), **inputs,
            "inputs": sum(inputs.values()), "accept_on_screen": True}


def attention_shot(app, viewer, workspace, shots: Path) -> None:
    """MicroAUNet's map kept, EAM-Net's run on the same image, both side by side (grid)."""
    review = workspace.review
    workspace.tabs.setCurrentIndex(1)
    review.predict_current()  # MicroAUNet's maps of the item on screen (a saved item shows none)
    wait_until(lambda: not review.busy and review.labels_layer() is not None)
    workspace.keep_maps()
    workspace.segment.model_combo.setCurrentText("eam-net")
    review.predict_current()
    wait_until(lambda: not review.busy and review.labels_layer() is not None)
    workspace.side_by_side(True)
    app.processEvents()
    viewer.screenshot(path=str(shots / "attention_comparison.png"), canvas_only=False, flash=False)
    workspace.side_by_side(False)
    workspace.export_figure(shots / "attention_figure.png")


def dermoscopy_shot(app, images: Path, out: Path, shots: Path) -> None:
    import napari

    viewer = napari.Viewer()
    laptop_window(viewer)
    _, workspace = viewer.window.add_plugin_dock_widget("napari-polyp", "Workspace")
    workspace.segment.task_combo.setCurrentText("dermoscopy")
    review = workspace.review
    review.set_dataset(out)
    review.set_source(images)
    wait_until(lambda: not review.busy and review.labels_layer() is not None)
    review.contour_check.setChecked(True)
    app.processEvents()
    viewer.screenshot(path=str(shots / "workspace_dermoscopy.png"), canvas_only=False, flash=False)
    viewer.close()


def press(viewer, key: str) -> None:
    """What napari does on a key press in the canvas (the viewer's keymaps, ours included)."""
    from napari.utils.key_bindings import KeyBinding

    binding = KeyBinding.from_str(key)
    maps = [viewer.keymap] + [getattr(cls, "class_keymap", {}) for cls in type(viewer).__mro__]
    next(keymap[binding] for keymap in maps if binding in keymap)(viewer)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shots", type=Path, help="also write the workspace screenshots into this folder")
    parser.add_argument("--after-only", action="store_true", help="only the workspace flow (no old widget)")
    parser.add_argument("--size", default=f"{SIZE[0]}x{SIZE[1]}",
                        help="the screen the window is fitted to, WxH (default 1366x768)")
    args = parser.parse_args(argv)
    size = tuple(int(v) for v in args.size.lower().split("x"))
    os.environ.setdefault("NAPARI_POLYP_ENGINE", "torch")
    import torch
    from qtpy.QtWidgets import QApplication

    torch.set_num_threads(1)
    from napari._qt.qt_event_loop import get_qapp

    app = get_qapp()
    assert isinstance(app, QApplication)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        images = sample_folder("kvasir-seg", 20, tmp / "kvasir")
        results = [] if args.after_only else [run_before(app, images, tmp / "before")]
        results.append(run_after(app, images, tmp / "after", args.shots, size))
        if args.shots is not None and not args.after_only:
            dermoscopy_shot(app, sample_folder("ph2", 3, tmp / "ph2"), tmp / "ph2-out", args.shots)
    for result in results:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
