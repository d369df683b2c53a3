"""A tampered manifest never makes the dataset read, write, create or delete anything outside
its folder; the good items still load, train and save, and each bad line is reported once."""
import json
import os
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from napari_polyp.corrections import CorrectionsDataset
from napari_polyp.training.data import find_pairs

_WATCHED = []  # lists that the audit hook fills while a `file_activity` block runs


def _audit(event, args):
    if not _WATCHED or event not in ("open", "os.remove", "os.rename", "os.mkdir", "os.listdir", "os.scandir",
                                     "shutil.copyfile", "os.truncate", "os.chmod", "os.utime"):
        return
    for value in args[:2]:
        if isinstance(value, (str, bytes, os.PathLike)):
            _WATCHED[-1].append((event, os.fsdecode(value)))


sys.addaudithook(_audit)  # audit hooks cannot be removed; it records only inside `file_activity`


@contextmanager
def file_activity():
    """Every path opened, listed, renamed, created or removed by this process inside the block."""
    seen = []
    _WATCHED.append(seen)
    try:
        yield seen
    finally:
        _WATCHED.remove(seen)


def rgb(seed=0, shape=(20, 24)):
    return np.random.default_rng(seed).integers(0, 256, (*shape, 3), dtype=np.uint8)


def square(r0, r1, shape=(20, 24)):
    mask = np.zeros(shape, np.uint8)
    mask[r0:r1, 4:10] = 1
    return mask


def snapshot(folder: Path) -> dict:
    """Every file and folder under ``folder`` with its bytes and modification time."""
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*"))}


@pytest.fixture
def tampered(tmp_path):
    """A dataset with good items 'a' and 'b', then lines a hostile sender appended."""
    outside = tmp_path / "outside"
    outside.mkdir()
    Image.fromarray(square(0, 20) * 255).save(outside / "victim.png")
    Image.fromarray(rgb(9)).save(outside / "secret.png")
    root = tmp_path / "ds"
    ds = CorrectionsDataset(root)
    ds.save(rgb(1), square(2, 8), stem="a", status="accepted")
    ds.save(rgb(2), square(3, 9), stem="b", status="corrected")
    ds.save(rgb(3), square(1, 4), stem="victim", status="corrected")
    # a planted history file, for a repair() that would copy it to a record's mask path
    planted = root / "history" / "evil"
    planted.mkdir(parents=True)
    Image.fromarray(square(5, 6) * 255).save(planted / "1.png")
    (root / "images" / "link.png").symlink_to(outside / "secret.png")
    bad = [
        {"format_version": 1, "stem": "abs", "version": 1, "image": str(outside / "secret.png"),
         "mask": str(outside / "victim.png"), "status": "accepted"},
        {"format_version": 1, "stem": "victim", "version": 2, "image": "images/victim.png",
         "mask": "../outside/victim.png", "status": "corrected"},
        {"format_version": 1, "stem": "evil", "version": 1, "image": "images/a.png",
         "mask": "../outside/created/planted.png", "status": "accepted"},
        {"format_version": 1, "stem": "linked", "version": 1, "image": "images/link.png",
         "mask": "masks/a.png", "status": "accepted"},
        {"format_version": 1, "stem": "b", "version": 2, "image": "images/b.png", "mask": 5, "status": "corrected"},
        {"format_version": 1, "stem": "../../outside/x", "version": 1, "image": "images/a.png",
         "mask": "masks/a.png", "prediction": "..\\..\\outside\\victim.png", "status": "accepted"},
    ]
    with open(root / "manifest.jsonl", "a") as fh:
        for line in bad:
            fh.write(json.dumps(line) + "\n")
    return ds, outside


def outside_paths(seen, outside: Path):
    return [(event, path) for event, path in seen if Path(path).resolve().is_relative_to(outside.resolve())]


