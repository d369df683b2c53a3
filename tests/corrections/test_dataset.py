"""The corrections dataset: layout, provenance, history, older formats, torn index lines."""
import json

import numpy as np
import pytest
from PIL import Image

from napari_polyp.corrections import CorrectionsDataset, FORMAT_VERSION, pixels_changed
from napari_polyp.corrections.dataset import decode_mask, read_manifest


def rgb(seed=0, shape=(20, 24)):
    return np.random.default_rng(seed).integers(0, 256, (*shape, 3), dtype=np.uint8)


def square(r0, r1, shape=(20, 24)):
    mask = np.zeros(shape, np.uint8)
    mask[r0:r1, 4:10] = 1
    return mask


def manifest_lines(root):
    return [json.loads(line) for line in (root / "manifest.jsonl").read_text().splitlines()]


def test_save_writes_the_documented_layout_with_provenance(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_POLYP_REVIEWER", "alice")
    source = tmp_path / "src" / "polyp1.jpg"
    source.parent.mkdir()
    Image.fromarray(rgb()).save(source, quality=95)
    ds = CorrectionsDataset(tmp_path / "ds")
    predicted, corrected = square(2, 8), square(2, 10)
    record = ds.save(mask=corrected, source_path=source, predicted=predicted, model="microaunet",
                     checkpoint_sha256="abc", threshold=0.4, status="corrected", note="grew it")

    root = tmp_path / "ds"
    assert record.stem == "polyp1" and record.version == 1
    assert (root / "images" / "polyp1.jpg").read_bytes() == source.read_bytes()  # original bytes, no re-encoding
    saved = np.asarray(Image.open(root / "masks" / "polyp1.png"))
    assert saved.dtype == np.uint8 and set(np.unique(saved)) == {0, 255}
    np.testing.assert_array_equal(saved, corrected * 255)
    (line,) = manifest_lines(root)
    assert line["format_version"] == FORMAT_VERSION
    assert line["source_path"] == str(source)
    assert line["image"] == "images/polyp1.jpg" and line["mask"] == "masks/polyp1.png"
    assert line["model"] == "microaunet" and line["checkpoint_sha256"] == "abc" and line["threshold"] == 0.4
    assert line["status"] == "corrected" and line["note"] == "grew it" and line["reviewer"] == "alice"
    assert line["pixels_changed"] == 12 == pixels_changed(corrected, predicted)
    assert line["created"] == line["updated"] and line["created"].endswith("+00:00")
    import hashlib

    assert line["image_sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    image, mask, rec = ds.load("polyp1")
    assert image.shape == (20, 24, 3) and mask.dtype == np.uint8
    np.testing.assert_array_equal(mask, corrected)
    assert rec == record
    assert not list(root.rglob(".tmp-*"))
    assert oct((root / "masks" / "polyp1.png").stat().st_mode & 0o777) != "0o600"  # readable by the team


def test_saving_again_keeps_history_and_prediction_provenance(tmp_path, monkeypatch):
    monkeypatch.delenv("NAPARI_POLYP_REVIEWER", raising=False)
    ds = CorrectionsDataset(tmp_path)
    first = ds.save(rgb(), square(2, 8), stem="a", predicted=square(2, 8), model="m", threshold=0.5,
                    status="accepted")
    second = ds.save(mask=square(2, 12), stem="a", status="corrected", note="fixed")
    assert (first.version, second.version) == (1, 2)
    assert second.created == first.created and second.model == "m" and second.threshold == 0.5
    assert second.pixels_changed == 24  # still counted against the saved prediction
    assert second.reviewer  # the login name when the env is unset
    assert [v for v, _ in ds.history("a")] == [1]
    np.testing.assert_array_equal(ds.load_version("a", 1), square(2, 8))
    np.testing.assert_array_equal(ds.load_version("a", 2), square(2, 12))
    np.testing.assert_array_equal(ds.load_prediction("a"), square(2, 8))
    assert len(manifest_lines(tmp_path)) == 2 and len(ds.items()) == 1
    ds.save(mask=square(0, 3), stem="a", status="rejected")
    assert [v for v, _ in ds.history("a")] == [1, 2]


def test_items_progress_find_and_training_items(tmp_path):
    ds = CorrectionsDataset(tmp_path)
    for i, status in enumerate(["accepted", "corrected", "rejected"]):
        ds.save(rgb(i), square(1, 5), stem=f"s{i}", status=status)
    assert [r.stem for r in ds.items()] == ["s0", "s1", "s2"]
    assert [r.stem for r in ds.training_items()] == ["s0", "s1"]
    assert [r.stem for r in ds.items("rejected")] == ["s2"]
    progress = ds.progress(["s0", "s1", "s2", "unknown"])
    assert progress == {"unreviewed": 1, "accepted": 1, "corrected": 1, "rejected": 1, "total": 4, "reviewed": 3}
    sha = ds.get("s1").image_sha256
    assert ds.find(image_sha256=sha).stem == "s1"
    updated = ds.set_status("s2", "accepted", note="on second look")
    assert updated.version == 2 and updated.note == "on second look"
    assert ds.progress()["accepted"] == 2


def test_a_different_image_with_the_same_stem_gets_its_own_stem(tmp_path):
    ds = CorrectionsDataset(tmp_path)
    a = ds.save(rgb(1), square(1, 5), stem=ds.stem_for("x"), status="accepted")
    sha_b = __import__("hashlib").sha256(b"other").hexdigest()
    assert ds.stem_for("x", a.image_sha256) == "x"
    assert ds.stem_for("x", sha_b) == f"x-{sha_b[:8]}"
    assert ds.stem_for("../evil name") == "evil_name"


def test_a_torn_last_line_is_ignored_on_read_and_repaired_on_write(tmp_path):
    ds = CorrectionsDataset(tmp_path)
    ds.save(rgb(), square(2, 8), stem="a", status="accepted")
    with open(tmp_path / "manifest.jsonl", "ab") as fh:
        fh.write(b'{"format_version": 1, "stem": "a", "vers')  # a write cut short
    assert ds.get("a").version == 1
    assert read_manifest(tmp_path / "manifest.jsonl")[1] is True
    ds.save(rgb(1), square(1, 2), stem="b", status="accepted")
    lines = manifest_lines(tmp_path)  # every line parses again
    assert [line["stem"] for line in lines] == ["a", "b"]


def test_a_corrupt_middle_line_is_skipped_with_a_warning(tmp_path):
    ds = CorrectionsDataset(tmp_path)
    ds.save(rgb(), square(2, 8), stem="a", status="accepted")
    with open(tmp_path / "manifest.jsonl", "ab") as fh:
        fh.write(b"garbage\n")
    ds.save(rgb(1), square(1, 2), stem="b", status="accepted")
    with pytest.warns(UserWarning, match="line 2 skipped"):
        assert sorted(ds.latest()) == ["a", "b"]


def test_mask_file_ahead_of_its_record_serves_the_recorded_version(tmp_path):
    """A save killed between writing the mask and appending its record."""
    ds = CorrectionsDataset(tmp_path)
    ds.save(rgb(), square(2, 8), stem="a", status="accepted")
    ds.save(mask=square(2, 10), stem="a", status="corrected")
    # simulate the kill of a third save: history written, mask replaced, no record
    (tmp_path / "history" / "a" / "2.png").write_bytes((tmp_path / "masks" / "a.png").read_bytes())
    Image.fromarray(square(0, 20) * 255).save(tmp_path / "masks" / "a.png")
    np.testing.assert_array_equal(ds.load_mask("a"), square(2, 10))
    assert ds.repair() == {"masks_restored": 1, "skipped": []}
    np.testing.assert_array_equal(decode_mask((tmp_path / "masks" / "a.png").read_bytes()), square(2, 10))
    unconfirmed = list((tmp_path / "history" / "a").glob("unconfirmed-3-*.png"))
    assert len(unconfirmed) == 1  # the interrupted save's mask is not thrown away either
    np.testing.assert_array_equal(decode_mask(unconfirmed[0].read_bytes()), square(0, 20))


def test_a_first_save_cut_short_before_its_record_is_offered_back_and_never_written_over(tmp_path):
    """A new item's save killed after its mask (or its record's line torn): the manifest has no
    record of it, its mask file is in masks/. Review offers it back; the next save keeps it."""
    ds = CorrectionsDataset(tmp_path)
    ds.save(rgb(), square(2, 8), stem="a", status="accepted")
    ds.save(rgb(1), square(1, 12), stem="b", status="corrected")
    data = (tmp_path / "manifest.jsonl").read_bytes()
    (tmp_path / "manifest.jsonl").write_bytes(data[:-40])  # b's line torn
    assert ds.get("b") is None
    mask, path = ds.unconfirmed_mask("b")
    np.testing.assert_array_equal(mask, square(1, 12))
    assert path == tmp_path / "masks" / "b.png"
    assert ds.unconfirmed_mask("a") is None  # a's file is its record's
    assert ds.unconfirmed_mask("c") is None

    ds.save(rgb(1), square(1, 3), stem="b", status="accepted")  # the network's mask, accepted over it
    kept = list((tmp_path / "history" / "b").glob("unconfirmed-1-*.png"))
    assert len(kept) == 1
    np.testing.assert_array_equal(decode_mask(kept[0].read_bytes()), square(1, 12))
    assert ds.unconfirmed_mask("b") is None  # now the record's own


def test_a_second_save_cut_short_is_offered_back_too(tmp_path):
    ds = CorrectionsDataset(tmp_path)
    ds.save(rgb(), square(2, 8), stem="a", status="accepted")
    (tmp_path / "history" / "a").mkdir(parents=True)
    (tmp_path / "history" / "a" / "1.png").write_bytes((tmp_path / "masks" / "a.png").read_bytes())
    Image.fromarray(square(0, 20) * 255).save(tmp_path / "masks" / "a.png")
    mask, _ = ds.unconfirmed_mask("a")
    np.testing.assert_array_equal(mask, square(0, 20))
    np.testing.assert_array_equal(ds.load_mask("a"), square(2, 8))  # the record's own is what loads


def test_format_0_plain_folder_is_read_and_migrated_on_first_save(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    for name in ("p1", "p2"):
        Image.fromarray(rgb()).save(tmp_path / "images" / f"{name}.jpg")
    Image.fromarray(square(2, 8) * 255).save(tmp_path / "masks" / "p1.png")
    Image.fromarray(square(3, 9) * 255).save(tmp_path / "masks" / "p2.jpg", quality=90)  # old JPEG mask
    ds = CorrectionsDataset(tmp_path)
    assert ds.format_version() == 0
    assert [(r.stem, r.status, r.version) for r in ds.items()] == [("p1", "accepted", 1), ("p2", "accepted", 1)]
    np.testing.assert_array_equal(ds.load_mask("p1"), square(2, 8))
    np.testing.assert_array_equal(ds.load_mask("p2"), square(3, 9))
    assert not (tmp_path / "manifest.jsonl").exists()  # reading never writes

    ds.save(mask=square(2, 12), stem="p2", status="corrected")
    assert ds.format_version() == FORMAT_VERSION
    lines = manifest_lines(tmp_path)
    assert [(line["stem"], line["version"]) for line in lines] == [("p1", 1), ("p2", 1), ("p2", 2)]
    assert lines[0]["migrated_from_format"] == 0 and lines[0]["mask_sha256"]
    np.testing.assert_array_equal(ds.load_mask("p2"), square(2, 12))
    np.testing.assert_array_equal(ds.load_version("p2", 1), square(3, 9))  # the JPEG mask kept in history
    assert not (tmp_path / "masks" / "p2.jpg").exists()


def test_manifest_without_format_version_is_read_and_extended(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    Image.fromarray(rgb()).save(tmp_path / "images" / "old.png")
    Image.fromarray(square(2, 8) * 255).save(tmp_path / "masks" / "old.png")
    old_lines = [
        {"stem": "old", "status": "corrected", "reviewer": "bob", "legacy_field": 1},
        {"mask": "masks/old.png", "status": "approved"},  # no stem, an unknown status name
    ]
    (tmp_path / "manifest.jsonl").write_text("".join(json.dumps(line) + "\n" for line in old_lines))
    ds = CorrectionsDataset(tmp_path)
    records = ds.records()
    assert [r.version for r in records] == [1, 2]
    assert records[0].format_version == 0 and records[0].extra == {"legacy_field": 1}
    current = ds.get("old")
    assert current.status == "accepted" and current.extra["original_status"] == "approved"
    image, mask, _ = ds.load("old")
    np.testing.assert_array_equal(mask, square(2, 8))
    new = ds.save(mask=square(1, 3), stem="old", status="corrected")
    assert new.version == 3 and new.format_version == FORMAT_VERSION
    np.testing.assert_array_equal(ds.load_version("old", 2), square(2, 8))


def test_records_from_a_newer_writer_keep_their_unknown_fields(tmp_path):
    ds = CorrectionsDataset(tmp_path)
    ds.save(rgb(), square(2, 8), stem="a", status="accepted", tool="other-app")
    (line,) = manifest_lines(tmp_path)
    assert line["tool"] == "other-app"
    line["format_version"] = 99
    line["new_thing"] = [1, 2]
    (tmp_path / "manifest.jsonl").write_text(json.dumps(line) + "\n")
    record = ds.get("a")
    assert record.format_version == 99 and record.extra["new_thing"] == [1, 2]
    np.testing.assert_array_equal(ds.load_mask("a"), square(2, 8))


def test_invalid_saves_are_refused_before_anything_is_written(tmp_path):
    ds = CorrectionsDataset(tmp_path / "ds")
    with pytest.raises(ValueError, match="status"):
        ds.save(rgb(), square(1, 2), stem="a", status="done")
    with pytest.raises(ValueError, match="2-D"):
        ds.save(rgb(), np.zeros((2, 3, 4)), stem="a")
    with pytest.raises(ValueError, match="needs its image"):
        ds.save(mask=square(1, 2), stem="a")
    with pytest.raises(ValueError, match="differ in shape"):
        ds.save(rgb(), square(1, 2), stem="a", predicted=np.zeros((3, 3)))
    assert ds.items() == []
    assert not (tmp_path / "ds" / "masks").exists()
