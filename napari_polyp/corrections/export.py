"""Exports of a corrections dataset that other tools read; headless, behind ``napari-polyp export``.

    from napari_polyp.corrections import export
    export.export_coco("corrections/", "out/polyps.json")        # COCO instances, RLE masks
    export.export_nnunet("corrections/", "out/", dataset_id=501)   # out/Dataset501_Polyp/...
    export.export_csv("corrections/", "out/items.csv")            # one row per item

- **COCO** (instance segmentation JSON): one annotation per 8-connected object of a mask,
  ``segmentation`` as compressed RLE (pycocotools' encoding, ``counts`` as text),
  ``iscrowd`` 0, ``bbox`` [x, y, w, h] and ``area`` from the RLE; ``file_name`` is the
  image's path inside the dataset folder, so the dataset folder is the image root. An
  image whose mask is empty is listed with no annotation.
- **nnU-Net v2 raw dataset**: ``DatasetNNN_Name/imagesTr/<stem>_0000.png`` (RGB: nnU-Net
  reads a natural image as one file with channels R, G, B), ``labelsTr/<stem>.png``
  (0 background, 1 object) and ``dataset.json``.
- **CSV**: one row per item (every status) with :data:`CSV_COLUMNS`; Dice/IoU compare the
  saved mask with the network's prediction it started from, empty when none was saved.

COCO and nnU-Net take the items training uses (accepted and corrected) unless other
statuses are asked for; an export with no item to write raises :class:`ExportError`.
Every file is read through :class:`CorrectionsDataset` (so only inside the dataset
folder) and written atomically.
"""
from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import UserError
from ._atomic import atomic_write_bytes, encode_image_png
from .dataset import STATUSES, TRAINING_STATUSES, CorrectionsDataset, Record
from .metrics import dice_iou

PathLike = Union[str, os.PathLike]
FORMATS = ("coco", "nnunet", "csv")
CSV_COLUMNS = ("stem", "status", "version", "dice_vs_prediction", "iou_vs_prediction", "pixels_changed",
               "model", "reviewer", "updated", "note")


class ExportError(UserError):
    """Nothing to export, or an export that cannot be written; the message says which and why."""


def _records(dataset: CorrectionsDataset, statuses: Optional[Sequence[str]]) -> List[Record]:
    wanted = tuple(statuses) if statuses else None
    records = dataset.items(wanted)
    if not records:
        which = "items" if wanted is None else f"{' or '.join(wanted)} items"
        raise ExportError(f"{dataset.root}: nothing to export, the dataset has no {which}")
    return records


# --------------------------------------------------------------------------- COCO


def rle_encode(mask: np.ndarray) -> Dict:
    """Compressed COCO RLE of a 2-D mask ({"size": [h, w], "counts": text})."""
    from pycocotools import mask as coco_mask

    rle = coco_mask.encode(np.asfortranarray(np.asarray(mask) != 0, dtype=np.uint8))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def rle_decode(rle: Dict) -> np.ndarray:
    """The 2-D uint8 {0,1} mask of a COCO RLE (compressed text/bytes or uncompressed counts)."""
    from pycocotools import mask as coco_mask

    h, w = rle["size"]
    counts = rle["counts"]
    if isinstance(counts, list):
        rle = coco_mask.frPyObjects(rle, h, w)
    elif isinstance(counts, str):
        rle = {"size": [h, w], "counts": counts.encode("ascii")}
    return coco_mask.decode(rle).astype(np.uint8)


def _instances(mask: np.ndarray) -> List[np.ndarray]:
    """The 8-connected objects of a mask, largest first."""
    from scipy import ndimage as ndi

    labels, count = ndi.label(mask != 0, structure=np.ones((3, 3), bool))
    objects = [labels == i for i in range(1, count + 1)]
    return sorted(objects, key=lambda o: -int(o.sum()))


def coco_dict(root: PathLike, statuses: Optional[Sequence[str]] = TRAINING_STATUSES,
              category: str = "polyp") -> Dict:
    """The COCO instance-segmentation dict of a dataset's items (see the module docstring)."""
    from pycocotools import mask as coco_mask

    dataset = CorrectionsDataset(root)
    images, annotations = [], []
    for image_id, record in enumerate(_records(dataset, statuses), 1):
        mask = dataset.load_mask(record.stem)
        h, w = mask.shape
        images.append({"id": image_id, "file_name": dataset.image_path(record).relative_to(dataset.root).as_posix(),
                       "height": int(h), "width": int(w), "stem": record.stem, "status": record.status})
        for instance in _instances(mask):
            rle = rle_encode(instance)
            compressed = {"size": rle["size"], "counts": rle["counts"].encode("ascii")}
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "category_id": 1, "iscrowd": 0,
                "segmentation": rle, "area": int(coco_mask.area(compressed)),
                "bbox": [float(v) for v in coco_mask.toBbox(compressed)],
            })
    return {"info": {"description": f"napari-polyp corrections from {dataset.root}", "version": "1.0"},
            "images": images, "annotations": annotations,
            "categories": [{"id": 1, "name": category, "supercategory": "lesion"}]}


