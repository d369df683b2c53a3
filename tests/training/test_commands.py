"""evaluate / finetune / predict / torchrun, through the real command line entry point."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import models
from models.checkpoint import default_checkpoint, read_checkpoint
from napari_polyp.cli import main
from napari_polyp.training import TrainConfig, train
from napari_polyp.training.data import find_pairs, split_stems

from .conftest import copy_pairs, set_masks, write_manifest


def _train_small(data, out, **kw):
    config = dict(model="microaunet", data=str(data), out=str(out), size=64, batch=4, epochs=1, num_threads=1)
    config.update(kw)
    return train(TrainConfig(**config)).checkpoint


def _last_json(capsys) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_evaluate_prints_the_json_keys(tiny_data, tmp_path, capsys):
    ckpt = _train_small(tiny_data, tmp_path / "run")
    assert main(["evaluate", "--model", "microaunet", "--checkpoint", ckpt, "--data", str(tiny_data), "--json"]) == 0
    result = _last_json(capsys)
    assert {"n", "dice", "iou", "precision", "recall"} <= set(result) and result["n"] == 8
    assert main(["evaluate", "--model", "microaunet", "--checkpoint", ckpt, "--data", str(tiny_data),
                 "--split", "val", "--json"]) == 0
    assert _last_json(capsys)["n"] == 1


def test_evaluate_without_a_checkpoint_is_a_clean_error(tiny_data, capsys, no_shipped):
    assert main(["evaluate", "--model", "microaunet", "--data", str(tiny_data), "--json"]) == 2
    assert "no trained checkpoint" in capsys.readouterr().err


def _corrections(shared_data, tmp_path):
    root = copy_pairs(shared_data, tmp_path / "corrections", count=6)
    stems = sorted(p.stem for p in find_pairs(root))
    write_manifest(root, {s: ("corrected" if i % 2 else "accepted") for i, s in enumerate(stems)})
    return root, stems


def test_finetune_writes_a_checkpoint_that_loads(shared_data, tiny_data, tmp_path, capsys):
    start = _train_small(tiny_data, tmp_path / "start")
    data, _ = _corrections(shared_data, tmp_path)
    assert main(["finetune", "--data", str(data), "--model", "microaunet", "--checkpoint", start,
                 "--epochs", "1", "--size", "64", "--batch", "4", "--threads", "1", "--json"]) == 0
    result = _last_json(capsys)
    path = Path(result["checkpoint"])
    assert path.is_file() and path.parent == models.checkpoint.user_checkpoint_dir()
    header, _ = read_checkpoint(path, expected_architecture="microaunet")
    assert header["training"]["init_checkpoint"] == start and header["training"]["val_stems_count"] == 1
    model = models.create_model("microaunet", checkpoint=path)
    assert model(torch.rand(1, 3, 64, 64))["logits"].shape == (1, 1, 64, 64)
    assert result["before"]["n"] == result["after"]["n"] == 1
    assert result["preferred"] == (result["after"]["dice"] >= result["before"]["dice"])


def test_guard_keeps_the_previous_default_when_validation_gets_worse(shared_data, tmp_path, capsys, no_shipped):
    data, stems = _corrections(shared_data, tmp_path)
    _, val = split_stems(stems, 0.2, seed=0)  # finetune's default split
    # validation items are all lesion, training items all background: learning the
    # training items must make the start network (which calls everything lesion) worse
    set_masks(data, val, 255)
    set_masks(data, [s for s in stems if s not in val], 0)
    start_model = models.create_model("microaunet", checkpoint=False)
    with torch.no_grad():
        start_model.head.weight.zero_()  # logit 0.3 everywhere: a confident "all lesion"
        start_model.head.bias.fill_(0.3)
    start = tmp_path / "start.pt"
    models.save_checkpoint(start_model, start, architecture="microaunet")
    args = ["finetune", "--data", str(data), "--model", "microaunet", "--checkpoint", str(start),
            "--epochs", "3", "--size", "64", "--batch", "5", "--lr", "0.1", "--threads", "1", "--json"]
    assert main(args) == 0
    result = _last_json(capsys)
    assert result["before"]["dice"] == pytest.approx(1.0)
    assert result["after"]["dice"] < result["before"]["dice"]
    assert not result["preferred"] and "fell" in result["reason"]
    assert Path(result["checkpoint"]).is_file()  # written, but not made the default
    assert default_checkpoint("microaunet") is None
    assert main(args + ["--force"]) == 0
    forced = _last_json(capsys)
    assert forced["preferred"] and default_checkpoint("microaunet") == Path(forced["checkpoint"]).resolve()


def test_predict_writes_masks_for_a_folder_and_a_video(tiny_data, tmp_path, capsys):
    ckpt = _train_small(tiny_data, tmp_path / "run")
    video_mod = pytest.importorskip("napari_polyp.io.video")
    frames = [np.asarray(Image.open(p).convert("RGB").resize((64, 48))) for p in sorted((tiny_data / "images").iterdir())[:3]]
    video = video_mod.write_video(tmp_path / "clip.mp4", frames, fps=5)
    out = tmp_path / "masks"
    assert main(["predict", "--model", "microaunet", "--checkpoint", ckpt, str(tiny_data / "images"), str(video),
                 "--out", str(out), "--quiet"]) == 0
    assert _last_json(capsys)["written"] == 8 + 3
    mask = np.asarray(Image.open(sorted(out.glob("*.png"))[0]))
    assert mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 255}
    assert len(list((out / "clip").glob("*.png"))) == 3


def test_two_process_ddp_run_on_cpu(tiny_data, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", MASTER_ADDR="127.0.0.1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "napari_polyp.cli", "train", "--model", "microaunet", "--data", str(tiny_data),
           "--out", str(tmp_path / "ddp"), "--size", "64", "--batch", "2", "--epochs", "1", "--max-steps", "2",
           "--threads", "1", "--device", "cpu", "--quiet"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])  # rank 0 only prints it
    assert summary["steps"] == 2
    header, _ = read_checkpoint(tmp_path / "ddp" / "last.pt")
    assert header["training"]["world_size"] == 2 and header["training"]["batch"] == 4
