"""Pretrained backbones from timm: online download, or local weights offline.

``pretrained_backbone=True`` asks timm for its usual pretrained weights (a hub
download for users who are online). Users who are offline point
``backbone_weights`` (or the ``NAPARI_POLYP_WEIGHTS`` environment variable) at a
weights file, or a folder holding ``<timm name>*.safetensors|.pth|.bin``. The
file goes through timm's own loading path (``pretrained_cfg_overlay=file``),
so timm's key filters apply, e.g. resampling a ViT position embedding to a new
input size.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from . import _compat  # noqa: F401  (before timm: repairs torchvision on CPU torch)

import timm

WEIGHTS_ENV = "NAPARI_POLYP_WEIGHTS"
# The one ImageNet CNN with weights at hand offline (shared/weights): the CPU-trainable encoder of
# the MicroAUNet teacher and of PEFNet's and EA-DK's "efficientnet_lite0" variants [B].
EFFICIENTNET_LITE0 = "tf_efficientnet_lite0.in1k"
_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")


class BackboneWeightsError(RuntimeError):
    """Pretrained backbone weights could not be had; the message says how to get them."""


def find_local_weights(timm_name: str, location) -> Optional[Path]:
    """A file as given, or the best match for ``timm_name`` inside a folder."""
    if location is None:
        return None
    location = Path(location).expanduser()
    if location.is_file():
        return location
    if not location.is_dir():
        return None
    arch = timm_name.split(".")[0]
    files = [p for p in sorted(location.iterdir()) if p.suffix in _SUFFIXES]
    for prefix in (timm_name, arch):  # exact tag first, then any tag of the architecture
        for path in files:
            if path.name.startswith(prefix + ".") or path.stem == prefix:
                return path
    return None


def create_backbone(timm_name: str, pretrained: bool, weights=None, **timm_kwargs):
    """``timm.create_model`` with the offline fallback described above."""
    if not pretrained:
        return timm.create_model(timm_name, pretrained=False, **timm_kwargs)
    location = weights if weights is not None else os.environ.get(WEIGHTS_ENV)
    local = find_local_weights(timm_name, location)
    if location is not None and local is None:
        raise BackboneWeightsError(
            f"no weights for backbone '{timm_name}' at {location} (looked for a file, or "
            f"'{timm_name.split('.')[0]}*{{{','.join(_SUFFIXES)}}}' in that folder)"
        )
    try:
        if local is not None:
            return timm.create_model(
                timm_name, pretrained=True, pretrained_cfg_overlay={"file": str(local)}, **timm_kwargs
            )
        return timm.create_model(timm_name, pretrained=True, **timm_kwargs)
    except Exception as err:  # network errors, missing hub files, key mismatches
        from .checkpoint import load_problem  # torch's own text would advise loading the file unsafely

        where = f"local file {local}" if local else "timm's download (needs internet)"
        raise BackboneWeightsError(
            f"could not load pretrained weights for backbone '{timm_name}' from {where}: "
            f"{load_problem(err, local)}. Offline, set {WEIGHTS_ENV} (or pass "
            "backbone_weights=) to a weights file or folder, or use pretrained_backbone=False "
            "to train from scratch."
        ) from err
