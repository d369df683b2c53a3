"""Manifest records of a corrections dataset: reading, checking and migrating them.

The format, what a manifest path may point to and how stems are cleaned are
described once, in README.md, section "Corrections dataset". This module turns
manifest lines into :class:`Record` objects, skips the records the README says
are never followed (one ``UserWarning`` per manifest line, not one per read),
and fills in what older records lack.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
from collections import Counter
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Dict, List, Optional, Set, Tuple, Union

import numpy as np

FORMAT_VERSION = 1
MANIFEST = "manifest.jsonl"
LOCK = ".manifest.lock"
STATUSES = ("unreviewed", "accepted", "corrected", "rejected")
TRAINING_STATUSES = ("accepted", "corrected")
PATH_FIELDS = ("image", "mask", "prediction", "strokes")
OPTIONAL_FIELDS = ("strokes",)  # written only when set, so most manifest lines stay as they were

PathLike = Union[str, os.PathLike]


@dataclass
class Record:
    """One manifest line: the state of one item after one save."""

    stem: str
    version: int = 1
    image: str = ""
    mask: str = ""
    prediction: str = ""
    source_path: str = ""
    image_sha256: str = ""
    mask_sha256: str = ""
    model: str = ""
    checkpoint_sha256: str = ""
    threshold: Optional[float] = None
    status: str = "unreviewed"
    note: str = ""
    reviewer: str = ""
    created: str = ""
    updated: str = ""
    pixels_changed: Optional[int] = None
    strokes: str = ""  # strokes/<stem>/<version>.png: the refine strokes of this save (0 none, 1 fg, 2 bg)
    format_version: int = FORMAT_VERSION
    extra: Dict[str, object] = field(default_factory=dict)

    def to_json(self) -> str:
        data = asdict(self)
        extra = data.pop("extra")
        data = {"format_version": data.pop("format_version"), **data}
        for key in OPTIONAL_FIELDS:
            if not data[key]:
                del data[key]
        for key, value in extra.items():
            data.setdefault(key, value)
        return json.dumps(data, ensure_ascii=False, separators=(", ", ": "), default=_json_default)

    @classmethod
    def from_dict(cls, raw: dict, order: int = 1) -> "Record":
        """Build a record from any format version (missing fields get defaults)."""
        return migrate_record(raw, order)

    @property
    def for_training(self) -> bool:
        return self.status in TRAINING_STATUSES


def _json_default(value):
    """numpy scalars/arrays (a threshold from layer metadata, a frame number) as plain JSON."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"{type(value).__name__} cannot be stored in the manifest")


def check_storable(extra: dict) -> None:
    """Raise TypeError now, before any write, when an extra field cannot go into the manifest."""
    json.dumps(extra, default=_json_default)


# --------------------------------------------------------------------------- stems


_UNSAFE_STEM_CHARACTERS = re.compile(r"[^\w.-]+")  # \w keeps letters of every script
MAX_STEM = 150


def safe_stem(name: str) -> str:
    """A file-system-safe stem: letters (any script), digits, ``_``, ``.`` and ``-`` only,
    no leading or trailing dot (so never ``.`` or ``..``); ``item`` when nothing is left.
    Cleaning twice changes nothing."""
    stem = _UNSAFE_STEM_CHARACTERS.sub("_", str(name)).strip("._") or "item"
    return stem[:MAX_STEM].rstrip("._") or "item"


# --------------------------------------------------------------------------- paths


def relative_path_problem(value: object) -> Optional[str]:
    """Why ``value`` is not a usable path inside a dataset, judged on the text alone; None if it is."""
    if not isinstance(value, str):
        return f"is a {type(value).__name__}, not a text path"
    if "\x00" in value:
        return "contains a NUL character"
    if PurePosixPath(value).is_absolute() or PureWindowsPath(value).is_absolute() or PureWindowsPath(value).drive:
        return "is an absolute path"
    if ".." in re.split(r"[\\/]", value):
        return "climbs out of the dataset with '..'"
    return None


def resolves_inside(path: Path, root: Path) -> bool:
    """Whether ``path``, with every symlink followed, stays inside ``root`` (also resolved)."""
    try:
        Path(path).resolve().relative_to(Path(root).resolve())
    except ValueError:
        return False
    return True


def path_problem(root: Path, value: object) -> Optional[str]:
    """Why ``root/value`` must not be used; None when it is a path inside the dataset."""
    problem = relative_path_problem(value)
    if problem is None and value and not resolves_inside(Path(root) / str(value), root):
        problem = "leads outside the dataset folder (through a symbolic link)"
    return problem


# --------------------------------------------------------------------------- migration


_FIELD_NAMES = tuple(f.name for f in fields(Record) if f.name != "extra")
_TEXT_FIELDS = ("source_path", "image_sha256", "mask_sha256", "model", "checkpoint_sha256", "status",
                "note", "reviewer", "created", "updated", "strokes")


