"""The optional ``strokes`` field: refine strokes kept with a save, inside the dataset only."""
import json
import os

import numpy as np
import pytest

from napari_polyp.corrections import CorrectionsDataset
from napari_polyp.corrections.dataset import DatasetError


def _image():
    return np.random.default_rng(0).integers(0, 256, (20, 24, 3), dtype=np.uint8)


def _mask():
    mask = np.zeros((20, 24), np.uint8)
    mask[4:12, 5:15] = 1
    return mask


def _strokes():
    strokes = np.zeros((20, 24), np.uint8)
    strokes[6, 6:12] = 1
    strokes[18, 1:20] = 2
    return strokes


def _lines(root):
    return [json.loads(line) for line in (root / "manifest.jsonl").read_text().splitlines()]


def test_strokes_are_kept_per_version_and_read_back(tmp_path):
    ds = CorrectionsDataset(tmp_path / "ds")
    first = ds.save(_image(), _mask(), stem="a", status="corrected", strokes=_strokes())
    assert first.strokes == "strokes/a/1.png" and (ds.root / first.strokes).is_file()
    np.testing.assert_array_equal(ds.load_strokes("a"), _strokes())
    second = ds.save(mask=_mask(), stem="a", status="accepted")  # a save without strokes has none
    assert second.strokes == "" and ds.load_strokes("a") is None
    lines = _lines(ds.root)
    assert lines[0]["strokes"] == "strokes/a/1.png" and "strokes" not in lines[1]
    assert (ds.root / "strokes" / "a" / "1.png").is_file()  # the earlier version's strokes stay


def test_empty_strokes_write_nothing_and_bad_strokes_write_nothing(tmp_path):
    ds = CorrectionsDataset(tmp_path / "ds")
    assert ds.save(_image(), _mask(), stem="a", strokes=np.zeros((20, 24), np.uint8)).strokes == ""
    with pytest.raises(ValueError, match="differ in shape"):
        ds.save(mask=_mask(), stem="a", strokes=np.zeros((5, 5), np.uint8))
    with pytest.raises(ValueError, match="labels other than"):
        ds.save(mask=_mask(), stem="a", strokes=np.full((20, 24), 7, np.uint8))
    assert len(_lines(ds.root)) == 1 and not (ds.root / "strokes").exists()


def test_a_strokes_path_leading_out_is_never_followed(tmp_path):
    ds = CorrectionsDataset(tmp_path / "ds")
    ds.save(_image(), _mask(), stem="a", strokes=_strokes())
    outside = tmp_path / "secret.png"
    outside.write_bytes(b"not yours")
    record = dict(_lines(ds.root)[0], version=2, strokes="../secret.png")
    with open(ds.manifest_path, "a") as fh:
        fh.write(json.dumps(record) + "\n")
    with pytest.warns(UserWarning, match="strokes"):
        assert ds.get("a").version == 1  # the bad record is skipped, the previous one stays
    os.symlink(outside, ds.root / "strokes" / "a" / "9.png")
    record = dict(_lines(ds.root)[0], version=2, strokes="strokes/a/9.png")
    with open(ds.manifest_path, "a") as fh:
        fh.write(json.dumps(record) + "\n")
    with pytest.warns(UserWarning, match="outside the dataset"):
        assert ds.get("a").version == 1


def test_strokes_link_out_refused_on_save(tmp_path):
    ds = CorrectionsDataset(tmp_path / "ds")
    ds.save(_image(), _mask(), stem="a")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.symlink(elsewhere, ds.root / "strokes")
    with pytest.raises(DatasetError, match="outside the dataset"):
        ds.save(mask=_mask(), stem="a", strokes=_strokes())
    assert not any(elsewhere.iterdir())
    assert np.array_equal(ds.load_mask("a"), _mask()) and len(_lines(ds.root)) == 1
    assert not any((ds.root / "history").glob("a/unconfirmed-*"))  # refused before any write
