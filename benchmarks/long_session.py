"""An annotator's long session in the real window: does anything grow or slow down item after item?

    xvfb-run -a -s "-screen 0 1366x768x24" .venv/bin/python benchmarks/long_session.py \
        [--items 60] [--clicks 3] [--network ea-dk] [--every 10] [--look 0.5]

Opens ``--items`` Kvasir-SEG images (with their reference masks beside them) in the Workspace docked
through napari's plugin path, the window fitted to a 1366×768 screen, and for each one as an
annotator would: waits for the network's mask (the Segment tab's default: flip TTA and the second
opinion where they fit; the next item's is predicted meanwhile, Review's look-ahead), looks at it for
``--look`` seconds, enters Click mode (the Correct tab's key K), makes ``--clicks`` clicks
through the canvas at the NoC protocol's point (``clicks.protocol_click``; left = lesion, right =
background), saves the item as corrected (which opens the next one). Prints, every ``--every`` items
and at the end: the process's resident memory, napari's layer count, the seconds from opening an
item to its mask and per click (medians of the last block), and Dice against the reference before
and after the clicks. What a growing figure points to: a cache or a layer that outlives its item.
"""
from __future__ import annotations

import argparse
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data" / "kvasir-seg"

from napari_polyp.app import wait_until  # noqa: E402 -- after the path above

CORRECT_TAB = 2


def rss_mib() -> float:
    """Resident memory now (Linux /proc), MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024



def copy_items(n: int, out: Path) -> Path:
    """The first ``n`` Kvasir-SEG images and, beside them, their reference masks."""
    images, masks = out / "images", out / "masks"
    images.mkdir(parents=True)
    masks.mkdir()
    for path in sorted((DATA / "images").iterdir())[:n]:
        shutil.copy(path, images / path.name)
        shutil.copy(next((DATA / "masks").glob(path.stem + ".*")), masks / path.name)
    return images


def dice(mask, truth) -> float:
    return 2 * float((mask & truth).sum()) / max(float(mask.sum() + truth.sum()), 1.0)


def click_through_canvas(viewer, row: int, col: int, positive: bool) -> None:
    canvas = viewer.window._qt_viewer.canvas
    mapped = canvas.view.scene.transform.map([col, row, 0, 1])
    pos = mapped[:2] / mapped[3]
    button = 1 if positive else 2
    canvas._scene_canvas.events.mouse_press(pos=pos, button=button, modifiers=())
    canvas._scene_canvas.events.mouse_release(pos=pos, button=button, modifiers=())


def report(block: list, item: int, start_rss: float, viewer) -> None:
    opened = statistics.median(r["open_s"] for r in block)
    clicks = [s for r in block for s in r["click_s"]]
    print(f"items {item - len(block) + 1:3d}-{item:3d}: memory {rss_mib():7.1f} MiB ({rss_mib() - start_rss:+7.1f} since "
          f"item 1), layers {len(viewer.layers)}, open → mask {opened:.2f} s, click "
          f"{statistics.median(clicks) if clicks else float('nan'):.3f} s (median), Dice "
          f"{np.mean([r['dice_before'] for r in block]):.3f} → {np.mean([r['dice_after'] for r in block]):.3f}",
          flush=True)


def main(argv=None) -> int:
    import napari

    from napari_polyp.app import fit_window
    from napari_polyp.corrections.clicks import protocol_click
    from napari_polyp.io.masks import read_mask

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=60)
    parser.add_argument("--clicks", type=int, default=3)
    parser.add_argument("--network", default="ea-dk")
    parser.add_argument("--every", type=int, default=10, help="print a line every this many items")
    parser.add_argument("--look", type=float, default=0.0,
                        help="seconds the annotator looks at each mask before the first click (0: clicks at once, "
                             "while the next item is predicted ahead: the worst case for a click's time)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        images = copy_items(args.items, Path(tmp) / "kvasir")
        viewer = napari.Viewer()
        dock, workspace = viewer.window.add_plugin_dock_widget("napari-polyp", "Workspace")
        fit_window(viewer, dock)
        workspace.segment.model_combo.setCurrentText(args.network)
        review, mode = workspace.review, workspace.click_mode
        review.set_dataset(Path(tmp) / "corrections")
        began = time.perf_counter()
        review.set_source(images)
        rows, block, start_rss = [], [], None
        for item in range(1, args.items + 1):
            wait_until(lambda: not review.busy and review.labels_layer() is not None
                 and review.labels_layer().data.shape == review.image_layer().data.shape[:2])
            opened = time.perf_counter() - began
            name = review.session.items[review.current].name
            truth = read_mask(images.parent / "masks" / name) > 0
            labels = review.labels_layer()
            workspace.tabs.setCurrentIndex(CORRECT_TAB)
            if not mode.active:
                mode.toggle()
            wait_until(lambda: not mode.loading)
            look_until = time.perf_counter() + args.look
            wait_until(lambda: time.perf_counter() >= look_until)
            mask = np.asarray(labels.data) > 0
            row = {"name": name, "open_s": opened, "click_s": [], "dice_before": dice(mask, truth)}
            for _ in range(args.clicks):
                click = protocol_click(mask, truth)
                if click is None:
                    break
                click_through_canvas(viewer, click.row, click.col, click.positive)
                wait_until(lambda: not mode.busy)
                row["click_s"].append(mode.last_seconds)
                mask = np.asarray(labels.data) > 0
            row["dice_after"] = dice(mask, truth)
            rows.append(row)
            block.append(row)
            if start_rss is None:
                start_rss = rss_mib()
            if item % args.every == 0 or item == args.items:
                report(block, item, start_rss, viewer)
                block = []
            current = review.current
            began = time.perf_counter()
            if review.save("corrected") is None:
                raise SystemExit(f"item {item} ({name}) was not saved: {review.last_error}")
            if item < args.items and review.current == current:
                review.next()
        saved = sum(1 for _ in (Path(tmp) / "corrections" / "masks").iterdir())
        print(f"{len(rows)} items, {sum(len(r['click_s']) for r in rows)} clicks, {saved} masks saved; "
              f"memory {rss_mib():.1f} MiB at the end")
        viewer.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