def migrate_record(raw: dict, order: int) -> Record:
    """Any record -> a format-1 Record (v0 records lack format_version and maybe more).

    Raises ValueError when the record names no usable stem or a path field is unusable."""
    raw = dict(raw)
    version_of_format = raw.pop("format_version", 0)
    stem = _stem_of(raw)
    known = {k: raw.pop(k) for k in list(raw) if k in _FIELD_NAMES}
    raw.pop("name", None)
    for key in PATH_FIELDS:
        value = known.get(key)
        if value not in (None, ""):
            problem = relative_path_problem(value)
            if problem:
                raise ValueError(f"its {key!r} {value!r} {problem}")
    record = Record(stem=stem, extra=raw)
    for key, value in known.items():
        if value is not None or key in ("threshold", "pixels_changed"):
            setattr(record, key, value)
    record.stem = stem
    record.format_version = int(version_of_format) if _is_number(version_of_format) else 0
    _repair_field_types(record, known)
    if not record.mask:
        record.mask = f"masks/{stem}.png"
    if not isinstance(known.get("version"), int) or isinstance(known.get("version"), bool):
        record.version = order
    if record.status not in STATUSES:
        record.extra.setdefault("original_status", record.status)
        # an old record saved with a mask but an unknown status was a reviewer's save
        record.status = "accepted" if record.mask else "unreviewed"
    if not record.created:
        record.created = record.updated
    return record


def _stem_of(raw: dict) -> str:
    """The record's stem, cleaned like the stems ``save`` is given."""
    stem = raw.get("stem") or raw.get("name")
    if not stem:
        for key in ("mask", "image"):
            if isinstance(raw.get(key), str) and raw[key]:
                stem = PurePosixPath(raw[key].replace("\\", "/")).stem
                break
    if not stem or not isinstance(stem, (str, int)) or isinstance(stem, bool):
        raise ValueError("record names no stem, mask or image")
    return safe_stem(str(stem))


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _repair_field_types(record: Record, known: dict) -> None:
    """Fields of the wrong type get their default; the value read is kept in ``extra``."""
    defaults = Record(stem=record.stem)
    for key in _TEXT_FIELDS:
        if not isinstance(getattr(record, key), str):
            record.extra.setdefault(f"original_{key}", known.get(key))
            setattr(record, key, getattr(defaults, key))
    for key in ("threshold", "pixels_changed"):
        value = getattr(record, key)
        if value is not None and not _is_number(value):
            record.extra.setdefault(f"original_{key}", value)
            setattr(record, key, None)


# --------------------------------------------------------------------------- reading


_already_warned: Set[Tuple[str, int, str]] = set()


def _warn_once(manifest: Path, number: int, line: bytes, reason: str) -> None:
    """One warning per manifest line and content, however often the manifest is read."""
    key = (str(Path(manifest).resolve()), number, hashlib.sha256(line).hexdigest())
    if key in _already_warned:
        return
    _already_warned.add(key)
    warnings.warn(f"{manifest}: line {number} skipped, {reason}", UserWarning, stacklevel=3)


def read_manifest(path: PathLike, warn: bool = True) -> Tuple[List[Record], bool]:
    """All usable records of a manifest, in file order, and whether its last line is torn.

    A torn last line (no newline and not valid JSON) is the trace of a write cut
    short: ignored. Any other unusable line (not JSON, or a record whose paths lead
    outside the dataset) is skipped, with one warning naming the line when ``warn``."""
    path = Path(path)
    root = path.parent
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return [], False
    lines, torn = _split_lines(data)
    records: List[Record] = []
    per_stem: Counter = Counter()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = _parse_line(line, root, per_stem)
        except ValueError as err:
            if warn:
                _warn_once(path, number, line, f"it is not a usable record ({err})")
            continue
        per_stem[record.stem] += 1
        records.append(record)
    return records, torn


def _split_lines(data: bytes) -> Tuple[List[bytes], bool]:
    """The manifest's lines, and whether the last one is torn (then left out)."""
    lines = data.split(b"\n")
    tail = lines.pop()  # b"" when the file ends with a newline
    if not tail.strip():
        return lines, False
    try:
        json.loads(tail)
    except ValueError:
        return lines, True
    return lines + [tail], False  # a complete record, only its newline is missing


def _parse_line(line: bytes, root: Path, per_stem: Counter) -> Record:
    raw = json.loads(line)
    if not isinstance(raw, dict):
        raise ValueError("not an object")
    record = migrate_record(raw, per_stem[_stem_of(raw)] + 1)
    for key in PATH_FIELDS:
        value = getattr(record, key)
        problem = path_problem(root, value) if value else None
        if problem:
            raise ValueError(f"its {key!r} {value!r} {problem}")
    return record


def latest_by_stem(records: List[Record]) -> Dict[str, Record]:
    latest: Dict[str, Record] = {}
    for record in records:
        latest[record.stem] = record
    return latest
