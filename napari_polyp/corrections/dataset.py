"""The corrections store: reviewed masks saved so that nothing is ever lost.

The dataset's layout and manifest fields are described once, in
docs/corrections-format.md; records are read and checked in
:mod:`napari_polyp.corrections.manifest`, masks decoded by
:mod:`napari_polyp.io.masks`.

Nothing outside the dataset folder is ever read, written or deleted: every path
goes through :meth:`CorrectionsDataset.inside`, which refuses absolute paths,
``..`` and symbolic links that lead out (a record naming such a path was already
skipped when the manifest was read).

How a save survives a crash (atomic writes, the record as commit point, the lock
around writers) is described with the format in docs/corrections-format.md; ``tests/corrections/
test_durability.py`` kills saves at every step to check it.
"""
from __future__ import annotations

import datetime as _dt
import getpass
import hashlib
import json
import os
import re
import warnings
from collections import Counter
from pathlib import Path, PurePosixPath
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import UserError
from ..io.atomic import atomic_write_bytes, encode_image_png, fsync_dir, remove_stale_temporaries
from ..io.images import (IMAGE_EXTENSIONS, as_rgb_uint8, decode_raw, encoded_image_size, find_image,
                         image_size, read_image)
from ..io.masks import decode_mask, encode_mask_png
from .manifest import (
    FORMAT_VERSION,
    LOCK,
    MANIFEST,
    STATUSES,
    TRAINING_STATUSES,
    ManifestIndex,
    Record,
    check_storable,
    clean_clicks,
    path_problem,
    read_manifest,
    safe_stem,
    unique_stem,
)

LOCK_TIMEOUT_S = 60.0

PathLike = Union[str, os.PathLike]


class DatasetError(UserError):
    """The dataset cannot do what was asked; the message names the folder or file and says why."""


def default_reviewer() -> str:
    """Reviewer name from settings: env NAPARI_POLYP_REVIEWER, else the login name."""
    name = os.environ.get("NAPARI_POLYP_REVIEWER", "").strip()
    if name:
        return name
    try:
        return getpass.getuser()
    except Exception:  # no login name (some containers)
        return "unknown"


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def pixels_changed(corrected: np.ndarray, predicted: np.ndarray) -> int:
    """Pixels where the corrected mask and the predicted mask disagree (foreground = nonzero)."""
    corrected, predicted = np.asarray(corrected), np.asarray(predicted)
    if corrected.shape != predicted.shape:
        raise ValueError(f"mask {corrected.shape} and prediction {predicted.shape} differ in shape")
    return int(np.count_nonzero((corrected != 0) != (predicted != 0)))


def _crash_point(name: str) -> None:
    """Test hook: NAPARI_POLYP_CRASH_AT=<name> kills the process here (durability tests)."""
    if os.environ.get("NAPARI_POLYP_CRASH_AT") == name:
        os._exit(137)


# --------------------------------------------------------------------------- the dataset


