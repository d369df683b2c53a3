"""Stems that clean to the same name never overwrite each other's image."""
import numpy as np
import pytest

from napari_polyp.corrections import CorrectionsDataset
from napari_polyp.corrections.export import export
from napari_polyp.corrections.manifest import MAX_NAME_BYTES, MAX_STEM_BYTES, safe_stem


def rgb(seed):
    return np.random.default_rng(seed).integers(0, 256, (12, 16, 3), dtype=np.uint8)


def mask():
    m = np.zeros((12, 16), np.uint8)
    m[2:6, 3:9] = 1
    return m


@pytest.mark.parametrize("names", [("..", ""), ("", "."), ("?", "*"), ("a_b", "a b"), ("../x", "x/..")])
def test_names_that_clean_alike_keep_their_own_images(tmp_path, names):
    ds = CorrectionsDataset(tmp_path)
    first = ds.save(rgb(1), mask(), stem=names[0], status="accepted")
    second = ds.save(rgb(2), mask(), stem=names[1], status="accepted")
    assert first.stem != second.stem
    np.testing.assert_array_equal(ds.load_image(first.stem), rgb(1))
    np.testing.assert_array_equal(ds.load_image(second.stem), rgb(2))
    again = ds.save(rgb(1), mask(), stem=names[0], status="corrected")  # the same image again: the same item
    assert again.stem == first.stem and again.version == 2


def test_file_names_in_other_scripts_are_kept_not_merged(tmp_path):
    source_a, source_b = tmp_path / "息肉.png", tmp_path / "полип.png"
    from PIL import Image

    Image.fromarray(rgb(1)).save(source_a)
    Image.fromarray(rgb(2)).save(source_b)
    ds = CorrectionsDataset(tmp_path / "ds")
    a = ds.save(mask=mask(), source_path=source_a, status="accepted")
    b = ds.save(mask=mask(), source_path=source_b, status="accepted")
    assert (a.stem, b.stem) == ("息肉", "полип")
    np.testing.assert_array_equal(ds.load_image(a.stem), rgb(1))
    np.testing.assert_array_equal(ds.load_image(b.stem), rgb(2))


def test_cleaning_is_idempotent_and_never_leaves_dots():
    for name in ("..", ".", "", "a/../b", "  x  ", "." * 200, "x" * 300 + ".png"):
        stem = safe_stem(name)
        assert stem == safe_stem(stem) and stem not in (".", "..") and "/" not in stem
        assert len(stem.encode("utf-8")) <= MAX_STEM_BYTES


def test_a_long_non_ascii_file_name_is_saved_and_exported(tmp_path):
    """A legal 244-byte name of 2-byte letters: the stem is cut by bytes, at a whole letter, and
    every file made from it (temporaries included) stays under the file system's 255 bytes."""
    from PIL import Image

    source = tmp_path / ("ü" * 120 + ".png")
    assert len(source.name.encode("utf-8")) == 244
    Image.fromarray(rgb(1)).save(source)
    other = tmp_path / ("ü" * 119 + "x.png")  # the same first 200 bytes: another image
    Image.fromarray(rgb(2)).save(other)
    ds = CorrectionsDataset(tmp_path / "ds")
    first = ds.save(mask=mask(), source_path=source, status="accepted")
    second = ds.save(mask=mask(), source_path=other, status="accepted")
    assert first.stem == "ü" * 100 and second.stem != first.stem
    assert len(second.stem.encode("utf-8")) <= MAX_STEM_BYTES and second.stem == safe_stem(second.stem)
    ds.save(mask=1 - mask(), stem=first.stem, status="corrected")
    np.testing.assert_array_equal(ds.load_image(second.stem), rgb(2))
    summary = export(ds.root, "nnunet", tmp_path / "out")
    assert summary["cases"] == 2 and summary["skipped"] == []
    names = [p.name for p in (tmp_path / "ds").rglob("*")] + [p.name for p in (tmp_path / "out").rglob("*")]
    assert max(len(n.encode("utf-8")) for n in names) <= MAX_NAME_BYTES - 14  # room for a temporary's name
