"""One mask rule everywhere: 0/1, 0/255, JPEG, 16-bit, palette and colour masks read the same."""
import numpy as np
import pytest
import tifffile
from PIL import Image

from napari_polyp.io import binarize_mask, decode_mask, read_mask
from napari_polyp.training.data import PairArrays, find_pairs


def blob(shape=(40, 48)):
    mask = np.zeros(shape, np.uint8)
    mask[8:30, 10:36] = 1
    return mask


def write_mask(path, mask, encoding):
    path.parent.mkdir(parents=True, exist_ok=True)
    if encoding == "0/1 png":
        Image.fromarray(mask).save(path)
    elif encoding == "0/255 png":
        Image.fromarray(mask * 255).save(path)
    elif encoding == "0/255 jpeg":
        Image.fromarray(mask * 255).save(path, quality=75)
    elif encoding == "16-bit png":
        Image.fromarray(mask.astype(np.uint16) * 65535).save(path)
    elif encoding == "16-bit tiff 0/1":
        tifffile.imwrite(path, mask.astype(np.uint16))
    elif encoding == "palette png":
        pal = Image.fromarray(mask, mode="L").convert("P")
        pal.putpalette([0, 0, 0, 128, 0, 0] + [0] * 762)  # VOC style: index 1 is dark red
        pal.save(path)
    elif encoding == "red rgb png":
        Image.fromarray(np.stack([mask * 255, 0 * mask, 0 * mask], -1)).save(path)
    return path


ENCODINGS = {"0/1 png": "png", "0/255 png": "png", "0/255 jpeg": "jpg", "16-bit png": "png",
             "16-bit tiff 0/1": "tif", "palette png": "png", "red rgb png": "png"}


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_every_encoding_reads_as_the_same_mask(tmp_path, encoding):
    path = write_mask(tmp_path / f"m.{ENCODINGS[encoding]}", blob(), encoding)
    np.testing.assert_array_equal(read_mask(path), blob())
    np.testing.assert_array_equal(decode_mask(path.read_bytes(), path), blob())


def test_the_rule_on_arrays():
    assert binarize_mask(np.array([[0, 1]], np.uint8)).tolist() == [[0, 1]]
    assert binarize_mask(np.array([[3, 200]], np.uint8)).tolist() == [[0, 1]]  # JPEG noise near 0 and 255
    assert binarize_mask(np.array([[0.2, 0.7]])).tolist() == [[0, 1]]
    assert binarize_mask(np.array([[False, True]])).tolist() == [[0, 1]]
    assert binarize_mask(np.array([[0, 255]], np.int64)).tolist() == [[0, 1]]
    assert binarize_mask(np.array([[300, 60000]], np.uint16)).tolist() == [[0, 1]]


def test_training_pairs_are_the_same_for_0_1_0_255_and_jpeg_masks(tmp_path):
    image = np.random.default_rng(0).integers(0, 256, (40, 48, 3), dtype=np.uint8)
    arrays = {}
    for encoding in ("0/1 png", "0/255 png", "0/255 jpeg"):
        root = tmp_path / encoding.replace("/", "-").replace(" ", "-")
        (root / "images").mkdir(parents=True)
        Image.fromarray(image).save(root / "images" / "a.png")
        write_mask(root / "masks" / f"a.{ENCODINGS[encoding]}", blob(), encoding)
        arrays[encoding] = PairArrays(find_pairs(root), 32).masks
    assert arrays["0/1 png"].sum() > 0
    np.testing.assert_array_equal(arrays["0/1 png"], arrays["0/255 png"])
    np.testing.assert_array_equal(arrays["0/1 png"], arrays["0/255 jpeg"])
