"""Crash-safe file writes: a reader sees the old file or the new one, never half of one.

The recipe (POSIX; Windows gets the same minus the directory fsync):
write a temporary file in the *same* directory, flush + fsync it, ``os.replace``
it over the target (atomic within one file system), then fsync the directory
so the rename itself survives a power cut.

Low and shared: the corrections store, the mask writers and the fine-tuning's checkpoint copy
all write through here (numpy and PIL only, no torch).
"""
from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path
from typing import Union

import numpy as np

PathLike = Union[str, os.PathLike]
TMP_PREFIX = ".tmp-"

# mkstemp creates files as 0600; give the final file the mode a plain open() would
# (a dataset shared by a team must stay readable by the others). Read once at import.
_UMASK = os.umask(0o022)
os.umask(_UMASK)
FILE_MODE = 0o666 & ~_UMASK


def fsync_dir(folder: PathLike) -> None:
    """Make a rename/creation inside ``folder`` durable (no-op where unsupported)."""
    if os.name == "nt":  # Windows cannot open a directory for fsync
        return
    fd = os.open(os.fspath(folder), os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:  # some file systems (e.g. certain network mounts) refuse; the rename still happened
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically and durably; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX + path.name + ".", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            if hasattr(os, "fchmod"):
                os.fchmod(fh.fileno(), FILE_MODE)
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    fsync_dir(path.parent)
    return path


def atomic_copy(src: PathLike, dst: PathLike) -> Path:
    """Copy ``src`` to ``dst`` atomically (masks, images, checkpoints of a few MB)."""
    return atomic_write_bytes(dst, Path(src).read_bytes())


def encode_image_png(image: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buffer, format="PNG")
    return buffer.getvalue()


def remove_stale_temporaries(folder: PathLike) -> int:
    """Delete temporaries a killed writer left behind in ``folder``; returns how many."""
    removed = 0
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    for leftover in folder.glob(TMP_PREFIX + "*"):
        try:
            leftover.unlink()
            removed += 1
        except OSError:
            pass
    return removed
