"""Manifest records of a corrections dataset: reading, checking and migrating them.

The format, what a manifest path may point to and how stems are cleaned are
described once, in docs/corrections-format.md. This module turns
manifest lines into :class:`Record` objects, skips the records that document says
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
from pathlib import Path, PurePosixPath
from typing import Dict, List, Optional, Set, Tuple, Union

import numpy as np

FORMAT_VERSION = 1
MANIFEST = "manifest.jsonl"
LOCK = ".manifest.lock"
STATUSES = ("unreviewed", "accepted", "corrected", "rejected")
TRAINING_STATUSES = ("accepted", "corrected")
PATH_FIELDS = ("image", "mask", "prediction", "strokes")
OPTIONAL_FIELDS = ("strokes", "clicks")  # written only when set, so most manifest lines stay as they were
MAX_CLICKS = 5000  # a click log longer than this is not a person's (a record line stays far under MAX_LINE_BYTES)
MAX_CLICK_COORDINATE = 2**31 - 1
CLICK_KEYS = ("row", "col", "positive")

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
    # the clicks of Click mode this mask was made with, in order: {"row", "col", "positive"} (see clicks_problem)
    clicks: List[Dict[str, object]] = field(default_factory=list)
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
# File systems limit a name to 255 *bytes*; the longest name made from a stem is a temporary
# of an nnU-Net image (".tmp-" + stem + "-<sha8>_0000.png" + ".<8 random>", 41 bytes more).
MAX_NAME_BYTES = 255
MAX_STEM_BYTES = 200
STEM_SUFFIX_BYTES = 9  # "-<first 8 hex digits of the image's sha256>", see unique_stem


def cut_to_bytes(text: str, limit: int) -> str:
    """The longest start of ``text`` whose UTF-8 form fits in ``limit`` bytes (whole characters)."""
    return text.encode("utf-8")[:limit].decode("utf-8", "ignore")


def safe_stem(name: str) -> str:
    """A file-system-safe stem: letters (any script), digits, ``_``, ``.`` and ``-`` only,
    no leading or trailing dot (so never ``.`` or ``..``), at most :data:`MAX_STEM_BYTES`
    bytes in UTF-8; ``item`` when nothing is left. Cleaning twice changes nothing."""
    stem = _UNSAFE_STEM_CHARACTERS.sub("_", str(name)).strip("._") or "item"
    return cut_to_bytes(stem, MAX_STEM_BYTES).rstrip("._") or "item"


def unique_stem(stem: str, image_sha256: str, holder_sha256: Optional[str]) -> str:
    """``stem``, or ``<stem>-<sha[:8]>`` when another image (``holder_sha256``) already holds it;
    the result is still a :func:`safe_stem` (shortened first when needed)."""
    if holder_sha256 is None or not image_sha256 or not holder_sha256 or holder_sha256 == image_sha256:
        return stem
    base = cut_to_bytes(stem, MAX_STEM_BYTES - STEM_SUFFIX_BYTES).rstrip("._") or "item"
    return f"{base}-{image_sha256[:8]}"


# --------------------------------------------------------------------------- paths


_ABSOLUTE = re.compile(r"[/\\]|[A-Za-z]:")  # POSIX root, Windows root or UNC share, drive letter
_SEPARATORS = re.compile(r"[/\\]")


def relative_path_problem(value: object) -> Optional[str]:
    """Why ``value`` is not a usable path inside a dataset, judged on the text alone; None if it is.
    (Plain string tests: a 100,000-line manifest has 400,000 paths to judge.)"""
    if not isinstance(value, str):
        return f"is a {type(value).__name__}, not a text path"
    if "\x00" in value:
        return "contains a NUL character"
    if _ABSOLUTE.match(value):
        return "is an absolute path"
    parts = _SEPARATORS.split(value)
    if ".." in parts:
        return "climbs out of the dataset with '..'"
    # a name of at most 63 characters is at most 252 bytes: only longer ones need encoding
    if any(len(part) > 63 and len(part.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES for part in parts):
        return f"has a name longer than {MAX_NAME_BYTES} bytes, which no file system stores"
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
    if problem is None and value:
        try:
            inside = resolves_inside(Path(root) / str(value), root)
        except (OSError, RuntimeError) as err:  # a link loop, a name the system refuses
            return f"cannot be followed ({type(err).__name__}: {err})"
        if not inside:
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
    _check_clicks(record)
    if not record.mask:
        record.mask = f"masks/{stem}.png"
    if not _is_version(known.get("version")):
        if "version" in known:
            record.extra.setdefault("original_version", known["version"])
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


MAX_VERSION = 2**53  # a version any JSON reader reads back exactly


def _is_version(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value < MAX_VERSION


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


def clicks_problem(clicks: object, shape: Optional[Tuple[int, int]] = None) -> Optional[str]:
    """Why ``clicks`` is not a click log; None when it is one: a list of at most
    :data:`MAX_CLICKS` objects with exactly the keys row, col (integers >= 0, inside ``shape``
    when given) and positive (true or false)."""
    if not isinstance(clicks, list):
        return f"is a {type(clicks).__name__}, not a list of clicks"
    if len(clicks) > MAX_CLICKS:
        return f"holds {len(clicks)} clicks (at most {MAX_CLICKS})"
    for number, click in enumerate(clicks, 1):
        if not isinstance(click, dict) or set(click) != set(CLICK_KEYS):
            return f"click {number} is not an object with exactly the keys row, col and positive"
        row, col, positive = (click[key] for key in CLICK_KEYS)
        if not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= MAX_CLICK_COORDINATE
                   for v in (row, col)):
            return f"click {number} has a row or column that is not a whole number >= 0"
        if not isinstance(positive, bool):
            return f"click {number} has a 'positive' that is not true or false"
        if shape is not None and not (row < shape[0] and col < shape[1]):
            return f"click {number} (row {row}, column {col}) is outside the {shape[0]}×{shape[1]} mask"
    return None


def clean_clicks(clicks, shape: Optional[Tuple[int, int]] = None) -> List[Dict[str, object]]:
    """A click log as plain values (numpy integers and booleans accepted), in the stored key
    order; ValueError naming the problem when it is not one (see :func:`clicks_problem`)."""
    if isinstance(clicks, (list, tuple)):
        clicks = [{key: _plain(value) for key, value in click.items()} if isinstance(click, dict) else click
                  for click in clicks]
    problem = clicks_problem(clicks, shape)
    if problem:
        raise ValueError(f"the click log {problem}")
    return [{key: click[key] for key in CLICK_KEYS} for click in clicks]


def _plain(value):
    return value.item() if isinstance(value, np.generic) else value


IGNORED_CLICKS = "ignored_clicks"  # extra key: why a record's clicks field was dropped when read


def _check_clicks(record: Record) -> None:
    """A bad clicks field is dropped (the record, its mask, stays usable); the reason is kept in
    ``extra`` and the reader warns once about the line."""
    record.extra.pop(IGNORED_CLICKS, None)  # only this check sets it
    problem = clicks_problem(record.clicks)
    if problem:
        record.clicks = []
        record.extra[IGNORED_CLICKS] = problem
    else:
        record.clicks = [{key: click[key] for key in CLICK_KEYS} for click in record.clicks]


# --------------------------------------------------------------------------- reading

# A record is about 700 bytes and two levels deep. A line far longer, or nested deeper, is skipped
# before it is parsed: json's recursion limit would otherwise fail every read of the dataset.
MAX_LINE_BYTES = 256 * 1024
MAX_NESTING = 16
_UNUSABLE = (ValueError, TypeError, OverflowError, RecursionError)  # what a hostile line can raise
FINGERPRINT_BYTES = 4096  # the first and last bytes read, compared to tell an append from an edit

_already_warned: Set[Tuple[str, int, str]] = set()


def _warn_once(manifest: Path, number: int, line_sha256: str, reason: str, what: str = "skipped") -> None:
    """One warning per manifest line and content, however often the manifest is read."""
    key = (str(Path(manifest).resolve()), number, line_sha256)
    if key in _already_warned:
        return
    _already_warned.add(key)
    warnings.warn(f"{manifest}: line {number} {what}, {reason}", UserWarning, stacklevel=4)


def line_problem(line: bytes) -> Optional[str]:
    """Why ``line`` is not even parsed (too long, nested too deep); None when it may be."""
    if len(line) > MAX_LINE_BYTES:
        return f"it is {len(line)} bytes long (a record has at most {MAX_LINE_BYTES})"
    if line.count(b"[") + line.count(b"{") > MAX_NESTING and _nesting_depth(line) > MAX_NESTING:
        return f"it is nested more than {MAX_NESTING} levels deep"
    return None


def _nesting_depth(line: bytes) -> int:
    """The deepest bracket nesting of a JSON line, brackets inside strings not counted."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in line:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # a backslash escapes the next byte
                escaped = True
            elif byte == 0x22:  # a quote not escaped ends the string
                in_string = False
            continue
        if byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return deepest


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def parse_json_line(line: bytes) -> object:
    """A manifest line's JSON (ValueError for a line too long or too deep, NaN or Infinity)."""
    problem = line_problem(line)
    if problem:
        raise ValueError(problem)
    return json.loads(line, parse_constant=_no_constant)


