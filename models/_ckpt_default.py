"""Which checkpoint an architecture loads: the user's preferred one while it is valid, else the
shipped one (a broken preferred file named once in a warning); and every checkpoint of it."""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Iterable, List, Optional

from . import _ckpt_paths
from ._ckpt_format import CheckpointError, peek_header
from ._ckpt_large import large_checkpoint
from ._ckpt_paths import _preferred_file, preferred_checkpoint, user_checkpoint_dir


def shipped_checkpoint(architecture: str) -> Optional[Path]:
    path = _ckpt_paths.SHIPPED_DIR / f"{architecture}.pt"
    return path if path.is_file() else large_checkpoint(architecture)


def default_checkpoint(architecture: str) -> Optional[Path]:
    """The user's preferred checkpoint if it still exists and is a valid checkpoint of
    ``architecture``, else the shipped one (a broken preferred file is named in a warning)."""
    preferred = preferred_checkpoint(architecture)
    if preferred is None:
        return shipped_checkpoint(architecture)
    problem = _problem_with(preferred, architecture)
    if problem is None:
        return preferred
    fall_back_from(preferred, problem, architecture)
    return shipped_checkpoint(architecture)


def _problem_with(path: Path, architecture: str) -> Optional[str]:
    try:
        header = peek_header(path)
    except CheckpointError as err:
        return str(err)
    if header.get("architecture") != architecture:
        return f"{path} holds a '{header.get('architecture')}' checkpoint, not '{architecture}'"
    return None


_fallbacks_reported: set = set()


def fall_back_from(path: Path, problem: str, architecture: str) -> None:
    """Warn (once per file version) that the preferred checkpoint is broken and the shipped one is used."""
    key = (str(path), _mtime(path))
    if key in _fallbacks_reported:
        return
    _fallbacks_reported.add(key)
    shipped = shipped_checkpoint(architecture)
    instead = f"using the shipped checkpoint {shipped} instead" if shipped else "using untrained weights instead"
    warnings.warn(f"the preferred {architecture} checkpoint {path} cannot be used: {problem}; {instead}. "
                  f"Fine-tune again or delete {_preferred_file()} to stop this warning.", UserWarning, stacklevel=3)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def list_checkpoints(architecture: str) -> List[Path]:
    """Shipped and user checkpoints of one architecture, default first."""
    found: List[Path] = []
    default = default_checkpoint(architecture)
    if default:
        found.append(default)
    shipped = shipped_checkpoint(architecture)
    candidates: Iterable[Path] = ([shipped] if shipped else []) + sorted(user_checkpoint_dir().glob("*.pt"))
    for path in candidates:
        if path in found:
            continue
        try:
            header = peek_header(path)
        except CheckpointError:
            continue
        if header.get("architecture") == architecture:
            found.append(path)
    return found
