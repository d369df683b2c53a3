"""Checkpoints cut into parts (what a lent GPU machine sends back) and joined again; checkpoints
too large for the wheel, found in the repository through large.json."""
import importlib.util
import json
import warnings
from pathlib import Path

import pytest

import models
import models.checkpoint as ckpt
from models.checkpoint import CheckpointError, file_sha256, join_parts, save_checkpoint, split_parts

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def checkpoint(tmp_path) -> Path:
    """A real MicroAUNet checkpoint (random weights, ~100 kB)."""
    path = tmp_path / "src" / "microaunet.pt"
    save_checkpoint(models.create_model("microaunet", checkpoint=False), path, architecture="microaunet")
    return path


@pytest.fixture
def parts(checkpoint, tmp_path):
    """The checkpoint in 30 kB parts in tmp/parts; returns (manifest, part paths)."""
    manifest = split_parts(checkpoint, max_bytes=30_000, out_dir=tmp_path / "parts", extra={"note": "test"})
    names = [p["name"] for p in json.loads(manifest.read_text())["parts"]]
    return manifest, [manifest.parent / n for n in names]


def test_split_then_join_gives_the_same_file_which_loads(checkpoint, parts, tmp_path):
    manifest, files = parts
    recorded = json.loads(manifest.read_text())
    assert len(files) >= 3 and all(f.stat().st_size <= 30_000 for f in files)
    assert recorded["sha256"] == file_sha256(checkpoint) and recorded["note"] == "test"
    joined = join_parts(manifest, tmp_path / "out" / "microaunet.pt")
    assert joined.read_bytes() == checkpoint.read_bytes()
    model = models.create_model("microaunet", checkpoint=joined)
    assert model.checkpoint_path == str(joined)


def test_a_missing_part_is_named(parts, tmp_path):
    manifest, files = parts
    files[1].unlink()
    with pytest.raises(CheckpointError, match=r"part 2 of .* is missing: fetch microaunet\.pt\.part02"):
        join_parts(manifest, tmp_path / "out.pt")
    assert not (tmp_path / "out.pt").exists()


def test_a_damaged_part_is_named(parts, tmp_path):
    manifest, files = parts
    data = bytearray(files[-1].read_bytes())
    data[0] ^= 0xFF
    files[-1].write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"part \d+ of \d+ .* is damaged"):
        join_parts(manifest, tmp_path / "out.pt")


def test_parts_given_out_of_order_are_refused(parts, tmp_path):
    manifest, files = parts
    swapped = [files[1], files[0]] + files[2:]
    with pytest.raises(CheckpointError, match=r"parts out of order: .*part02 is part 2, not part 1"):
        join_parts(manifest, tmp_path / "out.pt", parts=swapped)
    with pytest.raises(CheckpointError, match=r"parts, 2 given"):
        join_parts(manifest, tmp_path / "out.pt", parts=files[:2])


@pytest.fixture
def shipped_dir(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    monkeypatch.setattr(ckpt, "SHIPPED_DIR", folder)
    monkeypatch.setattr(ckpt, "_large_missing_reported", set())
    monkeypatch.setenv("NAPARI_POLYP_HOME", str(tmp_path / "home"))  # no preferred checkpoint of the user's
    return folder


def _join_tool():
    spec = importlib.util.spec_from_file_location("join_checkpoint", ROOT / "tools" / "join_checkpoint.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_join_tool_installs_a_large_checkpoint_that_create_model_then_loads(parts, shipped_dir, monkeypatch,
                                                                              capsys):
    manifest, _ = parts
    monkeypatch.setattr(ckpt, "LARGE_CHECKPOINT_BYTES", 1000)  # the tiny test checkpoint counts as large
    assert _join_tool().main([str(manifest), "--install"]) == 0
    installed = shipped_dir / "large" / "microaunet.pt"
    entry = json.loads((shipped_dir / "large.json").read_text())["microaunet"]
    assert entry == {"file": "large/microaunet.pt", "bytes": installed.stat().st_size,
                     "sha256": file_sha256(installed)}
    assert json.loads(capsys.readouterr().out)["checkpoint"] == str(installed)
    assert models.create_model("microaunet").checkpoint_path == str(installed)


def test_a_missing_or_different_large_checkpoint_says_where_to_get_it(checkpoint, shipped_dir):
    (shipped_dir / "large").mkdir()
    target = shipped_dir / "large" / "microaunet.pt"
    target.write_bytes(checkpoint.read_bytes())
    ckpt.record_large_checkpoint("microaunet", target)
    target.unlink()
    with pytest.warns(UserWarning, match=r"is missing\. It is too large for the wheel .* get "
                                         r"models/checkpoints/large/microaunet\.pt from the napari-polyp repository"):
        assert ckpt.shipped_checkpoint("microaunet") is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said once
        assert ckpt.shipped_checkpoint("microaunet") is None
    target.write_bytes(checkpoint.read_bytes() + b"x")
    with pytest.warns(UserWarning, match="its sha256 differs"):
        assert models.create_model("microaunet").checkpoint_path is None
