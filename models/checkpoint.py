"""The project's checkpoint format: a small checked header plus the weights.

A checkpoint is a ``torch.save`` of a plain dict, so ``torch.load(...,
weights_only=True)`` reads it without running any pickled code::

    {"format": "napari-polyp-checkpoint", "format_version": 1,
     "header": {"architecture": "microaunet", "variant": {...},
                "training": {...}, "metrics": {...}, "sha256": "<weights>", ...},
     "state_dict": {name: tensor}}

``sha256`` is taken over the weights themselves (names, dtypes, shapes and
bytes in sorted order), so a file whose tensors were edited after saving is
refused, and layers can cite the hash of the weights that produced them.

Where checkpoints live:
- shipped with the package: ``models/checkpoints/<name>.pt``;
- over ``LARGE_CHECKPOINT_BYTES`` (too large for the wheel): in the repository only, at
  ``models/checkpoints/large/<name>.pt``, listed with their sha256 in
  ``models/checkpoints/large.json`` (which the wheel carries, so a missing one is named);
- trained or fine-tuned by the user: ``$NAPARI_POLYP_HOME/checkpoints``
  (default ``~/.cache/napari-polyp/checkpoints``); ``set_preferred`` makes one
  of those the default for its architecture.

This module is the public face; each concern lives in a private module (as timm's
``_builder``, ``_hub``, ``_registry``), lowest first:

- ``_ckpt_paths``: where checkpoints live (``SHIPPED_DIR``, the user's folder, preferred.json);
- ``_ckpt_cache``: the header cache (verified headers per file version, in memory and on disk);
- ``_ckpt_format``: the file format, its sha256, reading, writing, ``peek_header``, ``load_into``;
- ``_ckpt_large``: checkpoints too large for the wheel, and parts of a checkpoint;
- ``_ckpt_default``: which checkpoint an architecture loads, and all of its checkpoints.
"""
import sys
import types

from . import _ckpt_cache, _ckpt_default, _ckpt_format, _ckpt_large, _ckpt_paths
from ._ckpt_cache import HEADER_CACHE_FILE, file_version
from ._ckpt_default import default_checkpoint, fall_back_from, list_checkpoints, shipped_checkpoint
from ._ckpt_format import (
    FORMAT,
    FORMAT_VERSION,
    CheckpointError,
    file_sha256,
    load_into,
    load_problem,
    peek_header,
    read_checkpoint,
    save_checkpoint,
    trainable_state_dict,
    weights_sha256,
)
from ._ckpt_large import (
    LARGE_CHECKPOINT_BYTES,
    LARGE_INDEX,
    PART_MAX_BYTES,
    PARTS_SUFFIX,
    join_parts,
    large_checkpoint,
    large_index,
    record_large_checkpoint,
    split_parts,
)
from ._ckpt_paths import (
    SHIPPED_DIR,
    home_dir,
    preferred_checkpoint,
    read_json_object,
    set_preferred,
    update_json_file,
    user_checkpoint_dir,
)

# private, but the tests reach them here: forget the headers in memory, read preferred.json,
# report a missing large checkpoint again
from ._ckpt_cache import _header_cache  # noqa: F401
from ._ckpt_large import _large_missing_reported  # noqa: F401
from ._ckpt_paths import _preferred_file, _read_preferred  # noqa: F401

__all__ = [
    "CheckpointError",
    "FORMAT",
    "FORMAT_VERSION",
    "HEADER_CACHE_FILE",
    "LARGE_CHECKPOINT_BYTES",
    "LARGE_INDEX",
    "PARTS_SUFFIX",
    "PART_MAX_BYTES",
    "SHIPPED_DIR",
    "default_checkpoint",
    "fall_back_from",
    "file_sha256",
    "file_version",
    "home_dir",
    "join_parts",
    "large_checkpoint",
    "large_index",
    "list_checkpoints",
    "load_into",
    "load_problem",
    "peek_header",
    "preferred_checkpoint",
    "read_checkpoint",
    "read_json_object",
    "record_large_checkpoint",
    "save_checkpoint",
    "set_preferred",
    "shipped_checkpoint",
    "split_parts",
    "trainable_state_dict",
    "update_json_file",
    "user_checkpoint_dir",
    "weights_sha256",
]

_CONCERNS = (_ckpt_paths, _ckpt_cache, _ckpt_format, _ckpt_large, _ckpt_default)


class _PublicFace(types.ModuleType):
    """Setting a name here sets it where the functions read it too: in every private module that
    holds it. Tests and tools move ``SHIPPED_DIR`` or stand in for ``read_checkpoint`` through
    ``models.checkpoint``; without this the private modules would go on using the old value."""

    def __setattr__(self, name, value):
        for concern in _CONCERNS:
            if name in vars(concern):
                setattr(concern, name, value)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _PublicFace
