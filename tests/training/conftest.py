import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def copy_pairs(shared_data: Path, dest: Path, count: int = 8, dataset: str = "kvasir-seg") -> Path:
    """``count`` real image/mask pairs (the first stems) into dest/images + dest/masks."""
    src = shared_data / dataset
    (dest / "images").mkdir(parents=True, exist_ok=True)
    (dest / "masks").mkdir(parents=True, exist_ok=True)
    for image in sorted((src / "images").iterdir())[:count]:
        # shrink to 96 px on the long side: the trainer works at 64 px, this keeps reads fast
        with Image.open(image) as im:
            im.convert("RGB").resize((96, 80)).save(dest / "images" / f"{image.stem}.jpg", quality=95)
        with Image.open(src / "masks" / f"{image.stem}.png") as m:
            m.convert("L").resize((96, 80), Image.NEAREST).save(dest / "masks" / f"{image.stem}.png")
    return dest


@pytest.fixture
def tiny_data(shared_data, tmp_path) -> Path:
    """8 real Kvasir-SEG pairs (images/ + masks/)."""
    return copy_pairs(shared_data, tmp_path / "tiny")


def write_manifest(root: Path, statuses: dict) -> None:
    """A corrections manifest: an 'unreviewed' record, then the final status, per stem."""
    with open(root / "manifest.jsonl", "w") as fh:
        for version, (stem, status) in enumerate(sorted(statuses.items())):
            base = {"format_version": 1, "stem": stem, "image": f"images/{stem}.jpg", "mask": f"masks/{stem}.png",
                    "model": "microaunet", "threshold": 0.5, "note": "", "reviewer": "test"}
            fh.write(json.dumps({**base, "status": "unreviewed", "version": 1}) + "\n")
            fh.write(json.dumps({**base, "status": status, "version": 2}) + "\n")


def set_masks(root: Path, stems, value: int) -> None:
    for stem in stems:
        path = root / "masks" / f"{stem}.png"
        with Image.open(path) as m:
            shape = np.asarray(m).shape[:2]
        Image.fromarray(np.full(shape, value, np.uint8)).save(path)


@pytest.fixture
def no_shipped(tmp_path, monkeypatch):
    """As if the package shipped no checkpoints (the guard tests need a known default)."""
    import models.checkpoint

    monkeypatch.setattr(models.checkpoint, "SHIPPED_DIR", tmp_path / "no-shipped-checkpoints")