class CorrectionsDataset:
    """A corrections dataset folder (created on first save). See the module docstring.

        ds = CorrectionsDataset("my-corrections")
        rec = ds.save(image=rgb, mask=mask, source_path="a.jpg", predicted=pred_mask,
                      model="microaunet", checkpoint_sha256=sha, threshold=0.5, status="corrected")
        image, mask, rec = ds.load(rec.stem)
        ds.items(); ds.progress()
    """

    def __init__(self, root: PathLike, lock_timeout: float = LOCK_TIMEOUT_S):
        self.root = Path(root)
        self.lock_timeout = lock_timeout
        self._lock = None
        self._index: Optional[ManifestIndex] = None

    # -- paths
    @property
    def manifest_path(self) -> Path:
        return self.inside(MANIFEST)

    def inside(self, relative: str) -> Path:
        """``root/relative``, refused (DatasetError) when it is absolute, climbs out with ``..``
        or resolves outside the dataset folder through a symbolic link."""
        problem = path_problem(self.root, relative)
        if problem:
            raise DatasetError(f"{self.root}: the path {relative!r} {problem}; napari-polyp only reads "
                               "and writes inside the dataset folder")
        return self.root / relative

    def history_dir(self, stem: str) -> Path:
        return self.inside(f"history/{stem}")

    def __repr__(self) -> str:
        return f"CorrectionsDataset({str(self.root)!r})"

    # -- reading (no lock: every file a reader sees is complete)
    def manifest_index(self, warn: bool = True) -> ManifestIndex:
        """The manifest's records, brought up to date (only appended lines are read again)."""
        if self._index is None:
            self._index = ManifestIndex(self.manifest_path)
        return self._index.refresh(warn)

    def format_version(self) -> int:
        """The format this folder is in now (0 = images/ + masks/ without a manifest)."""
        if self.manifest_path.exists():
            records = self.manifest_index().all_records()
            return max((r.format_version for r in records), default=FORMAT_VERSION)
        return 0 if self.inside("masks").is_dir() else FORMAT_VERSION

    def records(self) -> List[Record]:
        """Every record in save order (the full history of the index). Records are shared with
        the dataset's index: read them, do not change them."""
        if self.manifest_path.exists():
            return self.manifest_index().all_records()
        return self._v0_records()

    def latest(self) -> Dict[str, Record]:
        if self.manifest_path.exists():
            return self.manifest_index().current()
        return {record.stem: record for record in self._v0_records()}

    def items(self, status: Optional[Union[str, Tuple[str, ...]]] = None) -> List[Record]:
        """The current record of every item, sorted by stem; optionally only some statuses."""
        wanted = (status,) if isinstance(status, str) else status
        return [r for _, r in sorted(self.latest().items()) if wanted is None or r.status in wanted]

    def training_items(self) -> List[Record]:
        return self.items(TRAINING_STATUSES)

    def get(self, stem: str) -> Optional[Record]:
        return self.latest().get(stem)

    def __contains__(self, stem: str) -> bool:
        return stem in self.latest()

    def __len__(self) -> int:
        return len(self.latest())

    def progress(self, stems: Optional[List[str]] = None) -> Dict[str, int]:
        """Counts per status (over ``stems`` if given, unknown stems = unreviewed),
        plus ``total`` and ``reviewed`` (= not unreviewed)."""
        latest = self.latest()
        stems = list(latest) if stems is None else list(stems)
        counts = Counter(latest[s].status if s in latest else "unreviewed" for s in stems)
        out = {status: counts.get(status, 0) for status in STATUSES}
        out["total"] = len(stems)
        out["reviewed"] = len(stems) - out["unreviewed"]
        return out

    def find(self, source_path: Optional[PathLike] = None, image_sha256: Optional[str] = None) -> Optional[Record]:
        """The current record of an image, by its sha256 (preferred) or its source path."""
        latest = self.latest().values()
        if image_sha256:
            for record in latest:
                if record.image_sha256 == image_sha256:
                    return record
        if source_path:
            wanted = os.path.abspath(os.fspath(source_path))
            for record in latest:
                if record.source_path and os.path.abspath(record.source_path) == wanted:
                    return record
        return None

    def stem_for(self, preferred: str, image_sha256: str = "") -> str:
        """The stem an image is (or will be) stored under: ``preferred`` unless another
        image already holds that stem, then ``<preferred>-<sha[:8]>``."""
        return _unique_stem(safe_stem(preferred), image_sha256, self.latest())

    def owns(self, record: Record, relative: str) -> bool:
        """Whether ``relative`` is one of the files a save of ``record``'s item writes or replaces:
        ``masks/<stem>.<image extension>`` (a format-0 mask may be a JPEG). A record's own path
        field is never trusted for a write or a deletion: a hand-edited manifest may name
        another item's file there."""
        path = PurePosixPath(relative)
        return str(path.parent) == "masks" and path.stem == record.stem and path.suffix.lower() in IMAGE_EXTENSIONS

    def mask_path(self, record: Record) -> Path:
        """The file holding a record's mask, verified against ``mask_sha256`` when it has one.

        The mask file can be one step ahead of the index when a save was killed
        between writing the mask and appending its record; the record's own mask
        is then in history/<stem>/<version>.png."""
        path = self.inside(record.mask)
        try:
            return self._verified_mask_path(record, path)
        except OSError as err:  # a name the system refuses, a folder where a file should be
            raise DatasetError(f"{path}: the mask of {record.stem!r} cannot be read ({err.strerror or err})") from None

    def _verified_mask_path(self, record: Record, path: Path) -> Path:
        def matches(candidate: Path) -> bool:
            return not record.mask_sha256 or sha256_bytes(candidate.read_bytes()) == record.mask_sha256

        if path.is_file() and matches(path):
            return path
        for name in history_names(record.version, record.mask_sha256):
            kept = self.root / "history" / record.stem / name
            if self._readable_inside(kept) and matches(kept):
                return kept
        if path.is_file():
            warnings.warn(f"{path}: does not match its manifest record (edited by hand?); using it as it is", stacklevel=2)
            return path
        raise DatasetError(f"{path}: the mask of {record.stem!r} (version {record.version}) is missing")

    def mask_bytes(self, record: Record) -> bytes:
        return self.mask_path(record).read_bytes()

    def load_mask(self, stem: str) -> np.ndarray:
        record = self._require(stem)
        return self._decode(self.mask_path(record))

    def load_image(self, stem: str) -> np.ndarray:
        record = self._require(stem)
        return read_image(self.image_path(record))

    def image_path(self, record: Record) -> Path:
        if record.image:
            return self.inside(record.image)
        found = find_image(self.inside("images"), record.stem)
        if found is None:
            raise DatasetError(f"{self.root / 'images'}: no image for {record.stem!r}")
        return self.inside(found.relative_to(self.root).as_posix())

    def load(self, stem: str) -> Tuple[np.ndarray, np.ndarray, Record]:
        """(image HxWx3 uint8, mask HxW uint8 {0,1}, record) of an item's current version;
        a mask of another size than its image is refused (DatasetError naming both files)."""
        record = self._require(stem)
        image_file, mask_file = self.image_path(record), self.mask_path(record)
        image, mask = read_image(image_file), self._decode(mask_file)
        check_same_size(mask_file, mask.shape, image_file, image.shape[:2])
        return image, mask, record

    def checked_pair(self, record: Record) -> Tuple[Path, Path]:
        """(image file, mask file) of a record, sizes compared from the files' headers (no decoding):
        DatasetError naming the file when either is missing, unreadable or of another size."""
        image_file, mask_file = self.image_path(record), self.mask_path(record)
        check_same_size(mask_file, image_size(mask_file), image_file, image_size(image_file))
        return image_file, mask_file

    def load_prediction(self, stem: str) -> Optional[np.ndarray]:
        """The network's mask the item's correction started from, if it was saved."""
        record = self._require(stem)
        path = self.inside(record.prediction or f"predictions/{record.stem}.png")
        return self._decode(path) if path.exists() else None

    def load_strokes(self, stem: str) -> Optional[np.ndarray]:
        """The refine strokes of an item's current version (HxW uint8: 0 none, 1 fg, 2 bg), if saved."""
        record = self._require(stem)
        if not record.strokes:
            return None
        path = self.inside(record.strokes)
        if not path.is_file():
            raise DatasetError(f"{path}: the strokes of {record.stem!r} (version {record.version}) are missing")
        array, _ = decode_raw(path.read_bytes(), path)
        labels = np.asarray(array)
        if labels.ndim != 2 or not np.isin(labels, (0, 1, 2)).all():
            raise DatasetError(f"{path}: not a stroke label image (2-D, values 0/1/2)")
        return labels.astype(np.uint8)

    @staticmethod
    def _decode(path: Path) -> np.ndarray:
        return decode_mask(path.read_bytes(), path)

    def history(self, stem: str) -> List[Tuple[int, Path]]:
        """Earlier masks of an item: (version, path), oldest first (files leading outside left out).
        A version whose number a merged or hand-edited manifest used twice has a second file,
        ``<version>-<sha8>.png``, listed after the first."""
        folder = self.history_dir(stem)
        if not folder.is_dir():
            return []
        found = [(_history_version(p.stem), p.stem, p) for p in folder.glob("*.png")
                 if _history_version(p.stem) and not path_problem(self.root, p.relative_to(self.root).as_posix())]
        return [(version, path) for version, _, path in sorted(found, key=lambda f: (f[0], len(f[1]), f[1]))]

    def load_version(self, stem: str, version: int) -> np.ndarray:
        record = self._require(stem)
        if version == record.version:
            return self._decode(self.mask_path(record))
        path = self.root / "history" / safe_stem(stem) / f"{int(version)}.png"
        if not self._readable_inside(path):
            raise DatasetError(f"{path}: version {version} of {stem!r} is not in the history")
        return self._decode(path)

    def _require(self, stem: str) -> Record:
        record = self.get(stem)
        if record is None:
            raise KeyError(f"{self.root}: no item {stem!r}")
        return record

    def _v0_records(self) -> List[Record]:
        """Format 0: images/ + masks/ and no manifest -> one accepted record per mask with an image."""
        masks_dir = self.inside("masks")
        if not masks_dir.is_dir():
            return []
        records: Dict[str, Record] = {}
        for mask_path in sorted(masks_dir.iterdir()):
            if mask_path.name.startswith(".") or mask_path.suffix.lower() not in IMAGE_EXTENSIONS:
                continue
            image = find_image(self.inside("images"), mask_path.stem)
            relative = [p.relative_to(self.root).as_posix() for p in (image, mask_path) if p is not None]
            if image is None or any(path_problem(self.root, r) for r in relative):
                continue  # no image, or a symbolic link out of the folder: never followed
            stem = safe_stem(mask_path.stem)
            if stem in records:
                self._warn_hidden_pair(mask_path, records[stem])
                continue
            stamp = _dt.datetime.fromtimestamp(mask_path.stat().st_mtime, _dt.timezone.utc).isoformat(timespec="seconds")
            records[stem] = Record(
                stem=stem, version=1, image=relative[0], mask=relative[1],
                status="accepted", created=stamp, updated=stamp, format_version=0,
            )
        return list(records.values())

    def _warn_hidden_pair(self, mask_path: Path, kept: Record) -> None:
        """Two masks whose names clean to one stem (``a b.png``, ``a_b.png``): only the first is read."""
        message = (f"{mask_path}: left out, its name cleans to the item name {kept.stem!r} that "
                   f"{self.root / kept.mask} already has; rename one of them to read both")
        if message not in _hidden_pairs_reported:
            _hidden_pairs_reported.add(message)
            warnings.warn(message, UserWarning, stacklevel=4)

    # -- writing (under the cross-process lock)
    def lock(self):
        """The cross-process write lock (a context manager)."""
        from filelock import FileLock

        self.root.mkdir(parents=True, exist_ok=True)
        self._remove_linked_lock_file()
        if self._lock is None:
            self._lock = FileLock(str(self.inside(LOCK)), timeout=self.lock_timeout)
        return self._lock

    def _remove_linked_lock_file(self) -> None:
        """The lock file holds no data; a symbolic link in its place (which the lock refuses to
        open, Errno 40) is removed, the link itself and never what it points to."""
        path = self.root / LOCK
        if path.is_symlink():
            warnings.warn(f"{path}: was a symbolic link, not a lock file; the link was removed", stacklevel=3)
            path.unlink()

    def save(
        self,
        image: Optional[np.ndarray] = None,
        mask: Optional[np.ndarray] = None,
        *,
        stem: Optional[str] = None,
        source_path: Optional[PathLike] = None,
        predicted: Optional[np.ndarray] = None,
        model: str = "",
        checkpoint_sha256: str = "",
        threshold: Optional[float] = None,
        status: str = "corrected",
        note: str = "",
        reviewer: Optional[str] = None,
        strokes: Optional[np.ndarray] = None,
        clicks: Optional[Sequence[Mapping]] = None,
        **extra,
    ) -> Record:
        """Save an item's mask as its new current version and return the new record.

        image: HxWx3 array; not needed when ``source_path`` is an image file or the
            item is already in the dataset. mask: HxW, nonzero = object.
        predicted: the network's mask, to count ``pixels_changed`` (kept in
            predictions/); without it an earlier saved prediction is used.
        strokes: the refine strokes this mask was made with (HxW, 0 none, 1 foreground,
            2 background; :mod:`napari_polyp.corrections.refine`), kept as
            strokes/<stem>/<version>.png and named by the record's ``strokes`` field.
        clicks: the Click mode clicks this mask was made with, in order ({"row", "col",
            "positive"} each, inside the mask; :mod:`napari_polyp.corrections.clicks`),
            kept in the record's ``clicks`` field.
        """
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
        if mask is None:
            raise ValueError("save needs a mask")
        check_storable(extra)  # an unstorable extra field fails here, before any write
        mask = np.asarray(mask)
        if mask.ndim != 2:
            raise ValueError(f"a mask must be 2-D (H, W), got shape {mask.shape}")
        image_bytes, image_ext = self._image_payload(image, source_path)
        image_sha = sha256_bytes(image_bytes) if image_bytes is not None else ""
        if stem is None and source_path is None:
            raise ValueError("save needs a stem or a source_path")
        # A stem named by the caller is theirs to overwrite; a stem made from a file name,
        # or one that cleaning changed ('..', '', '?'), must not take another image's place.
        wanted = Path(source_path).stem if stem is None else str(stem)
        may_share = stem is not None and safe_stem(wanted) == wanted
        stem = safe_stem(wanted)
        mask_png = encode_mask_png(mask)
        prediction_png = encode_mask_png(predicted) if predicted is not None else None
        if predicted is not None and np.asarray(predicted).shape != mask.shape:
            raise ValueError(f"prediction {np.asarray(predicted).shape} and mask {mask.shape} differ in shape")
        strokes_png = _encode_strokes(strokes, mask.shape)
        click_log = clean_clicks(clicks, mask.shape) if clicks is not None else []

        with self.lock():
            index = self._prepare_for_write()
            latest = index.current()
            if not may_share:
                stem = _unique_stem(stem, image_sha, latest)
            previous = latest.get(stem)
            if previous is None and image_bytes is None:
                raise ValueError(f"{stem!r} is new to the dataset: save needs its image or an image source_path")
            self._check_mask_fits_image(mask.shape, image_bytes, source_path, previous)

            version = self._next_version(stem, index)
            # one strokes file per version, so a save cut short never overwrites a confirmed one;
            # its path is checked now, before anything is written
            strokes_rel = f"strokes/{stem}/{version}.png" if strokes_png is not None else ""
            strokes_target = self.inside(strokes_rel) if strokes_rel else None

            # 1. the previous good mask into history/ (unless already there); a new item's mask
            # file left by a save cut short before its record is kept there too
            if previous is not None:
                self._keep_previous_mask(previous)
            else:
                self._keep_orphan_mask(stem, mask_png)
            _crash_point("after-history")

            # 2. the image (only when new or changed)
            image_rel = previous.image if previous is not None else ""
            if image_bytes is not None and (previous is None or previous.image_sha256 != image_sha):
                image_rel = f"images/{stem}{image_ext}"
                atomic_write_bytes(self.inside(image_rel), image_bytes)
            elif previous is not None:
                image_sha = previous.image_sha256
            _crash_point("after-image")

            # 3. the prediction (when given) and the new mask
            prediction_rel = previous.prediction if previous is not None else ""
            if prediction_png is not None:
                prediction_rel = f"predictions/{stem}.png"
                atomic_write_bytes(self.inside(prediction_rel), prediction_png)
            if predicted is None and prediction_rel and self.inside(prediction_rel).exists():
                predicted = self._decode(self.inside(prediction_rel))
                if predicted.shape != mask.shape:
                    predicted = None
            _crash_point("before-mask")
            mask_rel = f"masks/{stem}.png"
            atomic_write_bytes(self.inside(mask_rel), mask_png)
            _crash_point("after-mask")
            if strokes_png is not None:
                atomic_write_bytes(strokes_target, strokes_png)

            # 4. the record: the commit point
            stamp = now_iso()
            record = Record(
                stem=stem,
                version=version,
                image=image_rel,
                mask=mask_rel,
                prediction=prediction_rel,
                source_path=os.path.abspath(os.fspath(source_path)) if source_path else (previous.source_path if previous else ""),
                image_sha256=image_sha,
                mask_sha256=sha256_bytes(mask_png),
                # provenance of the prediction the mask started from: kept unless a new one is named
                model=model or (previous.model if previous else ""),
                checkpoint_sha256=checkpoint_sha256 or (previous.checkpoint_sha256 if previous else ""),
                threshold=threshold if threshold is not None else (previous.threshold if previous else None),
                status=status,
                note=note,
                reviewer=reviewer if reviewer is not None else default_reviewer(),
                created=previous.created if previous is not None and previous.created else stamp,
                updated=stamp,
                pixels_changed=pixels_changed(mask, predicted) if predicted is not None else None,
                strokes=strokes_rel,
                clicks=click_log,
                extra=dict(extra),
            )
            self._append(record)
            _crash_point("after-record")

            # 5. an old mask of this item under another name (a v0 .jpg mask) is in history now: drop it
            if previous is not None and previous.mask != mask_rel and self.owns(previous, previous.mask) \
                    and self.inside(previous.mask).exists():
                old_mask = self.inside(previous.mask)
                os.unlink(old_mask)
                fsync_dir(old_mask.parent)
        return record

    def set_status(self, stem: str, status: str, note: Optional[str] = None, reviewer: Optional[str] = None) -> Record:
        """A new version with the same mask and another status/note."""
        with self.lock():
            record = self._require(stem)
            mask = self._decode(self.mask_path(record))
            return self.save(
                mask=mask, stem=stem, status=status, note=record.note if note is None else note,
                reviewer=reviewer, model=record.model, checkpoint_sha256=record.checkpoint_sha256,
                threshold=record.threshold,
            )

    def repair(self) -> Dict[str, object]:
        """Bring every item's mask file back in line with its record (after a crash);
        unconfirmed masks are kept in history/. Returns what was done: ``masks_restored``, and
        ``skipped``, one line per item that could not be repaired (the others still are)."""
        done: Dict[str, object] = {"masks_restored": 0, "skipped": []}
        with self.lock():
            for record in self._prepare_for_write().current().values():
                try:
                    done["masks_restored"] += int(self._restore_confirmed_mask(record))
                except (UserError, OSError, ValueError) as err:
                    done["skipped"].append(f"{record.stem}: {err}")
        return done

    # -- write internals (call with the lock held)
    def _prepare_for_write(self) -> ManifestIndex:
        """Repair what a killed writer left and return the manifest's index, up to date."""
        self.root.mkdir(parents=True, exist_ok=True)
        for folder in ("", "images", "masks", "predictions"):
            remove_stale_temporaries(self.inside(folder) if folder else self.root)
        if not self.manifest_path.exists():
            self._write_initial_manifest()
        # writers read quietly: the readers' warnings name each skipped line once
        index = self.manifest_index(warn=False)
        if index.torn or not _ends_with_newline(self.manifest_path):
            self._repair_manifest_tail()
            index = self.manifest_index(warn=False)
        return index

    def _next_version(self, stem: str, index: ManifestIndex) -> int:
        """One more than any version the item ever had, in any manifest record or any file of
        history/ and strokes/: a merged or hand-edited manifest whose versions go backwards then
        never makes a save write over the file of an earlier version."""
        used = [index.highest_version(stem)]
        for folder in (self.inside(f"history/{stem}"), self.inside(f"strokes/{stem}")):
            if folder.is_dir():
                used += [_history_version(p.stem) or 0 for p in folder.iterdir()]
        return max(used) + 1

    def _check_mask_fits_image(self, mask_shape, image_bytes: Optional[bytes], source_path, previous) -> None:
        """A mask of another size than its image is refused before anything is written (the
        stored image of an item saved before is measured from its header, when it can be read)."""
        if image_bytes is not None:
            name = Path(source_path) if source_path is not None else Path("the image")
            check_same_size("the mask", tuple(mask_shape), name, encoded_image_size(image_bytes, name))
            return
        try:
            image_file = self.image_path(previous)
            stored = image_size(image_file)
        except (UserError, OSError):
            return  # a stored image that cannot be read is not a reason to lose this correction
        check_same_size("the mask", tuple(mask_shape), image_file, stored)

    def _write_initial_manifest(self) -> None:
        """Create the manifest; a v0 folder's items are indexed first (migration)."""
        lines = []
        for record in self._v0_records():
            data = self.inside(record.mask).read_bytes()
            record.mask_sha256 = sha256_bytes(data)
            image_path = self.image_path(record)
            record.image_sha256 = sha256_bytes(image_path.read_bytes())
            record.format_version = FORMAT_VERSION
            record.extra["migrated_from_format"] = 0
            lines.append(record.to_json() + "\n")
        atomic_write_bytes(self.manifest_path, "".join(lines).encode("utf-8"))

    def _repair_manifest_tail(self) -> None:
        """Drop a torn last line (or add the missing newline of a complete one)."""
        path = self.manifest_path
        data = path.read_bytes()
        cut = data.rfind(b"\n") + 1
        tail = data[cut:]
        with open(path, "r+b") as fh:
            if tail.strip():
                try:
                    json.loads(tail)
                    fh.seek(0, os.SEEK_END)
                    fh.write(b"\n")
                except ValueError:
                    fh.truncate(cut)
            else:
                fh.truncate(cut)
            fh.flush()
            os.fsync(fh.fileno())

    def _append(self, record: Record) -> None:
        line = (record.to_json() + "\n").encode("utf-8")
        existed = self.manifest_path.exists()
        with open(self.manifest_path, "ab") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())
        if not existed:
            fsync_dir(self.root)

    def _confirmed_mask_bytes(self, record: Record) -> Optional[bytes]:
        try:
            return self.mask_bytes(record)
        except DatasetError:
            return None

    def _keep_previous_mask(self, previous: Record) -> None:
        """history/<stem>/<version>.png := the mask of ``previous`` (the last good one)."""
        good = self._confirmed_mask_bytes(previous)
        if good is None:
            return
        self._keep_unconfirmed(previous, good)
        if not previous.mask.lower().endswith(".png"):  # a v0 mask stored as JPEG/BMP/...: keep it as PNG
            good = encode_mask_png(decode_mask(good, previous.mask))
        folder = self.history_dir(previous.stem)
        remove_stale_temporaries(folder)
        self._add_to_history(folder, previous.version, good)

    def _add_to_history(self, folder: Path, version: int, data: bytes) -> None:
        """Keep ``data`` as version ``version`` in ``folder``, never writing over a file there: when
        ``<version>.png`` holds other bytes (a manifest whose versions went backwards), the mask
        goes to ``<version>-<sha8>.png``; a planted link is neither followed nor replaced."""
        names = history_names(version, sha256_bytes(data))
        for name in names + [f"{names[-1][:-4]}-{now_iso()[:19].replace(':', '')}.png"]:
            target = folder / name
            if not target.exists() and not target.is_symlink():
                atomic_write_bytes(target, data)
                return
            if self._readable_inside(target) and target.read_bytes() == data:
                return
        raise DatasetError(f"{folder}: version {version} is taken by other files; nothing was written over")

    def _keep_unconfirmed(self, record: Record, good: bytes) -> None:
        """A mask file that is not the record's (an interrupted save) goes to history/ too."""
        path = self.inside(record.mask)
        if not self.owns(record, record.mask) or not path.exists():
            return
        data = path.read_bytes()
        if data == good:
            return
        recorded = self.manifest_index(warn=False).version_with_mask(record.stem, sha256_bytes(data))
        if recorded is not None:  # a confirmed version after all (a manifest whose versions went backwards)
            self._add_to_history(self.history_dir(record.stem), recorded, data)
            return
        self._add_unconfirmed(record.stem, record.version + 1, data)

    def _keep_orphan_mask(self, stem: str, replacing: bytes) -> None:
        """``masks/<stem>.png`` of an item the manifest does not hold (its first save was cut short
        before its record, or the record's line was torn) goes to history/ before a save replaces it."""
        data = self._orphan_mask_bytes(stem)
        if data is not None and data != replacing:
            self._add_unconfirmed(stem, 1, data)

    def _orphan_mask_bytes(self, stem: str) -> Optional[bytes]:
        path = self.inside(f"masks/{safe_stem(stem)}.png")
        return path.read_bytes() if self._readable_inside(path) else None

    def _add_unconfirmed(self, stem: str, version: int, data: bytes) -> None:
        folder = self.history_dir(stem)
        if folder.is_dir() and any(self._readable_inside(p) and p.read_bytes() == data
                                   for p in folder.glob("unconfirmed-*.png")):
            return
        stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S%f")
        atomic_write_bytes(folder / f"unconfirmed-{version}-{stamp}.png", data)

    def unconfirmed_mask(self, stem: str) -> Optional[Tuple[np.ndarray, Path]]:
        """(mask, file) of the save of ``stem`` that was cut short after its mask was written and
        before its record was (a crash, a torn last line of the manifest), when its file is still in
        masks/ and no record holds it; None otherwise. Review offers it back."""
        record = self.get(stem)
        path = self.inside(f"masks/{safe_stem(stem)}.png")
        data = self._orphan_mask_bytes(stem)
        if data is None:
            return None
        if record is not None and \
                self.manifest_index(warn=False).version_with_mask(record.stem, sha256_bytes(data)) is not None:
            return None
        try:
            return self._decode(path), path
        except (UserError, OSError, ValueError):
            return None  # an unreadable file is left for a person; a save keeps it in history/

    def _restore_confirmed_mask(self, record: Record) -> bool:
        if not self.owns(record, record.mask):
            return False  # a record naming another item's file: that file is the other item's to keep
        good = self._confirmed_mask_bytes(record)
        path = self.inside(record.mask)
        if good is None or (path.exists() and path.read_bytes() == good):
            return False
        self._keep_unconfirmed(record, good)
        atomic_write_bytes(path, good)
        return True

    def _readable_inside(self, path: Path) -> bool:
        """An existing file of the dataset that does not lead out of it (a planted link is not read)."""
        return not path_problem(self.root, path.relative_to(self.root).as_posix()) and path.is_file()

    @staticmethod
    def _image_payload(image, source_path) -> Tuple[Optional[bytes], str]:
        """The bytes to store for the image and their extension."""
        if source_path is not None:
            source = Path(source_path)
            if source.is_file() and source.suffix.lower() in IMAGE_EXTENSIONS:
                suffix = ".jpg" if source.suffix.lower() == ".jpeg" else source.suffix.lower()
                return source.read_bytes(), suffix
        if image is None:
            return None, ""
        image = np.asarray(image)
        if image.ndim not in (2, 3):
            raise ValueError(f"an image must be HxW or HxWxC, got shape {image.shape}")
        if image.dtype != np.uint8:
            image = as_rgb_uint8(image)
        return encode_image_png(image), ".png"