def test_a_tampered_manifest_is_never_followed_out_of_the_folder(tampered):
    ds, outside = tampered
    before = snapshot(outside)
    with warnings.catch_warnings(), file_activity() as seen:
        warnings.simplefilter("ignore")
        assert sorted(ds.latest()) == ["a", "b", "victim"]  # every tampered record skipped
        for stem in ("a", "b", "victim"):
            image, mask, _ = ds.load(stem)
            assert image.shape == (20, 24, 3)
        np.testing.assert_array_equal(ds.load_mask("b"), square(3, 9))  # the good version before `mask: 5`
        np.testing.assert_array_equal(ds.load_mask("victim"), square(1, 4))
        assert [p.stem for p in find_pairs(ds.root)] == ["a", "b", "victim"]
        ds.save(mask=square(0, 2), stem="victim", status="corrected")
        ds.save(mask=square(0, 3), stem="b", status="corrected")
        ds.save(rgb(4), square(0, 4), stem="evil", status="accepted")
        ds.repair()
    assert outside_paths(seen, outside) == []
    assert snapshot(outside) == before  # nothing read-and-rewritten, deleted or created there
    assert ds.get("b").version == 2 and ds.get("victim").version == 2
    np.testing.assert_array_equal(ds.load_mask("evil"), square(0, 4))


def test_each_tampered_line_is_reported_once_naming_it(tampered):
    ds, _ = tampered
    with pytest.warns(UserWarning) as first:
        ds.items()
    messages = [str(w.message) for w in first if "skipped" in str(w.message)]
    assert len(messages) == 6
    for number, text in zip(range(4, 10), messages):
        assert f"manifest.jsonl: line {number} skipped" in text
    assert any("absolute" in m for m in messages) and any("'..'" in m for m in messages)
    assert any("symbolic link" in m for m in messages) and any("not a text path" in m for m in messages)
    with warnings.catch_warnings(record=True) as again:
        warnings.simplefilter("always")
        ds.items()
        ds.load("a")
    assert [w for w in again if "skipped" in str(w.message)] == []


def test_a_stem_from_the_manifest_is_cleaned_like_a_saved_one(tmp_path):
    ds = CorrectionsDataset(tmp_path / "ds")
    ds.save(rgb(1), square(2, 8), stem="a", status="accepted")
    line = {"stem": "../../up", "image": "images/a.png", "mask": "masks/a.png", "status": "accepted"}
    with open(tmp_path / "ds" / "manifest.jsonl", "a") as fh:
        fh.write(json.dumps(line) + "\n")
    assert sorted(ds.latest()) == ["a", "up"]
    ds.save(mask=square(1, 2), stem="up", status="corrected")
    assert not (tmp_path / "up").exists() and not (tmp_path / "history").exists()
    assert (tmp_path / "ds" / "history" / "up" / "1.png").is_file()


def test_wrongly_typed_text_fields_are_repaired_not_fatal(tmp_path):
    ds = CorrectionsDataset(tmp_path / "ds")
    ds.save(rgb(1), square(2, 8), stem="a", status="accepted")
    line = json.loads((tmp_path / "ds" / "manifest.jsonl").read_text())
    line.update(version=2, note=5, reviewer=["x"], threshold="high", status=7)
    with open(tmp_path / "ds" / "manifest.jsonl", "a") as fh:
        fh.write(json.dumps(line) + "\n")
    record = ds.get("a")
    assert record.version == 2 and record.note == "" and record.reviewer == "" and record.threshold is None
    assert record.extra["original_note"] == 5
    ds.load("a")
    assert ds.save(mask=square(1, 3), stem="a", status="corrected").version == 3


def test_a_symlinked_folder_out_of_the_dataset_is_refused_for_writing(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "ds"
    root.mkdir()
    (root / "masks").symlink_to(outside, target_is_directory=True)
    ds = CorrectionsDataset(root)
    with pytest.raises(Exception, match="outside the dataset folder"):
        ds.save(rgb(1), square(2, 8), stem="a", status="accepted")
    assert list(outside.iterdir()) == []