def export_coco(root: PathLike, out: PathLike, statuses: Optional[Sequence[str]] = TRAINING_STATUSES,
                category: str = "polyp") -> Dict:
    """Write the COCO JSON to ``out``; returns a summary (path, images, annotations)."""
    data = coco_dict(root, statuses, category)
    out = _file_target(out, ".json")
    atomic_write_bytes(out, json.dumps(data).encode("utf-8"))
    return {"format": "coco", "out": str(out), "images": len(data["images"]),
            "annotations": len(data["annotations"])}


# --------------------------------------------------------------------------- nnU-Net


def nnunet_folder_name(dataset_id: int, name: str) -> str:
    if not 1 <= int(dataset_id) <= 999:
        raise ExportError(f"an nnU-Net dataset id is 1..999, got {dataset_id}")
    clean = "".join(c for c in name if c.isalnum()) or "Polyp"
    return f"Dataset{int(dataset_id):03d}_{clean}"


def export_nnunet(root: PathLike, out: PathLike, dataset_id: int = 501, name: str = "Polyp",
                  statuses: Optional[Sequence[str]] = TRAINING_STATUSES, label: str = "polyp") -> Dict:
    """Write an nnU-Net v2 raw dataset under ``out``; returns a summary (path, cases)."""
    dataset = CorrectionsDataset(root)
    records = _records(dataset, statuses)
    folder = Path(out) / nnunet_folder_name(dataset_id, name)
    for record in records:
        image, mask, _ = dataset.load(record.stem)
        if image.shape[:2] != mask.shape:
            raise ExportError(f"{dataset.image_path(record)}: the image is {image.shape[1]}x{image.shape[0]} but "
                              f"its mask is {mask.shape[1]}x{mask.shape[0]}; nnU-Net needs them alike")
        atomic_write_bytes(folder / "imagesTr" / f"{record.stem}_0000.png", encode_image_png(image[..., :3]))
        atomic_write_bytes(folder / "labelsTr" / f"{record.stem}.png", encode_image_png((mask != 0).astype(np.uint8)))
    meta = {"channel_names": {"0": "R", "1": "G", "2": "B"}, "labels": {"background": 0, label: 1},
            "numTraining": len(records), "file_ending": ".png", "name": name,
            "description": f"exported by napari-polyp from {dataset.root} ({', '.join(statuses or ('all',))} items)"}
    atomic_write_bytes(folder / "dataset.json", json.dumps(meta, indent=1).encode("utf-8"))
    return {"format": "nnunet", "out": str(folder), "cases": len(records)}


# --------------------------------------------------------------------------- CSV


def item_rows(root: PathLike, statuses: Optional[Sequence[str]] = None) -> List[Dict]:
    """One dict per item with :data:`CSV_COLUMNS` (Dice/IoU None without a saved prediction)."""
    dataset = CorrectionsDataset(root)
    rows = []
    for record in _records(dataset, statuses):
        dice, iou = _scores_vs_prediction(dataset, record)
        rows.append({"stem": record.stem, "status": record.status, "version": record.version,
                     "dice_vs_prediction": dice, "iou_vs_prediction": iou, "pixels_changed": record.pixels_changed,
                     "model": record.model, "reviewer": record.reviewer, "updated": record.updated,
                     "note": record.note})
    return rows


def _scores_vs_prediction(dataset: CorrectionsDataset, record: Record) -> Tuple[Optional[float], Optional[float]]:
    prediction = dataset.load_prediction(record.stem)
    if prediction is None:
        return None, None
    mask = dataset.load_mask(record.stem)
    if mask.shape != prediction.shape:
        return None, None
    dice, iou = dice_iou(mask, prediction)
    return round(dice, 6), round(iou, 6)


def export_csv(root: PathLike, out: PathLike, statuses: Optional[Sequence[str]] = None) -> Dict:
    """Write the per-item table as CSV; returns a summary (path, rows)."""
    rows = item_rows(root, statuses)
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if v is None else v for k, v in row.items()})
    out = _file_target(out, ".csv")
    atomic_write_bytes(out, buffer.getvalue().encode("utf-8"))
    return {"format": "csv", "out": str(out), "rows": len(rows)}


# --------------------------------------------------------------------------- shared


def _file_target(out: PathLike, suffix: str) -> Path:
    """``out`` as a file path; a folder gets ``export<suffix>`` inside it."""
    out = Path(out)
    if out.is_dir():
        return out / f"export{suffix}"
    return out


def export(root: PathLike, fmt: str, out: PathLike, statuses: Optional[Sequence[str]] = None, **options) -> Dict:
    """One entry point for the CLI and the workspace: ``fmt`` in :data:`FORMATS`."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if not Path(root).is_dir():
        raise ExportError(f"{root}: no such dataset folder")
    unknown = [s for s in statuses or () if s not in STATUSES]
    if unknown:
        raise ExportError(f"unknown status {', '.join(map(repr, unknown))}; choose from {', '.join(STATUSES)}")
    if fmt == "csv":
        return export_csv(root, out, statuses)
    statuses = statuses or TRAINING_STATUSES
    if fmt == "coco":
        return export_coco(root, out, statuses, **options)
    return export_nnunet(root, out, statuses=statuses, **options)
