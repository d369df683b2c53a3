"""Helpers for the `predict` archive tests: a tiny archive (two synthetic videos and three
images) and how to read its outputs."""
import json
from pathlib import Path

import numpy as np
from PIL import Image


def synthetic_frames(count: int, height: int = 48, width: int = 64, seed: int = 0):
    """A pink disc drifting over a textured background (a polyp-like blob that moves)."""
    rng = np.random.default_rng(seed)
    background = rng.integers(60, 120, (height, width, 3), dtype=np.uint8)
    yy, xx = np.mgrid[:height, :width]
    frames = []
    for t in range(count):
        frame = background.copy()
        cy, cx = height / 2 + 4 * np.sin(t / 5), 12 + (t * 2) % (width - 24)
        frame[(yy - cy) ** 2 + (xx - cx) ** 2 < 90] = (220, 110, 120)
        frames.append(frame)
    return frames


def make_video(path: Path, count: int, height: int = 48, width: int = 64, seed: int = 0) -> Path:
    from napari_polyp.io.video import write_video

    path.parent.mkdir(parents=True, exist_ok=True)
    return write_video(path, synthetic_frames(count, height, width, seed), fps=10)


def make_archive(root: Path, videos=((Path("exam1") / "clip.mp4", 18), (Path("clip2.mp4"), 10))) -> Path:
    """root/exam1/clip.mp4, root/clip2.mp4, root/stills/s0..s2.png"""
    for relative, count in videos:
        make_video(root / relative, count, seed=count)
    stills = root / "stills"
    stills.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(synthetic_frames(3, 40, 56, seed=7)):
        Image.fromarray(frame).save(stills / f"s{i}.png")
    return root


def read_outputs(out: Path) -> dict:
    """Every output under ``out`` as arrays: PNGs by relative path, each mask store's masks,
    probabilities and written frames (the manifest and lock files left out)."""
    from napari_polyp.io.mask_store import MaskStore

    found = {}
    for path in sorted(out.rglob("*.png")):
        found[str(path.relative_to(out))] = np.asarray(Image.open(path))
    for path in sorted(out.rglob("*.zarr")):
        store = MaskStore.open(path)
        name = str(path.relative_to(out))
        found[name + ":written"] = store.written()
        found[name + ":mask"] = np.stack([store.read(i) for i in range(len(store))])
        if store.has_probabilities:
            found[name + ":probability"] = np.stack([np.asarray(store._probability[i]) for i in range(len(store))])
    return found


def assert_same_outputs(a: dict, b: dict) -> None:
    assert sorted(a) == sorted(b)
    for key in a:
        assert np.array_equal(np.asarray(a[key]), np.asarray(b[key])), f"{key} differs"


def manifest_records(out: Path, name: str = "predict-run.jsonl") -> list:
    lines = (out / name).read_text().splitlines()[1:]
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except ValueError:
            pass
    return records
