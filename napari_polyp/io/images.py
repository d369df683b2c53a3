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
from .extensions import IMAGE_EXTENSIONS, IMAGE_FORMATS

# The most pixels any decoder here may produce (10000 x 10000; 300 MB as RGB). A small file can
# announce a huge image (a 0.9 MB TIFF of 30000 x 30000); the size is checked from the header first.
MAX_IMAGE_PIXELS = 100_000_000
_FORMAT_NAMES = list(dict.fromkeys(IMAGE_FORMATS.values()))
READ_FORMATS = ", ".join(_FORMAT_NAMES[:-1]) + " and " + _FORMAT_NAMES[-1]  # "PNG, JPEG, BMP and TIFF"
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


def image_size(path) -> Tuple[int, int]:
    """(height, width) of an image file as :func:`read_image` returns it (EXIF orientation
    applied), from its header alone; refuses what :func:`read_raw` refuses, and images over
    :data:`MAX_IMAGE_PIXELS`."""
    path = Path(path)
    _check_is_file(path)
    with open(path, "rb") as fh:
        return _size_from(fh, path)


def encoded_image_size(data: bytes, name) -> Tuple[int, int]:
    """Like :func:`image_size`, for a file's bytes already in memory."""
    return _size_from(io.BytesIO(data), Path(name))


def _size_from(fh, name: Path) -> Tuple[int, int]:
    kind = _sniff(fh.read(16), name)
    fh.seek(0)
    try:
        if kind == "TIFF":
            import tifffile

            with tifffile.TiffFile(fh) as tif:
                return _checked_tiff_page(tif, name)[1]
        from PIL import Image

        with Image.open(fh) as im:
            return _checked_pillow_size(im, name)
    except InputFileError:
        raise
    except Exception as err:  # noqa: BLE001 -- decoder errors differ per format and library version
        raise _decode_error(name, kind, err) from None


def _check_pixel_count(name: Path, height: int, width: int) -> None:
    if height * width > MAX_IMAGE_PIXELS:
        raise InputFileError(name, f"is {width}x{height} pixels, more than the {MAX_IMAGE_PIXELS:,} "
                                   "napari-polyp reads (it is not decoded)")


def _checked_pillow_size(im, name: Path) -> Tuple[int, int]:
    """(height, width) of an opened (not yet decoded) Pillow image, upright, within the pixel limit."""
    width, height = im.size
    _check_pixel_count(name, height, width)
    return (width, height) if _exif_orientation(im) in (5, 6, 7, 8) else (height, width)


def _exif_orientation(im) -> int:
    try:
        return int(im.getexif().get(0x0112, 1) or 1)
    except Exception:  # noqa: BLE001 -- a broken EXIF block: the pixels as stored
        return 1


def _checked_tiff_page(tif, name: Path):
    """The first page of a TIFF and its (height, width), refused over the pixel limit before decoding."""
    page = tif.pages[0]
    height, width = int(page.imagelength), int(page.imagewidth)
    _check_pixel_count(name, height, width)
    if int(page.size) > 4 * MAX_IMAGE_PIXELS:  # many samples or planes per pixel
        raise InputFileError(name, f"holds {int(page.size):,} values in its first page, more than napari-polyp reads")
    return page, (height, width)


def _decode_error(name: Path, kind: str, err: Exception) -> InputFileError:
    if type(err).__name__ == "DecompressionBombError":  # Pillow's own limit, above ours
        return InputFileError(name, f"announces more than the {MAX_IMAGE_PIXELS:,} pixels napari-polyp reads "
                                    "(it is not decoded)")
    return InputFileError(name, f"cannot be decoded as {kind} ({_first_line(err)})")


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
        return _decode_tiff(data, name) if kind == "TIFF" else _decode_with_pillow(data, name)
    except InputFileError:
        raise
    except Exception as err:  # decoder errors differ per format and library version
        raise _decode_error(name, kind, err) from None


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
    other = _other_format(head)
    if other:
        raise InputFileError(name, f"is a {other} image; napari-polyp reads {READ_FORMATS}")
    looks = "text" if _looks_like_text(head) else "data of another kind"
    expected = IMAGE_FORMATS.get(name.suffix.lower())
    what = f"a {expected} image" if expected else f"an image napari-polyp reads ({READ_FORMATS})"
    raise InputFileError(name, f"is not {what}: its content is {looks}")


def _other_format(head: bytes) -> str:
    """The name of an image format not read here that ``head`` starts like, else "" (so that the
    message names it)."""
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "GIF"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "WebP"
    if head[4:8] == b"ftyp" and head[8:12] in (b"heic", b"heix", b"mif1", b"avif"):
        return "HEIF/AVIF"
    return ""


def _looks_like_text(head: bytes) -> bool:
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(32 <= b < 127 or b in (9, 10, 13) for b in head)


def _decode_with_pillow(data: bytes, name: Path) -> Tuple[np.ndarray, List[str]]:
    from PIL import Image, ImageFile, ImageOps

    # A truncated JPEG must be an error, not a silently grey lower half; another
    # library may have switched Pillow to lenient loading, so insist here.
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    notes: List[str] = []
    with Image.open(io.BytesIO(data)) as im:
        _checked_pillow_size(im, name)
        if getattr(im, "n_frames", 1) > 1:
            notes.append(f"it has {im.n_frames} frames; only the first was read")
        im.load()
        kind = im.format
        orientation = _exif_orientation(im)
        if orientation != 1:  # a camera's "rotate when shown": shown upright, as every viewer does
            im = ImageOps.exif_transpose(im)
            notes.append(f"turned upright as its EXIF orientation ({orientation}) says")
        mode = im.mode
        if mode in ("P", "PA"):
            im = im.convert("RGBA" if "transparency" in im.info or mode == "PA" else "RGB")
            mode = im.mode
        elif mode in ("1", "CMYK", "YCbCr", "LAB", "HSV"):
            im = im.convert("L" if mode == "1" else "RGB")
            notes.append(f"{mode} converted to {im.mode}")
            mode = im.mode
        array = np.asarray(im)
        if kind == "PNG" and len(data) > 25 and data[24] == 16 and data[25] in (2, 6):
            # Pillow reads a 16-bit colour PNG as 8-bit (each value's high byte) without a word
            notes.append("16-bit values scaled to 8-bit (full 16-bit range)")
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


def _decode_tiff(data: bytes, name: Path) -> Tuple[np.ndarray, List[str]]:
    import tifffile

    notes: List[str] = []
    with tifffile.TiffFile(io.BytesIO(data)) as tif:
        page, _ = _checked_tiff_page(tif, name)
        if len(tif.pages) > 1:
            notes.append(f"it has {len(tif.pages)} pages; only the first was read")
        array = page.asarray()
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
