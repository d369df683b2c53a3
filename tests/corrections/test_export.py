"""Exports round-trip: COCO decodes to the masks, nnU-Net's layout and 0/1 labels, the CSV's columns."""
import csv
import json

import numpy as np
import pytest
from PIL import Image

from napari_polyp.cli import main
from napari_polyp.corrections import CorrectionsDataset
from napari_polyp.corrections.export import CSV_COLUMNS, ExportError, export, rle_decode

pytest.importorskip("pycocotools")


def _image(seed):
    return np.random.default_rng(seed).integers(0, 256, (30, 40, 3), dtype=np.uint8)


def _mask(kind):
    mask = np.zeros((30, 40), np.uint8)
    if kind == "two":
        mask[2:10, 3:12] = 1
        mask[20:28, 25:39] = 1
    elif kind == "one":
        mask[5:25, 10:30] = 1
    return mask


@pytest.fixture
def dataset(tmp_path):
    ds = CorrectionsDataset(tmp_path / "ds")
    ds.save(_image(0), _mask("two"), stem="a", status="corrected", predicted=_mask("one"), reviewer="alice")
    ds.save(_image(1), _mask("one"), stem="b", status="accepted", predicted=_mask("one"), reviewer="bob")
    ds.save(_image(2), _mask("empty"), stem="c", status="corrected", reviewer="alice")
    ds.save(_image(3), _mask("one"), stem="d", status="rejected", reviewer="alice")
    return ds


def test_coco_decodes_to_the_masks(dataset, tmp_path):
    summary = export(dataset.root, "coco", tmp_path / "coco.json")
    data = json.loads((tmp_path / "coco.json").read_text())
    assert summary["images"] == 3 and summary["annotations"] == 3  # a: 2 objects, b: 1, c: none
    assert [im["stem"] for im in data["images"]] == ["a", "b", "c"]  # rejected d is left out
    for image in data["images"]:
        assert (dataset.root / image["file_name"]).is_file()
        union = np.zeros((image["height"], image["width"]), np.uint8)
        for ann in (a for a in data["annotations"] if a["image_id"] == image["id"]):
            decoded = rle_decode(ann["segmentation"])
            assert ann["area"] == decoded.sum() and ann["iscrowd"] == 0 and ann["category_id"] == 1
            x, y, w, h = ann["bbox"]
            assert decoded[int(y):int(y + h), int(x):int(x + w)].sum() == ann["area"]
            union |= decoded
        np.testing.assert_array_equal(union, dataset.load_mask(image["stem"]))
    from pycocotools.coco import COCO  # the reference reader loads it too

    coco = COCO(str(tmp_path / "coco.json"))
    np.testing.assert_array_equal(coco.annToMask(coco.loadAnns(coco.getAnnIds(imgIds=[1]))[0])
                                  | coco.annToMask(coco.loadAnns(coco.getAnnIds(imgIds=[1]))[1]), _mask("two"))


def test_nnunet_layout_and_labels(dataset, tmp_path):
    summary = export(dataset.root, "nnunet", tmp_path / "raw", dataset_id=7, name="Kvasir fix")
    folder = tmp_path / "raw" / "Dataset007_Kvasirfix"
    assert summary["out"] == str(folder) and summary["cases"] == 3
    meta = json.loads((folder / "dataset.json").read_text())
    assert meta["channel_names"] == {"0": "R", "1": "G", "2": "B"} and meta["file_ending"] == ".png"
    assert meta["labels"] == {"background": 0, "polyp": 1} and meta["numTraining"] == 3
    assert sorted(p.name for p in (folder / "imagesTr").iterdir()) == ["a_0000.png", "b_0000.png", "c_0000.png"]
    assert sorted(p.name for p in (folder / "labelsTr").iterdir()) == ["a.png", "b.png", "c.png"]
    for stem in "abc":
        image = np.asarray(Image.open(folder / "imagesTr" / f"{stem}_0000.png"))
        label = np.asarray(Image.open(folder / "labelsTr" / f"{stem}.png"))
        assert image.shape == (30, 40, 3) and label.shape == (30, 40) and set(np.unique(label)) <= {0, 1}
        np.testing.assert_array_equal(label, dataset.load_mask(stem))
        np.testing.assert_array_equal(image, dataset.load_image(stem))


def test_csv_has_the_columns_and_every_item(dataset, tmp_path):
    export(dataset.root, "csv", tmp_path / "items.csv")
    with open(tmp_path / "items.csv", newline="") as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames) == CSV_COLUMNS
        rows = {row["stem"]: row for row in reader}
    assert sorted(rows) == ["a", "b", "c", "d"]
    assert rows["b"]["dice_vs_prediction"] == "1.0" and rows["b"]["pixels_changed"] == "0"
    assert 0 < float(rows["a"]["dice_vs_prediction"]) < 1 and rows["a"]["reviewer"] == "alice"
    assert rows["c"]["dice_vs_prediction"] == "" and rows["d"]["status"] == "rejected"  # no prediction: empty


def test_an_empty_dataset_is_a_message(tmp_path, capsys):
    ds = CorrectionsDataset(tmp_path / "ds")
    ds.save(_image(0), _mask("one"), stem="x", status="rejected")
    with pytest.raises(ExportError, match="nothing to export"):
        export(ds.root, "coco", tmp_path / "c.json")
    assert main(["export", "--data", str(ds.root), "--format", "nnunet", "--out", str(tmp_path / "n")]) == 2
    assert "nothing to export" in capsys.readouterr().err and not (tmp_path / "n").exists()
    (tmp_path / "empty").mkdir()
    assert main(["export", "--data", str(tmp_path / "empty"), "--format", "csv", "--out", str(tmp_path / "e.csv")]) == 2
    assert "nothing to export" in capsys.readouterr().err
    assert main(["export", "--data", str(ds.root), "--format", "csv", "--status", "done",
                 "--out", str(tmp_path / "e.csv")]) == 2
    assert "unknown status 'done'" in capsys.readouterr().err


def test_cli_writes_coco(dataset, tmp_path, capsys):
    assert main(["export", "--data", str(dataset.root), "--format", "coco", "--out", str(tmp_path),
                 "--status", "corrected"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["out"] == str(tmp_path / "export.json") and summary["images"] == 2
