"""The file types read are defined once (napari_polyp/io/extensions.py); napari.yaml repeats them
for npe2, which reads the manifest without importing the package: the two must stay equal."""
from pathlib import Path

import pytest
import yaml

from napari_polyp.io import extensions
from napari_polyp.io.images import is_image_path
from napari_polyp.io.video import is_video_path

MANIFEST = yaml.safe_load((Path(__file__).resolve().parents[2] / "napari.yaml").read_text())


def test_the_readers_patterns_in_napari_yaml_are_the_extensions_read():
    (reader,) = MANIFEST["contributions"]["readers"]
    assert tuple(reader["filename_patterns"]) == extensions.filename_patterns()


def test_the_writers_extension_in_napari_yaml_is_the_mask_extension():
    (writer,) = MANIFEST["contributions"]["writers"]
    assert writer["filename_extensions"] == [extensions.MASK_EXTENSION]


@pytest.mark.parametrize("ext", extensions.IMAGE_EXTENSIONS)
def test_every_image_extension_is_an_image_in_any_case(ext):
    assert is_image_path(f"a{ext}") and is_image_path(f"a{ext.upper()}") and not is_video_path(f"a{ext}")


@pytest.mark.parametrize("ext", extensions.VIDEO_EXTENSIONS)
def test_every_video_extension_is_a_video_in_any_case(ext):
    assert is_video_path(f"a{ext}") and is_video_path(f"a{ext.upper()}") and not is_image_path(f"a{ext}")


def test_a_file_dialog_filter_names_every_pattern():
    assert extensions.dialog_filter() == "Videos (*.mp4 *.avi *.mov *.mkv)"
    assert extensions.dialog_filter("Images", extensions.IMAGE_EXTENSIONS) == \
        "Images (*.png *.jpg *.jpeg *.bmp *.tif *.tiff)"
