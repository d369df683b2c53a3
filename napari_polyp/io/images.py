"""Still images: PNG, JPEG, BMP, TIFF in, HxWx3 uint8 RGB out.

Every reader path in napari-polyp (the napari reader, the CLI, training data)
goes through :func:`read_image`, so an image looks the same to the network
wherever it was opened. Files that are not what their name says raise
:class:`~napari_polyp.errors.InputFileError` with the file and the problem.
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Tuple

import numpy as np

from ..errors import InputFileError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")

# First bytes of each format we read: a wrong name (text saved as .png) or a
# file of another type gets a message that says what the file really is.
_SIGNATURES = {
    "PNG": (b"\x89PNG\r\n\x1a\n",),
    "JPEG": (b"\xff\xd8\xff",),
    "BMP": (b"BM",),
    "TIFF": (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"),
}
_EXPECTED = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF"}


def is_image_path(path) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def list_images(folder) -> List[Path]:
    """Image files directly inside ``folder`` (no recursion, no hidden files), sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputFileError(folder, "is not a folder")
    return sorted(
        p for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and is_image_path(p)
    )


def read_image(path) -> np.ndarray:
    """Read one image file as HxWx3 uint8 RGB (grayscale, RGBA and 16-bit converted)."""
    return read_image_with_notes(path)[0]


def read_image_with_notes(path) -> Tuple[np.ndarray, List[str]]:
    """Like :func:`read_image`, plus the conversions made, as short sentences for a notice."""
    path = Path(path)
    kind = _sniff(path)
    try:
        raw, notes = (_read_tiff(path) if kind == "TIFF" else _read_with_pillow(path))
    except InputFileError:
        raise
    except Exception as err:  # decoder errors differ per format and library version
        raise InputFileError(path, f"cannot be decoded as {kind} ({_first_line(err)})") from None
    return _to_rgb_uint8(path, raw, notes)


def _first_line(err: Exception) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__


def _sniff(path: Path) -> str:
    """The format the file's first bytes announce; refuses empty, missing and foreign files."""
    if not path.exists():
        raise InputFileError(path, "does not exist")
    if path.is_dir():
        raise InputFileError(path, "is a folder, not an image file")
    with open(path, "rb") as fh:
        head = fh.read(16)
    if not head:
        raise InputFileError(path, "is empty (0 bytes)")
    for kind, signatures in _SIGNATURES.items():
        if head.startswith(signatures):
            return kind
    expected = _EXPECTED.get(path.suffix.lower(), "an image")
    looks = "text" if _looks_like_text(head) else "data of another kind"
    raise InputFileError(path, f"is not a {expected} image: its content is {looks}")


def _looks_like_text(head: bytes) -> bool:
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(32 <= b < 127 or b in (9, 10, 13) for b in head)


def _read_with_pillow(path: Path) -> Tuple[np.ndarray, List[str]]:
    from PIL import Image, ImageFile

    # A truncated JPEG must be an error, not a silently grey lower half; another
    # library may have switched Pillow to lenient loading, so insist here.
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    notes: List[str] = []
    with Image.open(path) as im:
        if getattr(im, "n_frames", 1) > 1:
            notes.append(f"it has {im.n_frames} frames; only the first was read")
        im.load()
        mode = im.mode
        if mode in ("P", "PA"):
            im = im.convert("RGBA" if "transparency" in im.info or mode == "PA" else "RGB")
            mode = im.mode
        elif mode in ("1", "CMYK", "YCbCr", "LAB", "HSV"):
            im = im.convert("L" if mode == "1" else "RGB")
            notes.append(f"{mode} converted to {im.mode}")
            mode = im.mode
        array = np.asarray(im)
        if mode.startswith("I;16"):
            array = array.astype(np.uint16)
        elif mode == "I":  # Pillow opens 16-bit grayscale PNGs as 32-bit ints
            array = array.astype(np.uint16) if array.min() >= 0 and array.max() <= 65535 else array
    _check_truncated_jpeg(path)
    return array, notes


def _check_truncated_jpeg(path: Path) -> None:
    """Pillow can decode a JPEG cut short without complaint; the end-of-image marker tells."""
    if path.suffix.lower() not in (".jpg", ".jpeg"):
        return
    with open(path, "rb") as fh:
        fh.seek(max(0, path.stat().st_size - 4096))
        tail = fh.read()
    if b"\xff\xd9" not in tail:
        raise InputFileError(path, "is a truncated JPEG (no end-of-image marker): the file was cut short")


def _read_tiff(path: Path) -> Tuple[np.ndarray, List[str]]:
    import tifffile

    notes: List[str] = []
    with tifffile.TiffFile(path) as tif:
        if len(tif.pages) > 1:
            notes.append(f"it has {len(tif.pages)} pages; only the first was read")
        array = tif.pages[0].asarray()
    if array.ndim == 3 and array.shape[0] in (1, 3, 4) and array.shape[-1] not in (1, 3, 4):
        array = np.moveaxis(array, 0, -1)  # planar (C, H, W) storage
    return array, notes


def _to_rgb_uint8(path: Path, array: np.ndarray, notes: List[str]) -> Tuple[np.ndarray, List[str]]:
    from ..inference import as_rgb_uint8

    if array.ndim == 3 and array.shape[-1] == 2:  # gray + alpha
        array = array[..., :1]
        notes.append("grayscale+alpha converted to RGB (alpha dropped)")
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (1, 3, 4)):
        raise InputFileError(path, f"has an unsupported layout {array.shape} (expected HxW or HxWx1/3/4)")
    if array.shape[0] < 2 or array.shape[1] < 2:
        raise InputFileError(path, f"is too small to segment ({array.shape[1]}x{array.shape[0]} pixels)")
    if array.ndim == 2 or array.shape[-1] == 1:
        notes.append("grayscale converted to RGB")
    elif array.shape[-1] == 4:
        notes.append("RGBA converted to RGB (alpha dropped)")
    if array.dtype != np.uint8:
        if np.issubdtype(array.dtype, np.integer):
            bits = np.iinfo(array.dtype).bits
            notes.append(f"{bits}-bit values scaled to 8-bit (full {bits}-bit range)")
        elif array.dtype == bool:
            notes.append("1-bit values scaled to 8-bit")
        else:
            notes.append(f"{array.dtype} values stretched to 8-bit (min-max)")
    return as_rgb_uint8(array), notes
