"""The file types napari-polyp reads, defined once (no torch, no Qt).

``io/images.py`` and ``io/video.py`` decide by these; ``napari.yaml`` repeats them as the
reader's patterns (npe2 reads the manifest without importing the package;
``tests/io/test_extensions.py`` holds the two equal); file dialogs ask :func:`dialog_filter`.
"""
from __future__ import annotations

from typing import Dict, Iterable, Tuple

# extension -> the format its first bytes must announce (io/images.py checks the content)
IMAGE_FORMATS: Dict[str, str] = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP",
                                 ".tif": "TIFF", ".tiff": "TIFF"}
IMAGE_EXTENSIONS: Tuple[str, ...] = tuple(IMAGE_FORMATS)
VIDEO_EXTENSIONS: Tuple[str, ...] = (".mp4", ".avi", ".mov", ".mkv")
MASK_EXTENSION = ".png"  # what the writer saves a Labels layer as (0/255)


def filename_patterns(extensions: Iterable[str] = IMAGE_EXTENSIONS + VIDEO_EXTENSIONS) -> Tuple[str, ...]:
    """Glob patterns of ``extensions``: ``("*.png", ...)``, as napari.yaml's reader lists them."""
    return tuple(f"*{ext}" for ext in extensions)


def dialog_filter(description: str = "Videos", extensions: Iterable[str] = VIDEO_EXTENSIONS) -> str:
    """A Qt file-dialog filter, e.g. ``"Videos (*.mp4 *.avi *.mov *.mkv)"``."""
    return f"{description} ({' '.join(filename_patterns(extensions))})"