class _Resolver:
    """The symbolic-link half of :func:`path_problem` for many paths of one dataset whose text was
    already judged, each folder resolved once (a 100,000-line manifest names a few folders
    400,000 times); the file itself is followed when it is a link."""

    def __init__(self, root: Path):
        self.root = os.fspath(root)
        self._resolved_root = os.path.realpath(self.root)
        self._folders: Dict[str, str] = {}

    def link_problem(self, value: str) -> Optional[str]:
        try:
            resolved = self._resolve(value)
        except (OSError, RuntimeError) as err:  # a link loop, a name the system refuses
            return f"cannot be followed ({type(err).__name__}: {err})"
        if resolved == self._resolved_root or resolved.startswith(self._resolved_root.rstrip(os.sep) + os.sep):
            return None
        return "leads outside the dataset folder (through a symbolic link)"

    def _resolve(self, value: str) -> str:
        path = os.path.join(self.root, value)
        if os.path.islink(path):
            return os.path.realpath(path)
        folder, name = os.path.split(value)
        if folder not in self._folders:
            self._folders[folder] = os.path.realpath(os.path.join(self.root, folder))
        return os.path.join(self._folders[folder], name)


def record_from_json(raw: object, resolver: _Resolver, order: int) -> Record:
    """The record of one parsed manifest line; ValueError (or another of ``_UNUSABLE``) when it is
    not usable. ``order``: the version a record without one gets (its place among its stem's records)."""
    if not isinstance(raw, dict):
        raise ValueError("not an object")
    record = migrate_record(raw, order)  # judges the path fields' text
    for key in PATH_FIELDS:
        value = getattr(record, key)
        problem = resolver.link_problem(value) if value else None
        if problem:
            raise ValueError(f"its {key!r} {value!r} {problem}")
    return record


