"""The header cache: headers of checkpoints already verified, per file version, in memory and
in ``$NAPARI_POLYP_HOME/checkpoint-headers.json`` for the next process (see ``peek_header``)."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Dict, Optional, Tuple

from ._ckpt_paths import home_dir

_header_cache: Dict[Tuple[str, int, int], dict] = {}
HEADER_CACHE_FILE = "checkpoint-headers.json"  # in home_dir(): verified headers, see peek_header


def file_version(path: Path) -> Tuple[str, int, int]:
    """(resolved path, size, modification time in ns): what says a file is still the one seen."""
    stat = path.stat()
    return str(path.resolve()), stat.st_size, stat.st_mtime_ns


def remembered_header(path: Path) -> Optional[dict]:
    """The verified header of this version of ``path``, from memory or from the file a process
    before wrote; None when no one verified this version yet."""
    version = file_version(path)
    if version not in _header_cache:
        header = _header_on_disk(version)
        if header is None:
            return None
        _header_cache[version] = header
    return _header_cache[version]


def remember_verified(path: Path, header: dict) -> dict:
    """A header whose file was just verified, for peek_header: in memory, and on disk for the
    next process (as plain JSON values, the same whether verified now or remembered)."""
    version = file_version(path)
    if version not in _header_cache:
        _header_cache[version] = json.loads(json.dumps(header, default=str))
        _remember_header(version, _header_cache[version])
    return _header_cache[version]


def _read_header_file() -> dict:
    try:
        data = json.loads((home_dir() / HEADER_CACHE_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _header_on_disk(version: Tuple[str, int, int]) -> Optional[dict]:
    entry = _read_header_file().get(version[0])
    if isinstance(entry, dict) and [entry.get("size"), entry.get("mtime_ns")] == list(version[1:]) \
            and isinstance(entry.get("header"), dict):
        return entry["header"]
    return None


def _remember_header(version: Tuple[str, int, int], header: dict) -> None:
    """Best effort (a read-only home just means verifying again next time); atomic, so a
    concurrent writer loses at most its own entry."""
    entries = {k: v for k, v in _read_header_file().items() if Path(k).is_file()}
    entries[version[0]] = {"size": version[1], "mtime_ns": version[2], "header": header}
    target = home_dir() / HEADER_CACHE_FILE
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(entries, default=str))
        os.replace(tmp, target)
    except OSError:
        tmp.unlink(missing_ok=True)
