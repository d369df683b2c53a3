"""The corrections store under hostile and careless input (issue 25): each case loses nothing,
touches no file outside the dataset nor any file of another item, and is one clear message
naming the file and the problem, never a traceback."""
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from napari_polyp.cli import main
from napari_polyp.corrections import CorrectionsDataset
from napari_polyp.corrections import manifest as M
from napari_polyp.corrections.dataset import DatasetError
from napari_polyp.corrections.export import ExportError, export
from napari_polyp.corrections.review import ReviewSession
from napari_polyp.training.data import find_pairs

from .test_manifest_safety import file_activity, snapshot

pytest.importorskip("pycocotools")

SHAPE = (20, 24)
WRITES = ("os.remove", "os.rename", "os.truncate", "os.mkdir")


def rgb(seed=0, shape=SHAPE):
    return np.random.default_rng(seed).integers(0, 256, (*shape, 3), dtype=np.uint8)


def square(r0, r1, shape=SHAPE):
    mask = np.zeros(shape, np.uint8)
    mask[r0:r1, 4:10] = 1
    return mask


def append_lines(root: Path, *lines) -> None:
    with open(root / "manifest.jsonl", "a", encoding="utf-8") as fh:
        for line in lines:
            fh.write((line if isinstance(line, str) else json.dumps(line)) + "\n")


def records_of(root: Path, stem: str):
    return [json.loads(line) for line in (root / "manifest.jsonl").read_text().splitlines()
            if json.loads(line).get("stem") == stem]


def written(seen, root: Path):
    """The files removed, renamed over, truncated or created by the block, relative to ``root``."""
    out = set()
    for event, path in seen:
        if event in WRITES:
            try:
                out.add(Path(path).resolve().relative_to(root.resolve()).as_posix())
            except ValueError:
                out.add(path)
    return out


@pytest.fixture
def dataset(tmp_path):
    ds = CorrectionsDataset(tmp_path / "ds")
    ds.save(rgb(1), square(2, 8), stem="a", status="accepted", note="=HYPERLINK(\"http://x\")")
    ds.save(rgb(2), square(3, 9), stem="b", status="corrected", note="+1")
    ds.save(rgb(3), square(1, 4), stem="c", status="rejected")
    return ds


# --------------------------------------------------------------------------- 1. exports onto the dataset


@pytest.mark.parametrize("fmt", ["csv", "coco"])
@pytest.mark.parametrize("target", ["manifest.jsonl", "masks/a.png", "images/b.png", "history", "."])
def test_an_export_onto_the_dataset_is_refused_and_changes_nothing(dataset, fmt, target):
    before = snapshot(dataset.root)
    with pytest.raises(ExportError, match="inside the dataset"):
        export(dataset.root, fmt, dataset.root / target)
    assert snapshot(dataset.root) == before
    assert len(dataset.items()) == 3


def test_an_export_through_a_link_into_the_dataset_is_refused(dataset, tmp_path):
    (tmp_path / "out.json").symlink_to(dataset.root / "manifest.jsonl")
    before = snapshot(dataset.root)
    with pytest.raises(ExportError, match="inside the dataset"):
        export(dataset.root, "coco", tmp_path / "out.json")
    assert snapshot(dataset.root) == before


def test_the_cli_refuses_an_export_onto_the_manifest_in_one_line(dataset, capsys):
    code = main(["export", "--data", str(dataset.root), "--format", "csv", "--out",
                 str(dataset.root / "manifest.jsonl"), "--overwrite"])
    err = capsys.readouterr().err
    assert code == 2 and "manifest.jsonl" in err and "inside the dataset" in err and "Traceback" not in err
    assert len(CorrectionsDataset(dataset.root).items()) == 3


