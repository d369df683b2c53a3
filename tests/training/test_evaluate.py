"""`evaluate` reads masks by the product's one rule, says when a mask's size differs from its
image, and skips (or, with --strict, stops at) a pair it cannot read."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

import models
from napari_polyp.cli import main
from napari_polyp.training.evaluate import evaluate


def blob(shape=(40, 48)):
    mask = np.zeros(shape, np.uint8)
    mask[8:30, 10:36] = 1
    return mask


@pytest.fixture
def all_lesion(tmp_path):
    """A checkpoint that calls every pixel lesion: Dice = 2|T| / (|T| + N), never 0 on a real mask."""
    model = models.create_model("microaunet", checkpoint=False)
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.fill_(5.0)
    path = tmp_path / "all-lesion.pt"
    models.save_checkpoint(model, path, architecture="microaunet")
    return str(path)


def folder(root, encoding, count=3):
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(count):
        image = np.random.default_rng(i).integers(0, 256, (40, 48, 3), dtype=np.uint8)
        Image.fromarray(image).save(root / "images" / f"s{i}.png")
        mask = np.roll(blob(), 3 * i, axis=1)
        if encoding == "0/1":
            Image.fromarray(mask).save(root / "masks" / f"s{i}.png")
        elif encoding == "0/255":
            Image.fromarray(mask * 255).save(root / "masks" / f"s{i}.png")
        else:
            Image.fromarray(mask * 255).save(root / "masks" / f"s{i}.jpg", quality=80)
    return root


def test_0_1_0_255_and_jpeg_masks_give_the_same_figures(tmp_path, all_lesion):
    results = {enc: evaluate("microaunet", folder(tmp_path / enc.replace("/", "-"), enc), checkpoint=all_lesion,
                             device="cpu") for enc in ("0/1", "0/255", "jpeg")}
    expected = 2 * blob().sum() / (blob().sum() + blob().size)
    for result in results.values():
        assert result["n"] == 3 and result["skipped"] == []
        assert result["dice"] == pytest.approx(expected, abs=1e-3)
        for key in ("dice", "iou", "precision", "recall"):
            assert result[key] == pytest.approx(results["0/255"][key], abs=1e-6)


def test_a_mask_of_another_size_is_named(tmp_path, all_lesion, capsys):
    root = folder(tmp_path / "d", "0/255")
    Image.fromarray(np.zeros((20, 24), np.uint8)).save(root / "masks" / "s1.png")
    result = evaluate("microaunet", root, checkpoint=all_lesion, device="cpu")
    err = capsys.readouterr().err
    assert result["resized"] == [str(root / "masks" / "s1.png")]
    assert "s1.png: mask is 24x20, its image s1.png is 48x40" in err


def test_an_unreadable_pair_is_skipped_and_the_exit_status_says_so(tmp_path, all_lesion, capsys):
    root = folder(tmp_path / "d", "0/255")
    (root / "masks" / "s1.png").write_text("not a png")
    args = ["evaluate", "--model", "microaunet", "--checkpoint", all_lesion, "--data", str(root), "--json",
            "--device", "cpu"]
    assert main(args) == 1
    captured = capsys.readouterr()
    result = json.loads(captured.out.strip().splitlines()[-1])
    assert result["n"] == 2 and result["skipped"][0]["file"] == str(root / "masks" / "s1.png")
    assert "skipped 1 file(s)" in captured.err and "Traceback" not in captured.err
    assert main(args + ["--strict"]) == 2
    assert "--strict" in capsys.readouterr().err


def test_each_image_is_scored_by_name_and_the_mean_is_theirs(tmp_path, all_lesion):
    data = folder(tmp_path / "d", "0/255", count=3)
    Image.fromarray(np.zeros((40, 48), np.uint8)).save(data / "masks" / "s1.png")  # an empty mask: Dice 0
    result = evaluate("microaunet", data, checkpoint=all_lesion, device="cpu")
    assert [row["stem"] for row in result["per_image"]] == ["s0", "s1", "s2"]
    assert result["per_image"][1]["dice"] == 0.0 and result["per_image"][0]["dice"] > 0.3
    assert result["dice"] == pytest.approx(np.mean([row["dice"] for row in result["per_image"]]), abs=1e-3)


def test_the_command_names_the_images_with_the_lowest_dice(tmp_path, all_lesion, capsys):
    root = folder(tmp_path / "d", "0/255")
    Image.fromarray(np.zeros((40, 48), np.uint8)).save(root / "masks" / "s2.png")  # nothing to find: Dice 0
    assert main(["evaluate", "--model", "microaunet", "--checkpoint", all_lesion, "--data", str(root),
                 "--device", "cpu"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].startswith("lowest dice: s2 0.000, ")
