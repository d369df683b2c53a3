"""`napari-polyp predict` on awkward batches: colliding names, a bad file among good ones, a bad --out."""
import json

import numpy as np
import pytest
from PIL import Image

import models
from napari_polyp.cli import main


@pytest.fixture
def checkpoint(tmp_path):
    path = tmp_path / "random.pt"
    models.save_checkpoint(models.create_model("microaunet", checkpoint=False), path, architecture="microaunet")
    return str(path)


def image(folder, name, seed=0):
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(folder / name)
    return folder / name


def predict(*args):
    return main(["predict", "--model", "microaunet", "--quiet", "--json", *args])


def last_json(capsys):
    captured = capsys.readouterr()
    return json.loads(captured.out.strip().splitlines()[-1]), captured.err


def test_same_stem_in_two_folders_is_refused_before_anything_is_written(tmp_path, checkpoint, capsys):
    first, second = image(tmp_path / "d1", "a.png", 1), image(tmp_path / "d2", "a.png", 2)
    out = tmp_path / "out"
    assert predict("--checkpoint", checkpoint, str(first.parent), str(second.parent), "--out", str(out)) == 2
    err = capsys.readouterr().err
    assert "would both write" in err and str(first) in err and str(second) in err
    assert "Traceback" not in err
    assert not out.exists() or list(out.iterdir()) == []


def test_a_file_named_twice_is_predicted_once(tmp_path, checkpoint, capsys):
    folder = tmp_path / "d"
    a = image(folder, "a.png")
    assert predict("--checkpoint", checkpoint, str(folder), str(a), "--out", str(tmp_path / "out")) == 0
    result, _ = last_json(capsys)
    assert result["written"] == 1


def test_an_unreadable_file_is_skipped_and_reported_at_the_end(tmp_path, checkpoint, capsys):
    folder = tmp_path / "d"
    image(folder, "a.png", 1)
    (folder / "b.png").write_text("not an image")
    image(folder, "c.png", 3)
    out = tmp_path / "out"
    assert predict("--checkpoint", checkpoint, str(folder), "--out", str(out)) == 1
    result, err = last_json(capsys)
    assert result["written"] == 2 and sorted(p.name for p in out.glob("*.png")) == ["a.png", "c.png"]
    assert [s["file"] for s in result["skipped"]] == [str(folder / "b.png")]
    assert "skipped 1 file(s)" in err and "b.png" in err and "Traceback" not in err


def test_strict_stops_at_the_first_unreadable_file(tmp_path, checkpoint, capsys):
    folder = tmp_path / "d"
    (folder).mkdir()
    (folder / "a.png").write_text("not an image")
    image(folder, "b.png")
    out = tmp_path / "out"
    assert predict("--checkpoint", checkpoint, str(folder), "--out", str(out), "--strict") == 2
    err = capsys.readouterr().err
    assert "--strict" in err and "a.png" in err
    assert not (out / "b.png").exists()


def test_out_naming_an_existing_file_is_a_clear_error(tmp_path, checkpoint, capsys):
    a = image(tmp_path / "d", "a.png")
    taken = tmp_path / "taken.png"
    taken.write_bytes(b"x")
    assert predict("--checkpoint", checkpoint, str(a), "--out", str(taken)) == 2
    err = capsys.readouterr().err
    assert "is a file" in err and str(taken) in err and "Traceback" not in err
    assert taken.read_bytes() == b"x"


def test_task_without_model_runs_the_tasks_best_network(tmp_path, capsys):
    a = image(tmp_path / "d", "a.png")
    assert main(["predict", "--task", "dermoscopy", "--quiet", "--json", str(a), "--out", str(tmp_path / "out")]) == 0
    result, err = last_json(capsys)
    assert result["model"] == models.default_model("dermoscopy") and result["written"] == 1
    assert "warning" not in err


def test_a_network_made_for_another_task_runs_with_a_warning(tmp_path, checkpoint, capsys):
    a = image(tmp_path / "d", "a.png")
    assert predict("--task", "dermoscopy", "--checkpoint", checkpoint, str(a), "--out", str(tmp_path / "out")) == 0
    result, err = last_json(capsys)
    assert result["written"] == 1
    assert "warning: --task names dermoscopy, but microaunet was made for colonoscopy images" in err


def test_an_unknown_network_is_named_with_the_choices(tmp_path, capsys):
    a = image(tmp_path / "d", "a.png")
    assert main(["predict", "--model", "unet", str(a), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "unknown model 'unet'" in err and "microaunet" in err and "Traceback" not in err
