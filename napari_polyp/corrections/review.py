"""A review queue, headless: the items of a folder of images (or a video's frames),
their status in a corrections dataset, navigation, reference masks and scores.

The Review widget is a thin Qt layer over :class:`ReviewSession`::

    session = ReviewSession("kvasir/images", "my-corrections")
    i = session.first(only_unreviewed=True)
    image = session.image(i)
    saved = session.saved_mask(i)            # None -> run the network
    session.save(i, image, mask, predicted=pred, model=..., threshold=DEFAULT_THRESHOLD, status="corrected")
    session.progress_text()                  # "1 / 200 reviewed"
    session.scores_text(i)                   # Dice/IoU vs masks/ beside images/, when there is one

It also owns the network's predictions of the items (:meth:`ReviewSession.remember`): each
belongs to one :class:`ModelChoice` (network, checkpoint, flip TTA), and a change of choice
drops the predictions of the old one (:meth:`ReviewSession.use_model`), so a mask, a Dice in
the table or a save never comes from a network other than the one chosen. The threshold
only re-derives masks from the kept probabilities (:meth:`ReviewSession.use_threshold`): a
mask re-derived at a new threshold is the prediction at that threshold, not an edit.
A save goes through :meth:`ReviewSession.commit`, which refuses what would write wrong data
(an unreadable item, a mask of another image's size).
"""
from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..conventions import DEFAULT_THRESHOLD
from ..errors import UserError
from ..io.images import find_image, list_images, read_image
from ..jobs import ModelChoice, Predicted
from ..io.masks import read_mask
from ..io.video import VIDEO_EXTENSIONS
from ._kept_predictions import KeptPredictions
from .dataset import CorrectionsDataset, Record
from .manifest import safe_stem
from .metrics import dice_iou, mean_scores

CLEAN_KEPT = 8  # items whose mask as last shown is kept (the open one is what counts)


@dataclass(frozen=True)
class ReviewItem:
    index: int
    name: str  # what the list shows
    stem: str  # the stem it is saved under (unless another image already took it)
    source_path: Path  # the image file, or the video file
    frame: Optional[int] = None  # frame number of a video item


def dataset_clash(source, dataset) -> str:
    """Why ``dataset`` must not hold the corrections of ``source`` ("" when it may).

    The dataset writes ``images/`` and ``masks/`` under its root: a root that is the
    source folder, or the dataset around a source ``images/`` folder, would write copies
    beside the originals and read the reference masks back as reviewed items."""
    if isinstance(source, (list, tuple)) or dataset is None or not Path(source).is_dir():
        return ""
    folder, target = Path(source).resolve(), Path(dataset).resolve()
    if target == folder:
        return (f"{dataset} is the folder being reviewed: choose a separate, new folder for the corrections, "
                "or corrected copies would be written among the originals")
    if target / "images" == folder:
        return (f"{dataset} is the root of the source dataset ({folder.name}/ inside it"
                + (", reference masks in masks/" if (target / "masks").is_dir() else "")
                + "): its reference masks would be read as reviewed items and copies written into its images/; "
                "choose a separate, new folder for the corrections")
    return ""


def reference_folder_for(source: Path) -> Optional[Path]:
    """``DIR/masks`` when the images are ``DIR/images`` (a dataset with ground truth)."""
    source = Path(source)
    if source.is_dir() and source.name == "images" and (source.parent / "masks").is_dir():
        return source.parent / "masks"
    return None


