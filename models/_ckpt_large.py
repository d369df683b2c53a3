"""Checkpoints too large for the wheel (kept in the repository, listed in large.json with their
sha256), and cutting a checkpoint into parts of a bounded size and joining them back."""
from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from . import _ckpt_paths
from ._ckpt_format import CheckpointError, file_sha256

LARGE_CHECKPOINT_BYTES = 20 * 1000 * 1000  # above this a checkpoint stays out of the wheel (setup.cfg)
LARGE_INDEX = "large.json"  # {architecture: {"file": "large/<name>.pt", "bytes": n, "sha256": file hash}}
_large_missing_reported: set = set()
_large_verified: Dict[Tuple[str, float, int], str] = {}


def large_index() -> dict:
    """The large checkpoints the repository holds (an unreadable index counts as empty)."""
    try:
        index = json.loads((_ckpt_paths.SHIPPED_DIR / LARGE_INDEX).read_text())
    except (OSError, ValueError):
        return {}
    return index if isinstance(index, dict) else {}


def large_checkpoint(architecture: str) -> Optional[Path]:
    """The repository's large checkpoint of ``architecture`` when it is present and its sha256
    is the recorded one; a missing or different file is named once in a warning that says
    where to get it."""
    entry = large_index().get(architecture)
    if not isinstance(entry, dict) or "file" not in entry:
        return None
    path = _ckpt_paths.SHIPPED_DIR / entry["file"]
    problem = _large_problem(path, entry)
    if problem is None:
        return path
    if (architecture, problem) not in _large_missing_reported:
        _large_missing_reported.add((architecture, problem))
        warnings.warn(f"the {architecture} checkpoint {path} {problem}. It is too large for the wheel "
                      f"({entry.get('bytes', 0) / 1e6:.0f} MB): get models/checkpoints/{entry['file']} from the "
                      f"napari-polyp repository (git clone, or the file alone; sha256 {entry.get('sha256', '?')}) "
                      f"and put it there, or pass a checkpoint path; using untrained weights meanwhile.",
                      UserWarning, stacklevel=3)
    return None


def _large_problem(path: Path, entry: dict) -> Optional[str]:
    if not path.is_file():
        return "is missing"
    stat = path.stat()
    key = (str(path), stat.st_mtime, stat.st_size)
    if key not in _large_verified:  # hashing 100 MB takes a while: once per file version
        _large_verified[key] = file_sha256(path)
    if _large_verified[key] != entry.get("sha256"):
        return "is not the recorded file (its sha256 differs)"
    return None


def record_large_checkpoint(architecture: str, path) -> dict:
    """List ``path`` (a file under ``_ckpt_paths.SHIPPED_DIR/large``) in the index with its size and sha256."""
    path = Path(path).resolve()
    entry = {"file": path.relative_to(_ckpt_paths.SHIPPED_DIR.resolve()).as_posix(), "bytes": path.stat().st_size,
             "sha256": file_sha256(path)}
    index = large_index()
    index[architecture] = entry
    target = _ckpt_paths.SHIPPED_DIR / LARGE_INDEX
    tmp = target.with_suffix(".tmp")
    tmp.write_text(json.dumps(index, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, target)
    return entry


# -- parts: a checkpoint cut into pieces of a bounded size, and joined back ---------------

PART_MAX_BYTES = 16 * 2 ** 20  # what one file back from a lent GPU machine may weigh
PARTS_SUFFIX = ".parts.json"


def split_parts(path, max_bytes: int = PART_MAX_BYTES, out_dir=None, extra: Optional[dict] = None) -> Path:
    """Cut ``path`` into ``<name>.part01``, ``.part02``, ... of at most ``max_bytes`` each (in
    ``out_dir``, default beside it) and write ``<name>.parts.json``: the whole file's size and
    sha256, each part's name, size and sha256 in order, and ``extra``. Returns that manifest's path."""
    path = Path(path)
    out_dir = Path(out_dir) if out_dir is not None else path.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    parts = []
    with open(path, "rb") as fh:
        for number, block in enumerate(iter(lambda: fh.read(max_bytes), b""), start=1):
            name = f"{path.name}.part{number:02d}"
            (out_dir / name).write_bytes(block)
            parts.append({"name": name, "bytes": len(block), "sha256": hashlib.sha256(block).hexdigest()})
    manifest = {"file": path.name, "bytes": path.stat().st_size, "sha256": file_sha256(path), "parts": parts,
                **(extra or {})}
    target = out_dir / f"{path.name}{PARTS_SUFFIX}"
    target.write_text(json.dumps(manifest, indent=1))
    return target


def join_parts(manifest, dest=None, parts: Optional[List] = None) -> Path:
    """Join the parts a ``split_parts`` manifest lists into ``dest`` (default: the whole
    file's name beside the manifest), checking each part's sha256 against its place in the
    manifest and then the whole's; ``parts``: the part files in order (default: found by
    name beside the manifest). A missing, damaged or misplaced part raises a CheckpointError
    naming it, and nothing is written."""
    manifest_path = Path(manifest)
    try:
        recorded = json.loads(manifest_path.read_text())
        expected = recorded["parts"]
    except (OSError, ValueError, KeyError) as err:
        raise CheckpointError(f"{manifest_path} is not a parts manifest ({type(err).__name__}: {err})") from None
    folder = manifest_path.parent
    files = [Path(p) for p in parts] if parts is not None else [folder / e["name"] for e in expected]
    if len(files) != len(expected):
        raise CheckpointError(f"{recorded['file']} has {len(expected)} parts, {len(files)} given")
    blocks = [_checked_part(f, number, expected) for number, f in enumerate(files, start=1)]
    whole = b"".join(blocks)
    if hashlib.sha256(whole).hexdigest() != recorded["sha256"]:
        raise CheckpointError(f"the joined {recorded['file']} does not have the recorded sha256 {recorded['sha256']}")
    dest = Path(dest) if dest is not None else folder / recorded["file"]
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
    try:
        tmp.write_bytes(whole)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def _checked_part(path: Path, number: int, expected: List[dict]) -> bytes:
    """The bytes of ``path``, which must be part ``number`` of ``expected`` (1-based)."""
    want = expected[number - 1]
    if not path.is_file():
        raise CheckpointError(f"part {number} of {len(expected)} ({path}) is missing: fetch {want['name']} again")
    block = path.read_bytes()
    digest = hashlib.sha256(block).hexdigest()
    if digest == want["sha256"]:
        return block
    elsewhere = [i for i, e in enumerate(expected, start=1) if e["sha256"] == digest]
    if elsewhere:
        raise CheckpointError(f"parts out of order: {path} is part {elsewhere[0]}, not part {number} "
                              f"({want['name']})")
    raise CheckpointError(f"part {number} of {len(expected)} ({path}) is damaged: its sha256 {digest} is not "
                          f"the recorded {want['sha256']}; fetch {want['name']} again")