# --------------------------------------------------------------------------- small helpers


def _encode_strokes(strokes: Optional[np.ndarray], shape) -> Optional[bytes]:
    """A stroke label array as an 8-bit PNG of labels 0/1/2 (None when there are no strokes)."""
    if strokes is None:
        return None
    strokes = np.asarray(strokes)
    if strokes.shape != tuple(shape):
        raise ValueError(f"strokes {strokes.shape} and mask {tuple(shape)} differ in shape")
    if not np.isin(strokes, (0, 1, 2)).all():
        raise ValueError("strokes hold labels other than 0 (none), 1 (foreground) and 2 (background)")
    return encode_image_png(strokes.astype(np.uint8)) if strokes.any() else None


_hidden_pairs_reported: set = set()  # one warning per hidden pair, not one per read


def _ends_with_newline(path: Path) -> bool:
    size = path.stat().st_size
    if size == 0:
        return True
    with open(path, "rb") as fh:
        fh.seek(size - 1)
        return fh.read(1) == b"\n"


def _unique_stem(stem: str, image_sha256: str, latest: Dict[str, Record]) -> str:
    """``stem``, or ``<stem>-<sha[:8]>`` when another image already holds ``stem``."""
    current = latest.get(stem)
    return unique_stem(stem, image_sha256, current.image_sha256 if current is not None else None)


