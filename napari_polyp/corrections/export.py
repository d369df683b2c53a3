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

An export never writes into the dataset it reads (its manifest, masks or images), and never
replaces a file or an nnU-Net folder that is already there unless ``overwrite`` is given; then
an nnU-Net folder keeps no case of an earlier export that this one does not have. An item that
cannot be read (a missing or undecodable file, a mask of another size than its image) is left
out and named in the summary's ``skipped``; the other items are still exported.
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
from ..io.atomic import atomic_write_bytes, encode_image_png, fsync_dir
from ..io.images import image_size
from .dataset import STATUSES, TRAINING_STATUSES, CorrectionsDataset, Record, check_same_size
from .manifest import resolves_inside
from .metrics import dice_iou

PathLike = Union[str, os.PathLike]
FORMATS = ("coco", "nnunet", "csv")
CSV_COLUMNS = ("stem", "status", "version", "dice_vs_prediction", "iou_vs_prediction", "pixels_changed",
               "model", "reviewer", "updated", "note")


class ExportError(UserError):
    """Nothing to export, or an export that cannot be written; the message says which and why."""


# What one bad item raises; it is left out and named, the export goes on.
ITEM_ERRORS = (UserError, OSError, ValueError)


def _records(dataset: CorrectionsDataset, statuses: Optional[Sequence[str]]) -> List[Record]:
    wanted = tuple(statuses) if statuses else None
    records = dataset.items(wanted)
    if not records:
        which = "items" if wanted is None else f"{' or '.join(wanted)} items"
        raise ExportError(f"{dataset.root}: nothing to export, the dataset has no {which}")
    return records


def _each_readable(dataset: CorrectionsDataset, records: List[Record], read, skipped: List[str]):
    """(record, read(record)) for each record ``read`` succeeds on; the others are named in ``skipped``.
    When not one item could be read there is nothing to export: ExportError with the reasons."""
    done = 0
    for record in records:
        try:
            value = read(record)
        except ITEM_ERRORS as err:
            skipped.append(f"{record.stem}: {err}")
            continue
        done += 1
        yield record, value
    if not done:
        raise ExportError(f"{dataset.root}: nothing to export, no item could be read: " + "; ".join(skipped[:3])
                          + (f"; and {len(skipped) - 3} more" if len(skipped) > 3 else ""))


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
    return _coco(CorrectionsDataset(root), statuses, category, skipped=[])


