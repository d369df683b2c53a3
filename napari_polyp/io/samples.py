"""napari sample data: real colonoscopy (Kvasir-SEG) and dermoscopy (PH2) images.

Each sample gives the image and its ground-truth mask (a hidden Labels layer,
for comparison with a prediction). Sources and citation: sample_data/CITATION.md.
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Tuple

from ..conventions import GROUND_TRUTH, ROLE

SAMPLE_DIR = Path(__file__).parent / "sample_data"
CITATION = SAMPLE_DIR / "CITATION.md"

COLONOSCOPY = ("cju16jgnyzp970878melv7r25", "cju2nfnvxzdkd0878399axlco")  # Kvasir-SEG
DERMOSCOPY = ("IMD033", "IMD138")  # PH2

_SOURCES = {
    "kvasir-seg": "Kvasir-SEG (Jha et al., MMM 2020)",
    "ph2": "PH2 (Mendonça et al., EMBC 2013)",
}
# the model cards' task each data set is for (layer metadata "task": Segment warns on a mismatch)
_TASKS = {"kvasir-seg": "polyp", "ph2": "skin"}


def sample_paths(stem: str) -> Tuple[Path, Path]:
    """(image, ground-truth mask) files of one shipped sample."""
    return SAMPLE_DIR / f"{stem}.jpg", SAMPLE_DIR / f"{stem}.png"


def sample_layers(stem: str, dataset: str, name: str) -> List[tuple]:
    from .images import read_image
    from .masks import read_mask

    image_path, mask_path = sample_paths(stem)
    image = read_image(image_path)
    mask = read_mask(mask_path)
    meta = {"source_path": str(image_path), "dataset": _SOURCES[dataset], "citation": str(CITATION),
            "task": _TASKS[dataset]}
    return [
        # 8-bit RGB: napari would otherwise scan the pixels for the limits (~0.3 s of each app start)
        (image, {"name": name, "rgb": True, "contrast_limits": (0, 255), "metadata": meta}, "image"),
        (mask, {"name": f"{name} ground truth", "visible": False, "opacity": 0.5,
                "metadata": {**meta, "source_path": str(mask_path), ROLE: GROUND_TRUTH}}, "labels"),
    ]


def colonoscopy_sample(index: int = 0) -> List[tuple]:
    """A Kvasir-SEG colonoscopy image with a polyp, and its ground truth (hidden)."""
    stem = COLONOSCOPY[index]
    return sample_layers(stem, "kvasir-seg", f"colonoscopy {stem[:8]}")


def dermoscopy_sample(index: int = 0) -> List[tuple]:
    """A PH2 dermoscopy image with a skin lesion, and its ground truth (hidden)."""
    stem = DERMOSCOPY[index]
    return sample_layers(stem, "ph2", f"dermoscopy {stem}")