class ReviewSession:
    """The items to review and where their corrections go.

    source: a folder of images, a video file, or a list of image files.
    dataset: the corrections dataset folder (or a CorrectionsDataset).
    reference: folder of reference masks (same stem); default: ``masks/`` beside
        a source folder called ``images``.
    """

    def __init__(self, source: Union[str, os.PathLike, Sequence], dataset, reference=None, video=None):
        clash = dataset_clash(source, dataset.root if isinstance(dataset, CorrectionsDataset) else dataset)
        if clash:
            raise UserError(clash)
        self.dataset = dataset if isinstance(dataset, CorrectionsDataset) else CorrectionsDataset(dataset)
        self.video = video
        self.pre_annotations = None  # a mask store's masks (a pre-annotated video): see preannotated.py
        self._not_pre_annotated: set = set()  # items whose stored mask R (Run) replaced by the network's
        self.items: List[ReviewItem] = self._make_items(source)
        if reference is None and not isinstance(source, (list, tuple)):
            reference = reference_folder_for(Path(source))
        self.reference_dir: Optional[Path] = Path(reference) if reference else None
        self._stems: Dict[int, str] = {}
        self._latest: Optional[Dict[str, Record]] = None
        # scores this session has seen: stem -> {"prediction": (dice, iou), "corrected": (dice, iou)}
        self.scores: Dict[str, Dict[str, Tuple[float, float]]] = {}
        self.uncertainty: Dict[int, float] = {}  # item -> ranking score of its prediction (see ranking.py)
        # item -> its mask as last shown/saved (to spot unsaved edits), for the last CLEAN_KEPT items shown:
        # only the open item's is ever asked for, and opening an item marks it again
        self._clean: "OrderedDict[int, np.ndarray]" = OrderedDict()
        self.unreadable: Dict[int, str] = {}  # item -> why its file cannot be read
        self._shapes: Dict[int, Tuple[int, int]] = {}  # item -> (H, W) of its image, once read
        self.choice: Optional[ModelChoice] = None  # the network predictions are made with now
        self.threshold = DEFAULT_THRESHOLD  # the threshold masks are derived at now
        self._predictions = KeptPredictions()  # item -> its prediction under ``choice`` (bounded memory)

    # -- items ---------------------------------------------------------------------
    def _make_items(self, source) -> List[ReviewItem]:
        if isinstance(source, (list, tuple)):
            paths = [Path(p) for p in source]
            return [ReviewItem(i, p.name, safe_stem(p.stem), p) for i, p in enumerate(paths)]
        source = Path(source)
        from ..io.mask_store import is_mask_store

        if is_mask_store(source):  # a pre-annotated video: its frames, with the stored masks
            from ..io.video import VideoFrames
            from .preannotated import PreAnnotations

            self.pre_annotations = PreAnnotations(source)
            source = self.pre_annotations.video_path
            self.video = self.video if self.video is not None else VideoFrames(source)
            self.pre_annotations.check_video(self.video)
        if source.is_dir():
            return [ReviewItem(i, p.name, safe_stem(p.stem), p) for i, p in enumerate(list_images(source))]
        if source.suffix.lower() in VIDEO_EXTENSIONS:
            if self.video is None:
                from ..io.video import VideoFrames

                self.video = VideoFrames(source)
            count = len(self.video)
            digits = max(6, len(str(count - 1)))
            return [ReviewItem(i, f"frame {i}", safe_stem(f"{source.stem}_{i:0{digits}d}"), source, i)
                    for i in range(count)]
        if source.is_file():
            return [ReviewItem(0, source.name, safe_stem(source.stem), source)]
        raise FileNotFoundError(f"{source}: no such folder or file")

    def __len__(self) -> int:
        return len(self.items)

    def image(self, index: int) -> np.ndarray:
        """The item's pixels (HxWx3 uint8). A file that cannot be read raises a UserError
        naming it, and the item is marked unreadable (see :attr:`unreadable`)."""
        item = self.items[index]
        try:
            image = np.asarray(self.video[item.frame]) if item.frame is not None else read_image(item.source_path)
        except Exception as err:  # noqa: BLE001 -- any reader failure is the file's problem
            reason = str(err).strip() or type(err).__name__
            where = str(item.source_path) if item.frame is None else f"{item.source_path} frame {item.frame}"
            reason = reason if str(item.source_path) in reason else f"{where}: {reason}"  # named once
            self.unreadable[index] = reason
            raise UserError(f"cannot read {reason}") from err
        self.unreadable.pop(index, None)
        self._shapes[index] = tuple(image.shape[:2])
        return image

    def is_readable(self, index: int) -> bool:
        """False once reading the item failed (until a later read succeeds)."""
        return index not in self.unreadable

    # -- the dataset side --------------------------------------------------------------
    def refresh(self) -> None:
        """Forget cached records (another viewer may have saved)."""
        self._latest = None

    def _records(self) -> Dict[str, Record]:
        if self._latest is None:
            self._latest = self.dataset.latest()
        return self._latest

    def stem(self, index: int) -> str:
        """The dataset stem of an item: its own, unless a different image holds it."""
        if index in self._stems:
            return self._stems[index]
        item = self.items[index]
        stem = item.stem
        record = self._records().get(stem)
        if record is not None and not self._is_same_source(item, record):
            stem = f"{item.stem}-{self._identity(item)[:8]}"
        self._stems[index] = stem
        return stem

    @staticmethod
    def _same_path(a, b) -> bool:
        return bool(a) and bool(b) and os.path.abspath(os.fspath(a)) == os.path.abspath(os.fspath(b))

    def _is_same_source(self, item: ReviewItem, record: Record) -> bool:
        if item.frame is not None:
            return self._same_path(record.source_path, item.source_path) and record.extra.get("frame") == item.frame
        if self._same_path(record.source_path, item.source_path):
            return True
        return bool(record.image_sha256) and record.image_sha256 == self._identity(item)

    def _identity(self, item: ReviewItem) -> str:
        if item.frame is not None:
            return hashlib.sha256(f"{os.path.abspath(item.source_path)}#{item.frame}".encode()).hexdigest()
        return hashlib.sha256(Path(item.source_path).read_bytes()).hexdigest()

    def record(self, index: int) -> Optional[Record]:
        return self._records().get(self.stem(index))

    def status(self, index: int) -> str:
        record = self.record(index)
        return record.status if record is not None else "unreviewed"

    def saved_mask(self, index: int) -> Optional[np.ndarray]:
        """The item's saved mask ({0,1}), or None when it was never saved."""
        record = self.record(index)
        return read_mask(self.dataset.mask_path(record)) if record is not None else None

    def saved_prediction(self, index: int) -> Optional[np.ndarray]:
        record = self.record(index)
        return self.dataset.load_prediction(record.stem) if record is not None else None

    def save(self, index: int, image: Optional[np.ndarray], mask: np.ndarray, *, status: str,
             predicted: Optional[np.ndarray] = None, note: str = "", model: str = "",
             checkpoint_sha256: str = "", threshold: Optional[float] = None,
             reviewer: Optional[str] = None, strokes: Optional[np.ndarray] = None,
             clicks: Optional[list] = None, propagated_from: Optional[int] = None) -> Record:
        item = self.items[index]
        self._check_savable(index, mask, status)
        extra = {"frame": item.frame} if item.frame is not None else {}
        if propagated_from is not None:  # a video frame's mask carried from a key frame (video_review.py)
            extra["propagated_from"] = int(propagated_from)
        if strokes is not None:
            extra["strokes"] = strokes
        if clicks:
            extra["clicks"] = clicks
        record = self.dataset.save(
            image=image, mask=mask, stem=self.stem(index), source_path=item.source_path, predicted=predicted,
            model=model, checkpoint_sha256=checkpoint_sha256, threshold=threshold, status=status, note=note,
            reviewer=reviewer, **extra,
        )
        self._records()[record.stem] = record
        self.score(index, corrected=mask)
        if predicted is not None:
            self.score(index, prediction=predicted)
        return record

    def _check_savable(self, index: int, mask: np.ndarray, status: str) -> None:
        """Refuse a save that would put wrong data under this item's name: an item whose file
        cannot be read, or a mask whose size is not its image's (another image's mask)."""
        item = self.items[index]
        if index in self.unreadable:
            raise UserError(f"not saved: {item.name} cannot be read ({self.unreadable[index]}); "
                            "fix or remove the file")
        shape = self._shapes.get(index)
        if shape is None:
            shape = tuple(self.image(index).shape[:2])  # raises (naming the file) when unreadable
        if tuple(np.shape(mask)) != shape:
            raise UserError(f"not saved: the mask is {np.shape(mask)[0]}×{np.shape(mask)[1]} but {item.name} is "
                            f"{shape[0]}×{shape[1]}: it is not this image's mask")

    def commit(self, index: int, mask: np.ndarray, requested: str, *, basis: Optional[Predicted] = None,
               threshold: Optional[float] = None, image: Optional[np.ndarray] = None, note: str = "",
               reviewer: Optional[str] = None, strokes: Optional[np.ndarray] = None,
               saved_threshold: Optional[float] = None, clicks: Optional[list] = None) -> Record:
        """Save the mask on screen for item ``index`` with the status ``requested`` asked for.

        basis: the prediction the mask was derived from (None: the mask is the item's saved one,
        re-opened); threshold: the threshold it was derived at (default: the session's). The
        network's mask at that threshold is what ``pixels_changed`` and "accepted of an edited
        mask is corrected" compare with, and its provenance is recorded."""
        if basis is not None:
            threshold = self.threshold if threshold is None else float(threshold)
            predicted = basis.mask(threshold)
            status = self.status_for(requested, mask, predicted)
            provenance = basis.provenance
            return self.save(index, image, mask, status=status, predicted=predicted, note=note,
                             model=provenance.choice.network, checkpoint_sha256=provenance.checkpoint_sha256,
                             threshold=threshold, reviewer=reviewer, strokes=strokes, clicks=clicks,
                             propagated_from=provenance.propagated_from)
        record = self.record(index)
        status = self.status_for(requested, mask, self.saved_prediction(index))
        return self.save(index, image, mask, status=status, note=note, reviewer=reviewer, strokes=strokes,
                         clicks=clicks,
                         model=record.model if record is not None else "",
                         checkpoint_sha256=record.checkpoint_sha256 if record is not None else "",
                         threshold=record.threshold if record is not None else saved_threshold)

    # -- the network's predictions ------------------------------------------------------
    def use_model(self, choice: ModelChoice) -> List[int]:
        """Predictions are made with ``choice`` from now on: those of another choice are
        dropped, with the Dice and uncertainty they gave the table. Returns the items whose
        prediction was dropped."""
        if choice == self.choice:
            return []
        self.choice = choice
        stale = self._predictions.drop_where(lambda provenance: provenance.choice != choice)
        for index in stale:
            self._forget_prediction_scores(index)
        return stale

    def _forget_prediction_scores(self, index: int) -> None:
        self.uncertainty.pop(index, None)
        if self.record(index) is None:  # a saved item keeps the score of the prediction saved with it
            self.scores.get(self.stem(index), {}).pop("prediction", None)

    def use_threshold(self, threshold: float) -> List[int]:
        """Masks are derived at ``threshold`` from now on: the unsaved items' Dice follow.
        Returns the items re-scored."""
        self.threshold = float(threshold)
        rescored = []
        for index in self._predictions.indices():
            if self.record(index) is None:
                self.score(index, prediction=self._predictions.mask(index, self.threshold))
                rescored.append(index)
        return rescored

    def remember(self, index: int, prediction: Predicted) -> bool:
        """Keep a prediction of item ``index`` (scored against the reference, its uncertainty
        noted). One made with another choice than the current one is stale: refused (False)."""
        if self.choice is not None and prediction.provenance.choice != self.choice:
            return False
        self._predictions.put(index, prediction)
        if self.record(index) is None:
            self.score(index, prediction=prediction.mask(self.threshold))
        self.note_prediction(index, prediction.probability)
        return True

    def prediction(self, index: int) -> Optional[Predicted]:
        """The item's whole prediction under the current choice (None: not predicted with it, or
        kept only compressed: :meth:`was_predicted`); for a pre-annotated video, else its stored
        mask (until :meth:`forget`)."""
        kept = self._predictions.whole(index)
        if kept is None and index not in self._predictions and self._pre_annotated(index):
            kept = self.pre_annotations.prediction(self.items[index].frame)
        return kept

    def was_predicted(self, index: int) -> bool:
        """Predicted under the current choice, whether kept whole or only compressed (an item
        predicted before the last ``KEEP_WHOLE``: opened, it is predicted again)."""
        return index in self._predictions

    def _pre_annotated(self, index: int) -> bool:
        """Whether the item's stored mask (a pre-annotated video's) stands as its prediction."""
        return self.pre_annotations is not None and index not in self._not_pre_annotated \
            and self.pre_annotations.covers(self.items[index].frame)

    def forget(self, index: int) -> None:
        """Drop the item's prediction (the Run key predicts it again)."""
        self._predictions.drop(index)
        self._not_pre_annotated.add(index)

    def to_predict(self, indices: Sequence[int]) -> List[int]:
        """Of ``indices``, the unreviewed, readable items without a prediction under the current choice."""
        return [i for i in indices if i not in self._predictions and not self._pre_annotated(i)
                and i not in self.unreadable and self.status(i) == "unreviewed"]

    def network_of(self, index: int) -> str:
        """The network behind the item's mask: the saved record's, else its current prediction's."""
        record = self.record(index)
        if record is not None:
            return record.model or ""
        if index not in self._predictions and self._pre_annotated(index):
            return self.pre_annotations.choice.label()
        provenance = self._predictions.provenance(index)
        return provenance.choice.label() if provenance is not None else ""

    # -- workflow rules -------------------------------------------------------------------
    def mark_clean(self, index: int, mask: np.ndarray) -> None:
        """The mask as shown (opened, predicted, saved): edits are counted from here."""
        self._clean[index] = np.array(mask, copy=True)
        self._clean.move_to_end(index)
        while len(self._clean) > CLEAN_KEPT:
            self._clean.popitem(last=False)

    def is_dirty(self, index: Optional[int], mask: Optional[np.ndarray]) -> bool:
        """Whether ``mask`` differs from item ``index``'s last clean mask (unsaved edits)."""
        clean = self._clean.get(index) if index is not None else None
        return mask is not None and clean is not None and not np.array_equal(np.asarray(mask), clean)

    @staticmethod
    def status_for(requested: str, mask: np.ndarray, predicted: Optional[np.ndarray]) -> str:
        """The status a save gets: "accepted" of an edited mask is a correction, and "corrected" of
        the network's own mask is an acceptance, whatever was pressed (a fine-tune scores its claim
        on the corrected items: the network's own mask there would score it against itself)."""
        if predicted is None or np.shape(predicted) != np.shape(mask) or requested not in ("accepted", "corrected"):
            return requested
        edited = bool(np.any((np.asarray(mask) > 0) != (np.asarray(predicted) > 0)))
        return "corrected" if edited else "accepted"

    def note_prediction(self, index: int, probability: np.ndarray) -> float:
        """Remember the uncertainty of item ``index``'s prediction (for "most uncertain first")."""
        from .ranking import uncertainty

        self.uncertainty[index] = uncertainty(probability).score
        return self.uncertainty[index]

    def most_uncertain_first(self, indices: Sequence[int]) -> List[int]:
        """Unreviewed items by falling uncertainty (unscored last), then the reviewed ones, in order."""
        def key(i):
            unreviewed = self.status(i) == "unreviewed"
            score = self.uncertainty.get(i)
            return (not unreviewed, score is None, -(score or 0.0), i)
        return sorted(indices, key=key)

    # -- the item table -----------------------------------------------------------------
    TABLE_COLUMNS = ("item", "status", "network", "dice", "iou", "corrected_dice", "pixels_changed", "uncertainty",
                     "note")

    def table_row(self, index: int) -> Dict[str, object]:
        """One item's row: status, the prediction's Dice/IoU vs the reference, the corrected
        mask's Dice, pixels changed by the annotator, uncertainty (None where unknown)."""
        record = self.record(index)
        entry = self.scores.get(self.stem(index), {})
        prediction, corrected = entry.get("prediction"), entry.get("corrected")
        status = self.status(index)
        if status == "unreviewed" and index in self.unreadable:
            status = "unreadable"
        return {"item": self.items[index].name, "status": status, "network": self.network_of(index),
                "dice": prediction[0] if prediction else None, "iou": prediction[1] if prediction else None,
                "corrected_dice": corrected[0] if corrected else None,
                "pixels_changed": record.pixels_changed if record is not None else None,
                "uncertainty": self.uncertainty.get(index), "note": record.note if record is not None else ""}

    def table(self) -> List[Dict[str, object]]:
        return [self.table_row(i) for i in range(len(self.items))]

    def worst_first(self, indices: Optional[Sequence[int]] = None) -> List[int]:
        """Items by rising prediction Dice, whatever their status (a rejected item's network
        can be as wrong as any other's); unscored ones last."""
        indices = range(len(self.items)) if indices is None else indices

        def key(i):
            dice = self.table_row(i)["dice"]
            return (dice is None, dice if dice is not None else 0.0, i)
        return sorted(indices, key=key)

    def write_table_csv(self, path) -> Path:
        """The item table as CSV (empty cells where a value is unknown); returns the path."""
        from ..io.atomic import atomic_write_bytes
        from .export import csv_bytes  # the one CSV writer: cells a spreadsheet would run are made inert

        rows = [{k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()} for row in self.table()]
        path = Path(path)
        atomic_write_bytes(path, csv_bytes(self.TABLE_COLUMNS, rows))
        return path

    # -- navigation -------------------------------------------------------------------
    def visible(self, only_unreviewed: bool = False) -> List[int]:
        if not only_unreviewed:
            return list(range(len(self.items)))
        return [i for i in range(len(self.items)) if self.status(i) == "unreviewed"]

    def first(self, only_unreviewed: bool = False) -> Optional[int]:
        shown = self.visible(only_unreviewed)
        return shown[0] if shown else None

    def next_index(self, index: Optional[int], only_unreviewed: bool = False) -> Optional[int]:
        return self.neighbour(self.visible(only_unreviewed), index, +1)

    def previous_index(self, index: Optional[int], only_unreviewed: bool = False) -> Optional[int]:
        return self.neighbour(self.visible(only_unreviewed), index, -1)

    def neighbour(self, order: Sequence[int], current: Optional[int], step: int) -> Optional[int]:
        """The first readable item after (``step`` > 0) or before ``current`` in ``order`` (the
        table as shown)."""
        return next((i for i in self.ahead(order, current, step) if i not in self.unreadable), None)

    @staticmethod
    def ahead(order: Sequence[int], current: Optional[int], step: int) -> List[int]:
        """The items a walk from ``current`` meets, in the order it meets them, unreadable ones
        too. When ``current`` is not in ``order`` (e.g. saved and filtered out), the walk goes on
        from where it was in folder order, else from the first."""
        order = list(order)
        if current is None:
            return order if step > 0 else order[::-1]
        if current in order:
            at = order.index(current)
            return order[at + 1:] if step > 0 else order[:at][::-1]
        ahead = [i for i in order if i > current] if step > 0 else [i for i in order if i < current][::-1]
        return ahead + [i for i in order if i not in ahead]

    def progress(self) -> Dict[str, int]:
        return self.dataset.progress([self.stem(i) for i in range(len(self.items))]) if self.items else \
            {"unreviewed": 0, "accepted": 0, "corrected": 0, "rejected": 0, "total": 0, "reviewed": 0}

    def progress_text(self) -> str:
        counts = self.progress()
        unreadable = sum(1 for i in self.unreadable if self.status(i) == "unreviewed")
        return f"{counts['reviewed']} / {counts['total']} reviewed" + (f" · {unreadable} unreadable" if unreadable else "")

    # -- ground truth -------------------------------------------------------------------
    def reference(self, index: int) -> Optional[np.ndarray]:
        if self.reference_dir is None:
            return None
        path = find_image(self.reference_dir, Path(self.items[index].source_path).stem)
        return read_mask(path) if path is not None else None

    def score(self, index: int, prediction: Optional[np.ndarray] = None,
              corrected: Optional[np.ndarray] = None) -> Dict[str, Tuple[float, float]]:
        """Dice/IoU of a prediction and/or corrected mask vs the reference (kept for the means)."""
        reference = self.reference(index)
        entry = self.scores.setdefault(self.stem(index), {})
        if reference is None:
            return entry
        for key, mask in (("prediction", prediction), ("corrected", corrected)):
            if mask is not None and np.asarray(mask).shape == reference.shape:
                entry[key] = dice_iou(mask, reference)
        return entry

    def running_means(self) -> Dict[str, Dict[str, float]]:
        """Mean Dice/IoU of the items scored so far; rejected items (unusable images) are left out,
        not counted as 0."""
        rejected = {stem for stem, record in self._records().items() if record.status == "rejected"}
        kept = [s for stem, s in self.scores.items() if stem not in rejected]
        return {key: mean_scores(s.get(key) for s in kept) for key in ("prediction", "corrected")}

    def scores_text(self, index: int) -> str:
        if self.reference_dir is None:
            return ""
        entry = self.scores.get(self.stem(index), {})
        means = self.running_means()
        lines = []
        for key in ("prediction", "corrected"):
            here = entry.get(key)
            mean = means[key]
            this = f"Dice {here[0]:.3f}  IoU {here[1]:.3f}" if here else "–"
            overall = f"mean Dice {mean['dice']:.3f}  IoU {mean['iou']:.3f} (n={mean['n']})" if mean["n"] else ""
            lines.append(f"{key}: {this}   {overall}".rstrip())
        if self.reference(index) is None:
            lines.insert(0, "no reference mask for this item")
        return "\n".join(lines)
