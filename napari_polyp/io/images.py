"""Still images: PNG, JPEG, BMP, TIFF in, HxWx3 uint8 RGB out (numpy and Pillow, no torch).

Every reader path in napari-polyp (the napari reader, the CLI, training data,
the corrections dataset, Review) goes through :func:`read_image`, so an image
looks the same to the network wherever it was opened; masks are decoded from
the same raw pixels (:mod:`napari_polyp.io.masks`). Files that are not what their name says raise
:class:`~napari_polyp.errors.InputFileError` with the file and the problem.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np

from ..errors import InputFileError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
# A 16-bit file whose values all stay at or under this is low-bit-depth camera data
# (10- or 12-bit): scaled by its own range, or it would read as nearly black.
LOW_BIT_DEPTH_MAX = 4095

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


def find_image(folder, stem: str) -> Optional[Path]:
    """``folder/<stem>.<ext>`` for the first image extension that exists (any letter case), else None."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    for ext in IMAGE_EXTENSIONS + tuple(e.upper() for e in IMAGE_EXTENSIONS):
        candidate = folder / f"{stem}{ext}"
        if candidate.is_file():
            return candidate
    return None


def read_image(path) -> np.ndarray:
    """Read one image file as HxWx3 uint8 RGB (grayscale, RGBA and 16-bit converted)."""
    return read_image_with_notes(path)[0]


def read_image_with_notes(path) -> Tuple[np.ndarray, List[str]]:
    """Like :func:`read_image`, plus the conversions made, as short sentences for a notice."""
    path = Path(path)
    raw, notes = read_raw(path)
    return _to_rgb_uint8(path, raw, notes)


def read_raw(path) -> Tuple[np.ndarray, List[str]]:
    """The pixels of an image file as stored (any dtype, HxW or HxWxC), and notes on what was
    left out. Refuses missing, empty, foreign and truncated files with an InputFileError."""
    path = Path(path)
    _check_is_file(path)
    return decode_raw(path.read_bytes(), path)


def decode_raw(data: bytes, name) -> Tuple[np.ndarray, List[str]]:
    """Like :func:`read_raw`, for bytes already in memory; ``name`` is the file they came from."""
    name = Path(name)
    kind = _sniff(data[:16], name)
    try:
        return _decode_tiff(data) if kind == "TIFF" else _decode_with_pillow(data, name)
    except InputFileError:
        raise
    except Exception as err:  # decoder errors differ per format and library version
        raise InputFileError(name, f"cannot be decoded as {kind} ({_first_line(err)})") from None


def _first_line(err: Exception) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__


def _check_is_file(path: Path) -> None:
    if not path.exists():
        raise InputFileError(path, "does not exist")
    if path.is_dir():
        raise InputFileError(path, "is a folder, not an image file")


def _sniff(head: bytes, name: Path) -> str:
    """The format the first bytes announce; refuses empty and foreign files."""
    if not head:
        raise InputFileError(name, "is empty (0 bytes)")
    for kind, signatures in _SIGNATURES.items():
        if head.startswith(signatures):
            return kind
    expected = _EXPECTED.get(name.suffix.lower(), "an image")
    looks = "text" if _looks_like_text(head) else "data of another kind"
    raise InputFileError(name, f"is not a {expected} image: its content is {looks}")


def _looks_like_text(head: bytes) -> bool:
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(32 <= b < 127 or b in (9, 10, 13) for b in head)


def _decode_with_pillow(data: bytes, name: Path) -> Tuple[np.ndarray, List[str]]:
    from PIL import Image, ImageFile

    # A truncated JPEG must be an error, not a silently grey lower half; another
    # library may have switched Pillow to lenient loading, so insist here.
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    notes: List[str] = []
    with Image.open(io.BytesIO(data)) as im:
        if getattr(im, "n_frames", 1) > 1:
            notes.append(f"it has {im.n_frames} frames; only the first was read")
        im.load()
        kind = im.format
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
    if kind == "JPEG":
        _check_truncated_jpeg(data, name)
    return array, notes


def _check_truncated_jpeg(data: bytes, name: Path) -> None:
    """Pillow can decode a JPEG cut short without complaint; the end-of-image marker tells."""
    if b"\xff\xd9" not in data[-4096:]:
        raise InputFileError(name, "is a truncated JPEG (no end-of-image marker): the file was cut short")


def _decode_tiff(data: bytes) -> Tuple[np.ndarray, List[str]]:
    import tifffile

    notes: List[str] = []
    with tifffile.TiffFile(io.BytesIO(data)) as tif:
        if len(tif.pages) > 1:
            notes.append(f"it has {len(tif.pages)} pages; only the first was read")
        array = tif.pages[0].asarray()
    if array.ndim == 3 and array.shape[0] in (1, 3, 4) and array.shape[-1] not in (1, 3, 4):
        array = np.moveaxis(array, 0, -1)  # planar (C, H, W) storage
    return array, notes


def _to_rgb_uint8(path: Path, array: np.ndarray, notes: List[str]) -> Tuple[np.ndarray, List[str]]:
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
    if array.dtype == np.uint16 and array.size and int(array.max()) <= LOW_BIT_DEPTH_MAX:
        bits = _bits_holding(int(array.max()))
        notes.append(f"16-bit file whose values stay under {LOW_BIT_DEPTH_MAX + 1}: read as {bits}-bit data "
                     f"(scaled by {2 ** bits - 1}, not 65535)")
        return as_rgb_uint8(array, full_scale=2 ** bits - 1), notes
    if array.dtype != np.uint8:
        if np.issubdtype(array.dtype, np.integer):
            bits = np.iinfo(array.dtype).bits
            notes.append(f"{bits}-bit values scaled to 8-bit (full {bits}-bit range)")
        elif array.dtype == bool:
            notes.append("1-bit values scaled to 8-bit")
        else:
            notes.append(f"{array.dtype} values stretched to 8-bit (min-max)")
    return as_rgb_uint8(array), notes


def _bits_holding(maximum: int) -> int:
    """The smallest camera bit depth (8 to 12) whose range holds ``maximum``."""
    return next(bits for bits in (8, 9, 10, 11, 12) if maximum < 2 ** bits)


def as_rgb_uint8(image: np.ndarray, full_scale: Optional[float] = None) -> np.ndarray:
    """HxW, HxWx1, HxWx3 or HxWx4 of any numeric dtype -> HxWx3 uint8.

    Integers are scaled by their dtype's full range (``full_scale`` overrides it, e.g.
    4095 for 12-bit data in a 16-bit file); floats in [0, 1] by 255, other floats min-max."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[-1] not in (1, 3, 4):
        raise ValueError(f"expected an HxW or HxWxC (C=1,3,4) image, got shape {image.shape}")
    image = image[..., :3] if image.shape[-1] == 4 else image
    image = np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image
    if image.dtype == np.uint8 and full_scale is None:
        return np.ascontiguousarray(image)
    if image.dtype == bool:
        return image.astype(np.uint8) * 255
    if np.issubdtype(image.dtype, np.integer):  # 16-bit and friends: keep the full range
        top = float(full_scale or np.iinfo(image.dtype).max)
        return np.clip(image.astype(np.float64) * 255.0 / top, 0, 255).round().astype(np.uint8)
    lo, hi = float(np.nanmin(image)), float(np.nanmax(image))
    scale = 255.0 if hi <= 1.0 and lo >= 0.0 else 255.0 / max(hi - lo, 1e-12)
    offset = 0.0 if hi <= 1.0 and lo >= 0.0 else lo
    return np.clip((np.nan_to_num(image) - offset) * scale, 0, 255).round().astype(np.uint8)