def history_names(version: int, mask_sha256: str) -> List[str]:
    """The names a version's mask may have in history/<stem>/: ``<version>.png``, then (when a
    manifest used the number twice) ``<version>-<first 8 hex digits of the mask's sha256>.png``."""
    return [f"{version}.png"] + ([f"{version}-{mask_sha256[:8]}.png"] if mask_sha256 else [])


_HISTORY_NAME = re.compile(r"([0-9]{1,16})(?:-[0-9a-f]{8})?")


def _history_version(name: str) -> Optional[int]:
    """The version a history/ or strokes/ file name stands for (``3``, ``3-1a2b3c4d``); None otherwise."""
    match = _HISTORY_NAME.fullmatch(name)
    return int(match.group(1)) if match else None


def check_same_size(mask_name, mask_shape, image_name, image_shape) -> None:
    """DatasetError naming the mask when it is not its image's size (height, width)."""
    if tuple(mask_shape[:2]) != tuple(image_shape[:2]):
        (mh, mw), (ih, iw) = mask_shape[:2], image_shape[:2]
        raise DatasetError(f"{mask_name}: the mask is {mw}x{mh} pixels but its image {image_name} is {iw}x{ih}; "
                           "a mask must be its image's size")


__all__ = [  # the manifest and mask names are re-exported here, where callers have always found them
    "CorrectionsDataset",
    "DatasetError",
    "FORMAT_VERSION",
    "MANIFEST",
    "Record",
    "STATUSES",
    "TRAINING_STATUSES",
    "decode_mask",
    "default_reviewer",
    "pixels_changed",
    "read_manifest",
    "safe_stem",
]
