"""Where checkpoints live: shipped with the package (``SHIPPED_DIR``), the user's folder under
``$NAPARI_POLYP_HOME``, and the user's preferred checkpoint per architecture (preferred.json,
written through the locked JSON update that the ONNX cache's notes use too)."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

SHIPPED_DIR = Path(__file__).parent / "checkpoints"  # the others read it at call time: tests move it


def home_dir() -> Path:
    return Path(os.environ.get("NAPARI_POLYP_HOME", Path.home() / ".cache" / "napari-polyp"))


def user_checkpoint_dir() -> Path:
    return home_dir() / "checkpoints"


def _preferred_file() -> Path:
    return user_checkpoint_dir() / "preferred.json"


def _read_preferred() -> dict:
    """architecture -> preferred checkpoint path; an unreadable or malformed file counts as empty."""
    return {k: v for k, v in read_json_object(_preferred_file()).items() if isinstance(v, str)}


def set_preferred(architecture: str, path) -> None:
    """Make ``path`` what ``create_model(architecture)`` loads by default."""
    chosen = str(Path(path).resolve())
    update_json_file(_preferred_file(), lambda prefs: {**prefs, architecture: chosen})


def read_json_object(path) -> dict:
    """The JSON object in ``path``; {} when it is missing, unreadable or not an object."""
    try:
        value = json.loads(Path(path).read_bytes())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def update_json_file(path, change) -> None:
    """Replace the JSON object in ``path`` (preferred.json, the ONNX cache's notes) by
    ``change(object)``, safe when several processes write at once: read and written under a lock
    beside it, through a temporary file of a unique name, fsynced and renamed over the file, so a
    reader sees the old object or the new one (never an empty file) and no update is lost."""
    import tempfile

    from filelock import FileLock

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path.with_name(f".{path.name}.lock")), timeout=60):
        data = json.dumps(change(read_json_object(path)), indent=1, sort_keys=True).encode()
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                if hasattr(os, "fchmod"):  # mkstemp's 0600 would hide the file from a shared cache's users
                    umask = os.umask(0)
                    os.umask(umask)
                    os.fchmod(fh.fileno(), 0o666 & ~umask)
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)


def preferred_checkpoint(architecture: str) -> Optional[Path]:
    """The file ``set_preferred`` named for ``architecture``, if it still exists (unverified)."""
    preferred = _read_preferred().get(architecture)
    return Path(preferred) if preferred and Path(preferred).is_file() else None
