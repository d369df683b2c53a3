"""The optional ``clicks`` field: the Click mode log kept with a save, read back strictly.

A manifest is untrusted: a bad clicks field is dropped with one warning naming the line, the
record (its mask) stays usable, and nothing raises."""
import json
import warnings

import numpy as np
import pytest

from napari_polyp.corrections import CorrectionsDataset
from napari_polyp.corrections.manifest import MAX_CLICKS, clean_clicks, clicks_problem
from napari_polyp.corrections.review import ReviewSession

LOG = [{"row": 5, "col": 7, "positive": True}, {"row": 15, "col": 2, "positive": False}]


def _image():
    return np.random.default_rng(0).integers(0, 256, (20, 24, 3), dtype=np.uint8)


def _mask():
    mask = np.zeros((20, 24), np.uint8)
    mask[4:12, 5:15] = 1
    return mask


def _lines(root):
    return [json.loads(line) for line in (root / "manifest.jsonl").read_text().splitlines()]


def test_the_click_log_round_trips_through_the_store(tmp_path):
    ds = CorrectionsDataset(tmp_path / "ds")
    numpy_log = [{"row": np.int64(5), "col": np.int32(7), "positive": np.bool_(True)}, LOG[1]]
    first = ds.save(_image(), _mask(), stem="a", status="corrected", clicks=numpy_log)
    assert first.clicks == LOG
    assert _lines(ds.root)[0]["clicks"] == LOG  # plain JSON in the manifest line
    again = CorrectionsDataset(tmp_path / "ds")  # a fresh reader of the same folder
    assert again.get("a").clicks == LOG
    second = again.save(mask=_mask(), stem="a", status="accepted")  # a save without clicks has none
    assert second.clicks == [] and "clicks" not in _lines(ds.root)[1]
    assert CorrectionsDataset(tmp_path / "ds").get("a").clicks == []


def test_review_commit_keeps_the_clicks(tmp_path):
    from PIL import Image

    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(_image()).save(images / "x.png")
    session = ReviewSession(images, tmp_path / "out")
    record = session.commit(0, _mask(), "corrected", image=_image(), clicks=LOG)
    assert record.clicks == LOG
    assert CorrectionsDataset(tmp_path / "out").get("x").clicks == LOG


@pytest.mark.parametrize("bad", [
    "row 5", 7, {"row": 1}, [1, 2], [{"row": 1, "col": 2}], [{"row": 1, "col": 2, "positive": "yes"}],
    [{"row": -1, "col": 2, "positive": True}], [{"row": 1.5, "col": 2, "positive": True}],
    [{"row": True, "col": 2, "positive": True}], [{"row": 1, "col": 2, "positive": True, "x": 0}],
    [{"row": 10 ** 40, "col": 2, "positive": True}], [{"row": 1, "col": None, "positive": False}],
    [{"row": 1, "col": 2, "positive": True}] * (MAX_CLICKS + 1),
])
def test_a_bad_clicks_field_is_dropped_with_one_warning_and_the_record_kept(tmp_path, bad):
    ds = CorrectionsDataset(tmp_path / "ds")
    ds.save(_image(), _mask(), stem="a", clicks=LOG)
    record = dict(_lines(ds.root)[0], version=2, clicks=bad)
    with open(ds.manifest_path, "a") as fh:
        fh.write(json.dumps(record) + "\n")
    with pytest.warns(UserWarning, match=r"line 2 read without its clicks, its clicks field"):
        got = CorrectionsDataset(tmp_path / "ds").get("a")
    assert got.version == 2 and got.clicks == [] and got.mask == "masks/a.png"  # the record stays usable
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # one warning per line, not one per read
        assert CorrectionsDataset(tmp_path / "ds").get("a").clicks == []
    ds.save(mask=_mask(), stem="a", clicks=LOG[:1])  # and the dataset still takes new saves
    assert CorrectionsDataset(tmp_path / "ds").get("a").clicks == LOG[:1]


def test_a_bad_click_log_is_refused_before_anything_is_written(tmp_path):
    ds = CorrectionsDataset(tmp_path / "ds")
    with pytest.raises(ValueError, match="outside the 20×24 mask"):
        ds.save(_image(), _mask(), stem="a", clicks=[{"row": 20, "col": 0, "positive": True}])
    with pytest.raises(ValueError, match="exactly the keys"):
        ds.save(_image(), _mask(), stem="a", clicks=[{"row": 1, "col": 0}])
    assert not ds.manifest_path.exists() or _lines(ds.root) == []


def test_clicks_problem_and_clean_clicks():
    assert clicks_problem(LOG) is None and clicks_problem([]) is None
    assert clicks_problem(LOG, (10, 10)) is not None  # row 15 is outside a 10-row mask
    assert clean_clicks(({"positive": True, "col": 7, "row": 5},)) == LOG[:1]  # key order, a tuple
