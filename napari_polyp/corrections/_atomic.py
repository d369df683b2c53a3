"""Moved to :mod:`napari_polyp.io.atomic` (a low module that io and training use too).

Kept only while ``corrections/review.py`` (``ReviewSession.write_table_csv``) imports it from
here; delete this file with that import.
"""
from ..io.atomic import atomic_write_bytes  # noqa: F401
