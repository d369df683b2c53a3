"""What batch commands (``predict``, ``export``) share: how skipped files are reported
(defined in :mod:`napari_polyp.io.skipped`, where the training CLIs find it too)."""
from ..io.skipped import report_skipped

__all__ = ["report_skipped"]
