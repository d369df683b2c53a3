"""What the image decoders refuse or fix before decoding (issue 25): one pixel limit for every
format, checked from the header; EXIF orientation applied and said; formats not read named."""
import io

import numpy as np
import pytest
from PIL import Image

from napari_polyp.errors import InputFileError
from napari_polyp.io import images as I
from napari_polyp.io.masks import read_mask


def test_every_decoder_refuses_more_pixels_than_the_limit_from_the_header(tmp_path, monkeypatch):
    monkeypatch.setattr(I, "MAX_IMAGE_PIXELS", 40 * 30 - 1)
    for ext in (".png", ".jpg", ".bmp", ".tif"):
        path = tmp_path / f"big{ext}"
        Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(path)
        for reader in (I.read_image, read_mask, I.image_size):
            with pytest.raises(InputFileError, match="40x30 pixels, more than the 1,199"):
                reader(path)
    monkeypatch.setattr(I, "MAX_IMAGE_PIXELS", 40 * 30)
    assert I.read_image(tmp_path / "big.tif").shape == (30, 40, 3)


def test_exif_orientation_is_applied_and_said(tmp_path):
    pixels = np.zeros((30, 40, 3), np.uint8)
    pixels[:5, :, 0] = 255  # a red band along the stored top
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to show"
    path = tmp_path / "phone.jpg"
    Image.fromarray(pixels).save(path, exif=exif, quality=95)
    image, notes = I.read_image_with_notes(path)
    assert image.shape == (40, 30, 3) and I.image_size(path) == (40, 30)
    assert image[:, -5:, 0].mean() > 200 and image[:, :5, 0].mean() < 50  # the band is on the right now
    assert any("EXIF orientation (6)" in note for note in notes)


@pytest.mark.parametrize("fmt,name", [("GIF", "GIF"), ("WEBP", "WebP")])
def test_an_image_format_not_read_is_named(tmp_path, fmt, name):
    path = tmp_path / f"animation.{fmt.lower()}"
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(buffer, format=fmt)
    path.write_bytes(buffer.getvalue())
    with pytest.raises(InputFileError) as caught:
        I.read_image(path)
    message = str(caught.value)
    assert f"is a {name} image; napari-polyp reads PNG, JPEG, BMP and TIFF" in message
    assert "a an" not in message and "image image" not in message


def test_text_under_an_unknown_extension_reads_well(tmp_path):
    path = tmp_path / "notes.xyz"
    path.write_text("hello")
    with pytest.raises(InputFileError, match=r"is not an image napari-polyp reads \(PNG, JPEG, BMP and TIFF\): "
                                             "its content is text"):
        I.read_image(path)
