"""Review and correction, headless: mask clean-up, the corrections dataset, review queues.

    from napari_polyp.corrections import CorrectionsDataset, cleanup
    ds = CorrectionsDataset("corrections/")
    ds.save(image=rgb, mask=cleanup.fill_holes(mask), source_path="a.jpg", status="corrected")
"""
from .dataset import (
    FORMAT_VERSION,
    STATUSES,
    TRAINING_STATUSES,
    CorrectionsDataset,
    DatasetError,
    Record,
    default_reviewer,
    pixels_changed,
)
from .metrics import dice_iou, mean_scores

__all__ = [
    "FORMAT_VERSION",
    "STATUSES",
    "TRAINING_STATUSES",
    "CorrectionsDataset",
    "DatasetError",
    "Record",
    "cleanup",
    "default_reviewer",
    "dice_iou",
    "mean_scores",
    "pixels_changed",
]


def __getattr__(name):
    # scipy/scikit-image take ~0.5 s to import: only pay for them when clean-up is used
    if name == "cleanup":
        import importlib

        return importlib.import_module(".cleanup", __name__)
    raise AttributeError(name)