def test_an_existing_file_is_replaced_only_with_overwrite(dataset, tmp_path, capsys):
    out = tmp_path / "mine.json"
    out.write_text("a file of the user's")
    with pytest.raises(ExportError, match="already exists"):
        export(dataset.root, "coco", out)
    assert out.read_text() == "a file of the user's"
    assert main(["export", "--data", str(dataset.root), "--format", "coco", "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err and out.read_text() == "a file of the user's"
    assert main(["export", "--data", str(dataset.root), "--format", "coco", "--out", str(out), "--overwrite"]) == 0
    assert len(json.loads(out.read_text())["images"]) == 2


def test_nnunet_into_a_file_is_one_message(dataset, tmp_path, capsys):
    out = tmp_path / "a-file"
    out.write_text("x")
    assert main(["export", "--data", str(dataset.root), "--format", "nnunet", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "is a file" in err and str(out) in err and "Traceback" not in err
    assert out.read_text() == "x"


def test_nnunet_reexport_needs_overwrite_and_then_keeps_no_stale_case(dataset, tmp_path):
    first = export(dataset.root, "nnunet", tmp_path / "raw")
    folder = Path(first["out"])
    (folder / "imagesTs").mkdir()
    (folder / "imagesTs" / "t_0000.png").write_bytes(b"test case: not ours to remove")
    (folder / "labelsTr" / "notes.txt").write_text("the user's")
    with pytest.raises(ExportError, match="already holds an nnU-Net dataset"):
        export(dataset.root, "nnunet", tmp_path / "raw")
    dataset.set_status("b", "rejected")  # b must no longer be trained on
    second = export(dataset.root, "nnunet", tmp_path / "raw", overwrite=True)
    assert second["cases"] == 1 and second["stale_removed"] == 2
    assert sorted(p.name for p in (folder / "imagesTr").iterdir()) == ["a_0000.png"]
    assert sorted(p.name for p in (folder / "labelsTr").iterdir()) == ["a.png", "notes.txt"]
    assert (folder / "imagesTs" / "t_0000.png").is_file()
    assert json.loads((folder / "dataset.json").read_text())["numTraining"] == 1


def test_an_nnunet_folder_holding_the_dataset_is_refused(tmp_path):
    ds = CorrectionsDataset(tmp_path / "Dataset501_Polyp" / "corrections")
    ds.save(rgb(1), square(2, 8), stem="a", status="accepted")
    with pytest.raises(ExportError, match="holds the dataset"):
        export(ds.root, "nnunet", tmp_path, overwrite=True)


def test_csv_cells_a_spreadsheet_would_run_are_inert(dataset, tmp_path):
    import csv

    export(dataset.root, "csv", tmp_path / "items.csv")
    with open(tmp_path / "items.csv", newline="") as fh:
        notes = {row["stem"]: row["note"] for row in csv.DictReader(fh)}
    assert notes["a"] == "'=HYPERLINK(\"http://x\")" and notes["b"] == "'+1" and notes["c"] == ""


def test_reviews_csv_table_is_inert_too(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    Image.fromarray(rgb(1)).save(folder / "-2+3.png")
    session = ReviewSession(folder, tmp_path / "ds")
    session.save(0, None, square(2, 8), status="corrected", note="@SUM(A1)")
    text = session.write_table_csv(tmp_path / "table.csv").read_text()
    assert "'-2+3.png" in text and "'@SUM(A1)" in text


# --------------------------------------------------------------------------- 2. a record naming another item's file


def test_a_record_naming_another_items_mask_never_costs_that_item_its_mask(dataset):
    root = dataset.root
    b_mask = (root / "masks" / "b.png").read_bytes()
    forged = {**records_of(root, "a")[-1], "version": 2, "mask": "masks/b.png", "mask_sha256": "",
              "image": "images/b.png"}
    append_lines(root, forged)
    with file_activity() as seen:
        dataset.save(mask=square(0, 3), stem="a", status="corrected")
        report = dataset.repair()
        dataset.set_status("a", "accepted")
    assert (root / "masks" / "b.png").read_bytes() == b_mask
    np.testing.assert_array_equal(dataset.load_mask("b"), square(3, 9))
    np.testing.assert_array_equal(dataset.load_mask("a"), square(0, 3))
    touched = written(seen, root)
    assert not any("/b." in path or path.endswith("/b") for path in touched), touched
    assert report["skipped"] == []


def test_a_record_naming_another_items_mask_is_not_restored_over_it_by_repair(dataset):
    root = dataset.root
    b_mask = (root / "masks" / "b.png").read_bytes()
    forged = {**records_of(root, "a")[-1], "version": 2, "mask": "masks/b.png",
              "mask_sha256": records_of(root, "a")[-1]["mask_sha256"]}  # says b.png should hold a's mask
    append_lines(root, forged)
    assert dataset.repair()["masks_restored"] == 0
    assert (root / "masks" / "b.png").read_bytes() == b_mask


# --------------------------------------------------------------------------- 3. versions going backwards


def test_versions_going_backwards_never_overwrite_a_history_file(dataset):
    root = dataset.root
    for top in range(4, 8):
        dataset.save(mask=square(0, top), stem="a", status="corrected")  # versions 2..5
    kept = {p.name: p.read_bytes() for p in (root / "history" / "a").iterdir()}
    assert sorted(kept) == ["1.png", "2.png", "3.png", "4.png"]
    append_lines(root, records_of(root, "a")[1])  # a merged manifest: version 2 is current again
    assert dataset.get("a").version == 2
    for top in (12, 13, 14):
        record = dataset.save(mask=square(0, top), stem="a", status="corrected")
    assert record.version == 8  # above every version the item ever had (5, then 6 and 7 from these saves)
    for name, data in kept.items():
        assert (root / "history" / "a" / name).read_bytes() == data, name
    assert [v for v, _ in dataset.history("a")] == [1, 2, 3, 4, 5, 6, 7]
    np.testing.assert_array_equal(dataset.load_version("a", 5), square(0, 7))  # the mask the line hid: kept
    np.testing.assert_array_equal(dataset.load_version("a", 6), square(0, 12))


def test_a_version_number_taken_by_other_bytes_keeps_both(dataset):
    import hashlib

    root = dataset.root
    dataset.save(mask=square(0, 5), stem="a", status="corrected")  # history/a/1.png
    original = (root / "history" / "a" / "1.png").read_bytes()
    # a merged manifest: a second version 1, made elsewhere with another mask
    Image.fromarray(square(10, 12) * 255).save(root / "masks" / "a.png")
    sha = hashlib.sha256((root / "masks" / "a.png").read_bytes()).hexdigest()
    append_lines(root, {**records_of(root, "a")[0], "mask_sha256": sha})
    assert dataset.save(mask=square(0, 6), stem="a", status="corrected").version == 3
    assert (root / "history" / "a" / "1.png").read_bytes() == original
    [second] = [p for p in (root / "history" / "a").iterdir() if p.name.startswith("1-")]
    np.testing.assert_array_equal(np.asarray(Image.open(second)) > 0, square(10, 12) > 0)


# --------------------------------------------------------------------------- 5. one line nested deep or very long


@pytest.mark.parametrize("bad_line", [
    '{"stem": "deep", "x": ' + "[" * 5000 + "]" * 5000 + "}",
    '{"stem": "deep", "x": ' + '{"a": ' * 3000 + "1" + "}" * 3000 + "}",
    json.dumps({"stem": "long", "note": "x" * (M.MAX_LINE_BYTES + 1)}),
], ids=["5000-deep-list", "3000-deep-object", "long"])
def test_one_deep_or_long_line_is_skipped_with_one_warning_and_blocks_nothing(dataset, tmp_path, bad_line):
    append_lines(dataset.root, bad_line)
    with pytest.warns(UserWarning, match="line 4 skipped") as caught:
        assert [r.stem for r in CorrectionsDataset(dataset.root).items()] == ["a", "b", "c"]
    assert sum("skipped" in str(w.message) for w in caught) == 1
    assert "nested more than" in str(caught[0].message) or "bytes long" in str(caught[0].message)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert [p.stem for p in find_pairs(dataset.root)] == ["a", "b"]
        for fmt in ("coco", "csv", "nnunet"):
            export(dataset.root, fmt, tmp_path / f"out-{fmt}")
        assert dataset.save(mask=square(0, 2), stem="a", status="corrected").version == 2
        assert dataset.repair()["skipped"] == []
        images = tmp_path / "images"
        images.mkdir()
        Image.fromarray(rgb(1)).save(images / "a.png")
        assert ReviewSession(images, dataset.root).status(0) == "corrected"


def test_json_constants_and_odd_types_are_skipped_not_raised(dataset):
    good = records_of(dataset.root, "a")[0]
    append_lines(dataset.root,
                 '{"stem": "nan", "format_version": NaN}', '{"stem": "inf", "threshold": Infinity}',
                 {**good, "version": 10 ** 30}, {**good, "version": -4}, {**good, "version": True},
                 '{"stem": ' + "9" * 5000 + "}", '[1, 2]', '"text"', '{"stem": ["x"]}')
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        latest = dataset.latest()
    assert sorted(latest) == ["a", "b", "c"]
    assert latest["a"].version == 4  # three records of a without a usable version: their place in order
    assert latest["a"].extra["original_version"] is True


# --------------------------------------------------------------------------- 6. one bad item


@pytest.fixture
def with_bad_items(dataset):
    root = dataset.root
    (root / "masks" / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a PNG")  # undecodable
    long_path = "images/" + "x" * 300 + ".png"  # Errno 36 when opened
    append_lines(root, {**records_of(root, "a")[0], "stem": "long", "image": long_path, "mask": "masks/a.png"},
                 {**records_of(root, "a")[0], "stem": "longname", "version": 1, "image": "images/x.png",
                  "mask": "masks/" + "ü" * 200 + ".png"})
    return dataset


def test_one_bad_item_is_skipped_by_every_export_and_named(with_bad_items, tmp_path, capsys):
    ds = with_bad_items
    summary = export(ds.root, "coco", tmp_path / "c.json")
    assert summary["images"] == 1 and len(summary["skipped"]) == 1 and summary["skipped"][0].startswith("b: ")
    assert "cannot be decoded" in summary["skipped"][0]
    assert export(ds.root, "nnunet", tmp_path / "n")["cases"] == 1
    code = main(["export", "--data", str(ds.root), "--format", "nnunet", "--out", str(tmp_path / "n2")])
    err = capsys.readouterr().err
    assert code == 1 and "skipped 1 item(s)" in err and "b.png" in err and "Traceback" not in err


def test_a_name_no_file_system_stores_is_skipped_when_read_with_a_warning(with_bad_items):
    with pytest.warns(UserWarning, match="longer than 255 bytes") as caught:
        stems = sorted(CorrectionsDataset(with_bad_items.root).latest())
    assert stems == ["a", "b", "c"]
    assert sum("skipped" in str(w.message) for w in caught) == 2


def test_repair_goes_on_past_an_item_it_cannot_write(dataset, monkeypatch):
    """Disk full on one item's mask: that item is named, the next one is still repaired."""
    from napari_polyp.corrections import dataset as D

    for stem in ("a", "b", "c"):  # each mask file one step ahead of its record: a save killed after
        (dataset.root / "history" / stem).mkdir(parents=True)  # keeping the recorded mask in history
        (dataset.root / "history" / stem / "1.png").write_bytes((dataset.root / "masks" / f"{stem}.png").read_bytes())
        Image.fromarray(square(0, 20) * 255).save(dataset.root / "masks" / f"{stem}.png")
    real = D.atomic_write_bytes

    def disk_full_for_b(path, data):
        if Path(path).name == "b.png" and Path(path).parent.name == "masks":
            raise OSError(28, "No space left on device", str(path))
        return real(path, data)

    monkeypatch.setattr(D, "atomic_write_bytes", disk_full_for_b)
    report = dataset.repair()
    assert report["masks_restored"] == 2 and len(report["skipped"]) == 1
    assert report["skipped"][0].startswith("b: ") and "No space left" in report["skipped"][0]
    np.testing.assert_array_equal(dataset.load_mask("c"), square(1, 4))


# --------------------------------------------------------------------------- 8. sizes


def test_a_mask_of_another_size_is_refused_by_name_at_save(dataset, tmp_path):
    with pytest.raises(DatasetError, match="the mask is 300x200 pixels but its image"):
        dataset.save(rgb(5), np.ones((200, 300), np.uint8), stem="big", status="accepted")
    with pytest.raises(DatasetError, match=r"images/a.png is 24x20"):
        dataset.save(mask=np.ones((200, 300), np.uint8), stem="a", status="corrected")
    assert "big" not in dataset and dataset.get("a").version == 1
    assert not (dataset.root / "images" / "big.png").exists()


def test_a_mask_of_another_size_in_the_dataset_is_refused_by_name_on_read(dataset, tmp_path):
    Image.fromarray(np.full((130, 130), 255, np.uint8)).save(dataset.root / "masks" / "a.png")
    append_lines(dataset.root, {**records_of(dataset.root, "a")[0], "version": 2, "mask_sha256": ""})
    with pytest.raises(DatasetError, match="masks/a.png: the mask is 130x130 pixels but its image"):
        dataset.load("a")
    summary = export(dataset.root, "coco", tmp_path / "c.json")
    assert summary["images"] == 1 and "130x130" in summary["skipped"][0]


def test_a_small_tiff_announcing_a_huge_image_is_refused_before_decoding(dataset, tmp_path):
    import tifffile

    from napari_polyp.errors import InputFileError
    from napari_polyp.io.images import MAX_IMAGE_PIXELS, read_image
    from napari_polyp.io.masks import read_mask

    bomb = tmp_path / "bomb.tif"
    tile = np.zeros((1024, 1024), np.uint8)
    with tifffile.TiffWriter(bomb) as tif:  # 30000 x 30000 zeros, compressed to about a megabyte
        tif.write((tile for _ in range(30 * 30)), shape=(30000, 30000), dtype=np.uint8, tile=(1024, 1024),
                  compression="zlib")
    assert bomb.stat().st_size < 10 * 2**20 and 30000 * 30000 > MAX_IMAGE_PIXELS
    for reader in (read_image, read_mask):
        with pytest.raises(InputFileError, match="30000x30000 pixels, more than"):
            reader(bomb)
    (dataset.root / "masks" / "b.png").unlink()
    (dataset.root / "masks" / "b.tif").write_bytes(bomb.read_bytes())
    append_lines(dataset.root, {**records_of(dataset.root, "b")[0], "version": 2, "mask": "masks/b.tif",
                                "mask_sha256": ""})
    summary = export(dataset.root, "coco", tmp_path / "c.json")
    assert summary["images"] == 1 and "30000x30000" in summary["skipped"][0]


# --------------------------------------------------------------------------- 9. cost of a save


def test_a_save_reads_only_what_was_appended_since_the_last_read(dataset, monkeypatch):
    line = json.dumps(records_of(dataset.root, "c")[0])
    with open(dataset.root / "manifest.jsonl", "a") as fh:
        for i in range(2000):
            fh.write(line.replace('"stem": "c"', f'"stem": "s{i}"') + "\n")
    assert len(dataset.items()) == 2003
    parsed = []
    real = M.record_from_json
    monkeypatch.setattr(M, "record_from_json", lambda *a: parsed.append(1) or real(*a))
    for top in range(4, 9):
        dataset.save(mask=square(0, top), stem="a", status="corrected")
        dataset.items()
    assert len(parsed) == 5  # one line per save: its own record
    append_lines(dataset.root, line.replace('"stem": "c"', '"stem": "late"'))  # another process's save
    assert "late" in dataset.latest() and len(parsed) == 6


def test_the_index_is_rebuilt_when_the_manifest_is_replaced_or_rewritten(dataset):
    assert len(dataset.items()) == 3
    path = dataset.root / "manifest.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:2]))  # shortened (a restore from a backup)
    assert [r.stem for r in dataset.items()] == ["a", "b"]
    rewritten = "".join(lines[:2]).replace('"note": "+1"', '"note": "+2"')  # same size, edited in place
    with open(path, "r+") as fh:
        fh.write(rewritten)
    assert dataset.get("b").note == "+2"
    tmp = path.with_name("new.jsonl")
    tmp.write_text("".join(lines))  # replaced by another file
    tmp.replace(path)
    assert [r.stem for r in dataset.items()] == ["a", "b", "c"]


# --------------------------------------------------------------------------- smaller


def test_a_lock_file_that_is_a_link_is_removed_not_followed(dataset, tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("keep me")
    lock = dataset.root / ".manifest.lock"
    lock.unlink(missing_ok=True)
    lock.symlink_to(outside)
    fresh = CorrectionsDataset(dataset.root)
    with pytest.warns(UserWarning, match="was a symbolic link"):
        assert fresh.save(mask=square(0, 2), stem="a", status="corrected").version == 2
    assert outside.read_text() == "keep me" and not lock.is_symlink()
    lock.unlink(missing_ok=True)
    lock.symlink_to(lock)  # a loop: Errno 40 before
    assert fresh.save(mask=square(0, 3), stem="a", status="corrected").version == 3


def test_format_0_pairs_whose_names_clean_alike_are_named_not_hidden(tmp_path):
    root = tmp_path / "v0"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for name in ("a b", "a_b", "a?b"):
        Image.fromarray(rgb(1)).save(root / "images" / f"{name}.png")
        Image.fromarray(square(2, 8) * 255).save(root / "masks" / f"{name}.png")
    with pytest.warns(UserWarning, match="cleans to the item name 'a_b'") as caught:
        items = CorrectionsDataset(root).items()
    assert len(items) == 1 and sum("left out" in str(w.message) for w in caught) == 2


# --------------------------------------------------------------------------- nothing outside, nothing of another item


def test_hostile_cases_touch_nothing_outside_and_nothing_of_another_item(dataset, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.png").write_bytes(b"x")
    before_outside = snapshot(outside)
    root = dataset.root
    b_files = {p: p.read_bytes() for p in root.rglob("*") if p.is_file() and "b" in p.relative_to(root).parts[-1][:1]}
    append_lines(root,
                 {**records_of(root, "a")[-1], "version": 2, "mask": "masks/b.png", "mask_sha256": ""},
                 {**records_of(root, "a")[-1], "version": 1},
                 '{"stem": "deep", "x": ' + "[" * 5000 + "]" * 5000 + "}")
    with warnings.catch_warnings(), file_activity() as seen:
        warnings.simplefilter("ignore")
        for step in range(3):
            dataset.save(mask=square(0, 4 + step), stem="a", status="corrected")
        dataset.repair()
        find_pairs(root)
        export(root, "coco", tmp_path / "out" / "c.json")
        export(root, "nnunet", tmp_path / "out", overwrite=True)
        export(root, "csv", tmp_path / "out" / "t.csv")
    for event, path in seen:
        resolved = Path(path).resolve()
        assert resolved.is_relative_to(root.resolve()) or resolved.is_relative_to((tmp_path / "out").resolve()) \
            or not resolved.is_relative_to(tmp_path.resolve()), (event, path)
    assert snapshot(outside) == before_outside
    for path, data in b_files.items():
        assert path.read_bytes() == data, path


def test_the_training_pairs_leave_out_one_bad_item_with_a_warning(with_bad_items):
    with pytest.warns(UserWarning, match="'b' left out of training: .*b.png.*cannot be decoded"):
        pairs = find_pairs(with_bad_items.root)
    assert [p.stem for p in pairs] == ["a"]
