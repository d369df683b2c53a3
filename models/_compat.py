"""Make ``import torchvision`` work on a CPU-only torch.

The torchvision wheel that matches torch 2.13.0 on PyPI is a CUDA build. On a
CPU torch its ``_meta_registrations`` module asks for the ``torchvision::nms``
operator schema, which only the compiled CUDA extension would register, and the
import dies with ``RuntimeError: operator torchvision::nms does not exist``
(pytorch/vision#9085). timm imports torchvision, so timm dies with it.

``ensure_torchvision()`` is called before every timm import in this project.
It does nothing where torchvision imports cleanly (or is not installed). Only
when that exact failure happens does it drop the half-imported modules,
declare the missing operator schemas, and import again.
"""
from __future__ import annotations

import sys

_MISSING_OPS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}
_fragment = None  # keep the Library object alive: the schemas vanish with it
_checked = False


def _drop_torchvision_modules() -> None:
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]


def _declare_missing_ops() -> None:
    global _fragment
    import torch

    _fragment = torch.library.Library("torchvision", "FRAGMENT")
    for op, schema in _MISSING_OPS.items():
        try:
            torch._C._dispatch_find_schema_or_throw(f"torchvision::{op}", "")
        except RuntimeError:
            _fragment.define(schema)


def ensure_torchvision() -> bool:
    """Import torchvision, repairing the CPU-torch failure if it happens.

    Returns True when a repair was needed.
    """
    global _checked
    if _checked:
        return False
    _checked = True
    try:
        import torchvision  # noqa: F401
    except ImportError:
        return False  # not installed: timm works without it
    except RuntimeError as err:
        if "torchvision::" not in str(err) or "does not exist" not in str(err):
            raise
        _drop_torchvision_modules()
        _declare_missing_ops()
        import torchvision  # noqa: F401,F811

        return True
    return False


ensure_torchvision()