@dataclass
class SkippedLine:
    number: int
    sha256: str
    reason: str


class ManifestIndex:
    """The records of one manifest, kept in memory and brought up to date by reading only the
    lines appended since the last look, so that a save or a read costs the same at 10 lines as at
    100,000. The manifest stays the one truth: the index is rebuilt from the whole file whenever
    the file was replaced, shortened or rewritten (same size, newer time) instead of appended to,
    or when its first or last bytes read no longer match."""

    def __init__(self, path: PathLike):
        self.path = Path(path)
        self._clear(None)

    def _clear(self, identity) -> None:
        self._identity = identity  # (device, inode) of the file read
        self._seen: Optional[Tuple[int, int]] = None  # (size, mtime) when last read
        self._offset = 0  # the end of the last whole line read
        self._head = self._end = b""  # the first and last bytes read (FINGERPRINT_BYTES each)
        self._resolver = _Resolver(self.path.parent)
        self._order: Counter = Counter()
        self._warned = 0
        self.line_count = 0
        self.records: List[Record] = []
        self.latest: Dict[str, Record] = {}
        self.highest: Dict[str, int] = {}  # the highest version any record of a stem ever had
        self.by_stem: Dict[str, List[Record]] = {}  # every record of each stem, in file order
        self.skipped: List[SkippedLine] = []
        self.ignored: List[SkippedLine] = []  # lines read with a field dropped (a bad clicks log)
        self._warned_ignored = 0
        self.tail: Optional[Record] = None  # a complete last record whose newline is missing
        self.torn = False  # the last line is a write cut short

    # -- reading
    def refresh(self, warn: bool = True) -> "ManifestIndex":
        """Read what changed since the last call; with ``warn``, one warning per skipped line."""
        try:
            fh = open(self.path, "rb")
        except FileNotFoundError:
            self._clear(None)
            return self
        with fh:
            stat = os.fstat(fh.fileno())
            if (stat.st_dev, stat.st_ino) == self._identity and (stat.st_size, stat.st_mtime_ns) == self._seen:
                return self._warn() if warn else self
            if not self._only_appended_to(fh, stat):
                self._clear((stat.st_dev, stat.st_ino))
            fh.seek(self._offset)
            self._consume(fh.read())
            self._seen = (stat.st_size, stat.st_mtime_ns)
            self._remember_fingerprints(fh)
        return self._warn() if warn else self

    def _only_appended_to(self, fh, stat) -> bool:
        if (stat.st_dev, stat.st_ino) != self._identity or stat.st_size < self._offset:
            return False
        if self._seen is not None and stat.st_size == self._seen[0]:
            return False  # same size but written to: an edit, not an append
        fh.seek(0)
        if fh.read(len(self._head)) != self._head:
            return False
        fh.seek(self._offset - len(self._end))
        return fh.read(len(self._end)) == self._end

    def _remember_fingerprints(self, fh) -> None:
        fh.seek(0)
        self._head = fh.read(min(self._offset, FINGERPRINT_BYTES))
        fh.seek(self._offset - min(self._offset, FINGERPRINT_BYTES))
        self._end = fh.read(min(self._offset, FINGERPRINT_BYTES))

    def _consume(self, data: bytes) -> None:
        cut = data.rfind(b"\n") + 1
        for line in data[:cut].split(b"\n")[:-1]:
            self.line_count += 1
            record = self._parse(line, self.line_count)
            if record is not None:
                self._add(record)
        self._offset += cut
        self.tail, self.torn = self._parse_tail(data[cut:])

    def _parse(self, line: bytes, number: int) -> Optional[Record]:
        if not line.strip():
            return None
        try:
            raw = parse_json_line(line)
            order = self._order[_stem_of(raw)] + 1 if isinstance(raw, dict) else 1
            record = record_from_json(raw, self._resolver, order)
        except _UNUSABLE as err:
            if not any(s.number == number for s in self.skipped[-1:]):
                reason = f"it is not a usable record ({_first_line(err)})"
                self.skipped.append(SkippedLine(number, hashlib.sha256(line).hexdigest(), reason))
            return None
        if IGNORED_CLICKS in record.extra and not any(s.number == number for s in self.ignored[-1:]):
            self.ignored.append(SkippedLine(number, hashlib.sha256(line).hexdigest(),
                                            f"its clicks field {record.extra[IGNORED_CLICKS]}"))
        return record

    def _parse_tail(self, tail: bytes) -> Tuple[Optional[Record], bool]:
        """A last line without its newline: a record when it is whole, else a torn write."""
        if not tail.strip():
            return None, False
        try:
            parse_json_line(tail)
        except _UNUSABLE:
            return None, True
        return self._parse(tail, self.line_count + 1), False

    def _add(self, record: Record) -> None:
        self._order[record.stem] += 1
        self.records.append(record)
        self.latest[record.stem] = record
        self.highest[record.stem] = max(self.highest.get(record.stem, 0), record.version)
        self.by_stem.setdefault(record.stem, []).append(record)

    def _warn(self) -> "ManifestIndex":
        for skipped in self.skipped[self._warned:]:
            _warn_once(self.path, skipped.number, skipped.sha256, skipped.reason)
        self._warned = len(self.skipped)
        for ignored in self.ignored[self._warned_ignored:]:
            _warn_once(self.path, ignored.number, ignored.sha256, ignored.reason, "read without its clicks")
        self._warned_ignored = len(self.ignored)
        return self

    # -- views (the tail record, if any, counts as the last line)
    def all_records(self) -> List[Record]:
        return self.records + ([self.tail] if self.tail else [])

    def current(self) -> Dict[str, Record]:
        latest = dict(self.latest)
        if self.tail is not None:
            latest[self.tail.stem] = self.tail
        return latest

    def version_with_mask(self, stem: str, mask_sha256: str) -> Optional[int]:
        """The highest version of ``stem`` whose record names a mask of this sha256, if any."""
        found = [r.version for r in self.by_stem.get(stem, []) + ([self.tail] if self.tail else [])
                 if r.stem == stem and r.mask_sha256 == mask_sha256]
        return max(found, default=None)

    def highest_version(self, stem: str) -> int:
        tail = self.tail.version if self.tail is not None and self.tail.stem == stem else 0
        return max(self.highest.get(stem, 0), tail)


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0][:300] if lines else type(err).__name__


def read_manifest(path: PathLike, warn: bool = True) -> Tuple[List[Record], bool]:
    """All usable records of a manifest, in file order, and whether its last line is torn.

    A torn last line (no newline and not valid JSON) is the trace of a write cut
    short: ignored. Any other unusable line (not JSON, too long or too deeply nested,
    or a record whose paths lead outside the dataset) is skipped, with one warning
    naming the line when ``warn``."""
    index = ManifestIndex(path).refresh(warn)
    return index.all_records(), index.torn


def latest_by_stem(records: List[Record]) -> Dict[str, Record]:
    latest: Dict[str, Record] = {}
    for record in records:
        latest[record.stem] = record
    return latest