def _coco(dataset: CorrectionsDataset, statuses, category: str, skipped: List[str]) -> Dict:
    from pycocotools import mask as coco_mask

    images, annotations = [], []
    readable = _each_readable(dataset, _records(dataset, statuses), lambda r: _mask_and_image_file(dataset, r),
                              skipped)
    for image_id, (record, (mask, image_file)) in enumerate(readable, 1):
        h, w = mask.shape
        images.append({"id": image_id, "file_name": image_file.relative_to(dataset.root).as_posix(),
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


def _mask_and_image_file(dataset: CorrectionsDataset, record: Record) -> Tuple[np.ndarray, Path]:
    """An item's mask and image file, the image measured from its header (COCO needs no pixels)."""
    image_file, mask_file = dataset.image_path(record), dataset.mask_path(record)
    mask = dataset.load_mask(record.stem)
    check_same_size(mask_file, mask.shape, image_file, image_size(image_file))
    return mask, image_file


def export_coco(root: PathLike, out: PathLike, statuses: Optional[Sequence[str]] = TRAINING_STATUSES,
                category: str = "polyp", overwrite: bool = False) -> Dict:
    """Write the COCO JSON to ``out``; returns a summary (path, images, annotations, skipped)."""
    dataset = CorrectionsDataset(root)
    out = _checked_file_target(dataset, out, ".json", overwrite)
    skipped: List[str] = []
    data = _coco(dataset, statuses, category, skipped)
    atomic_write_bytes(out, json.dumps(data).encode("utf-8"))
    return {"format": "coco", "out": str(out), "images": len(data["images"]),
            "annotations": len(data["annotations"]), "skipped": skipped}


# --------------------------------------------------------------------------- nnU-Net


def nnunet_folder_name(dataset_id: int, name: str) -> str:
    if not 1 <= int(dataset_id) <= 999:
        raise ExportError(f"an nnU-Net dataset id is 1..999, got {dataset_id}")
    clean = "".join(c for c in name if c.isalnum()) or "Polyp"
    return f"Dataset{int(dataset_id):03d}_{clean}"


NNUNET_PARTS = ("imagesTr", "labelsTr", "dataset.json")


def export_nnunet(root: PathLike, out: PathLike, dataset_id: int = 501, name: str = "Polyp",
                  statuses: Optional[Sequence[str]] = TRAINING_STATUSES, label: str = "polyp",
                  overwrite: bool = False) -> Dict:
    """Write an nnU-Net v2 raw dataset under ``out``; returns a summary (path, cases, skipped,
    stale cases removed). With ``overwrite``, cases of an earlier export that this one does not
    have are removed (a rejected item must not stay in the training set)."""
    dataset = CorrectionsDataset(root)
    folder = _checked_nnunet_folder(dataset, Path(out), nnunet_folder_name(dataset_id, name), overwrite)
    skipped: List[str] = []
    cases = []
    for record, (image, mask, _) in _each_readable(dataset, _records(dataset, statuses),
                                                   lambda r: dataset.load(r.stem), skipped):
        atomic_write_bytes(folder / "imagesTr" / f"{record.stem}_0000.png", encode_image_png(image[..., :3]))
        atomic_write_bytes(folder / "labelsTr" / f"{record.stem}.png", encode_image_png((mask != 0).astype(np.uint8)))
        cases.append(record.stem)
    meta = {"channel_names": {"0": "R", "1": "G", "2": "B"}, "labels": {"background": 0, label: 1},
            "numTraining": len(cases), "file_ending": ".png", "name": name,
            "description": f"exported by napari-polyp from {dataset.root} ({', '.join(statuses or ('all',))} items)"}
    atomic_write_bytes(folder / "dataset.json", json.dumps(meta, indent=1).encode("utf-8"))
    stale = _remove_stale_cases(folder, cases)
    return {"format": "nnunet", "out": str(folder), "cases": len(cases), "skipped": skipped, "stale_removed": stale}


def _checked_nnunet_folder(dataset: CorrectionsDataset, out: Path, folder_name: str, overwrite: bool) -> Path:
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out}: is a file; an nnU-Net export is written into a folder (--out FOLDER)")
    folder = out / folder_name
    _refuse_the_dataset(dataset, folder)
    if dataset.root.resolve().is_relative_to(folder.resolve()):
        raise ExportError(f"{folder}: holds the dataset {dataset.root} that is being exported; choose another --out")
    if not overwrite and any((folder / part).exists() for part in NNUNET_PARTS):
        raise ExportError(f"{folder}: already holds an nnU-Net dataset; it is replaced only when asked to "
                          "(--overwrite; its cases that this export does not have are then removed)")
    return folder


def _remove_stale_cases(folder: Path, cases: Sequence[str]) -> int:
    """Delete the case files of ``folder`` that this export did not write: only names an nnU-Net
    export writes (``<case>_0000.png`` in imagesTr, ``<case>.png`` in labelsTr), never anything else."""
    keep = {"imagesTr": {f"{c}_0000.png" for c in cases}, "labelsTr": {f"{c}.png" for c in cases}}
    removed = 0
    for part, names in keep.items():
        for path in sorted((folder / part).glob("*.png")):
            written_by_us = path.name.endswith("_0000.png") if part == "imagesTr" else True
            if path.name not in names and written_by_us and path.is_file() and not path.is_symlink():
                path.unlink()
                removed += 1
        if removed:
            fsync_dir(folder / part)
    return removed


# --------------------------------------------------------------------------- CSV


def item_rows(root: PathLike, statuses: Optional[Sequence[str]] = None,
              skipped: Optional[List[str]] = None) -> List[Dict]:
    """One dict per item with :data:`CSV_COLUMNS` (Dice/IoU None without a saved prediction);
    an item whose files cannot be read is named in ``skipped`` (when given) and left out."""
    dataset = CorrectionsDataset(root)
    rows = []
    for record, (dice, iou) in _each_readable(dataset, _records(dataset, statuses),
                                              lambda r: _scores_vs_prediction(dataset, r),
                                              [] if skipped is None else skipped):
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


def export_csv(root: PathLike, out: PathLike, statuses: Optional[Sequence[str]] = None,
               overwrite: bool = False) -> Dict:
    """Write the per-item table as CSV; returns a summary (path, rows, skipped)."""
    out = _checked_file_target(CorrectionsDataset(root), out, ".csv", overwrite)
    skipped: List[str] = []
    rows = item_rows(root, statuses, skipped)
    atomic_write_bytes(out, csv_bytes(CSV_COLUMNS, rows))
    return {"format": "csv", "out": str(out), "rows": len(rows), "skipped": skipped}


# A spreadsheet runs a cell that starts with one of these as a formula (CSV injection): a note
# "=HYPERLINK(...)" must stay text. Such cells get a leading apostrophe, which spreadsheets hide.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value) -> object:
    """A value as a CSV cell: None empty, text that a spreadsheet would run as a formula made inert."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def csv_bytes(columns: Sequence[str], rows: List[Dict]) -> bytes:
    """The rows as UTF-8 CSV with a header; every cell through :func:`csv_cell`."""
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: csv_cell(v) for k, v in row.items()})
    return buffer.getvalue().encode("utf-8")


# --------------------------------------------------------------------------- shared


def _checked_file_target(dataset: CorrectionsDataset, out: PathLike, suffix: str, overwrite: bool) -> Path:
    """``out`` as a file path (a folder gets ``export<suffix>`` inside it), refused when it is in
    the dataset or, without ``overwrite``, when a file is already there."""
    out = Path(out)
    target = out / f"export{suffix}" if out.is_dir() else out
    _refuse_the_dataset(dataset, target)
    if target.is_dir():
        raise ExportError(f"{target}: is a folder; give a file name for the export")
    if (target.exists() or target.is_symlink()) and not overwrite:
        raise ExportError(f"{target}: already exists; it is replaced only when asked to (--overwrite)")
    return target


def _refuse_the_dataset(dataset: CorrectionsDataset, target: Path) -> None:
    """An export is never written into the dataset it reads (onto its manifest, a mask, an image)."""
    if resolves_inside(target, dataset.root):
        raise ExportError(f"{target}: is inside the dataset {dataset.root} that is being exported; "
                          "write the export elsewhere (--out)")


def export(root: PathLike, fmt: str, out: PathLike, statuses: Optional[Sequence[str]] = None,
           overwrite: bool = False, **options) -> Dict:
    """One entry point for the CLI and the workspace: ``fmt`` in :data:`FORMATS`. The summary's
    ``skipped`` names each item left out because it could not be read."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if not Path(root).is_dir():
        raise ExportError(f"{root}: no such dataset folder")
    unknown = [s for s in statuses or () if s not in STATUSES]
    if unknown:
        raise ExportError(f"unknown status {', '.join(map(repr, unknown))}; choose from {', '.join(STATUSES)}")
    if fmt == "csv":
        summary = export_csv(root, out, statuses, overwrite=overwrite)
    elif fmt == "coco":
        summary = export_coco(root, out, statuses or TRAINING_STATUSES, overwrite=overwrite, **options)
    else:
        summary = export_nnunet(root, out, statuses=statuses or TRAINING_STATUSES, overwrite=overwrite, **options)
    return summary
