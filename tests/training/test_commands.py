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
from napari_polyp.training.data import find_pairs
from napari_polyp.training.finetune import (MIN_ITEMS, MIN_VAL_ITEMS, choose_validation, claim_problem, decide,
                                                item_kinds)

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


@pytest.mark.parametrize("args,words", [
    (["--model", "microaunet", "--augment", "wild"], "unknown augmentation preset 'wild'; choose one of"),
    (["--model", "ea-dk", "--variant", "efficientnet_b9"], "ea-dk has no variant 'efficientnet_b9'; its variants:"),
])
def test_train_names_a_typo_in_one_line_before_reading_data(tmp_path, capsys, args, words):
    argv = ["train", *args, "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "r"), "--max-steps", "1"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err and "nowhere" not in err  # before the data was looked at


def _corrections(shared_data, tmp_path, count=6, statuses=("accepted", "corrected")):
    root = copy_pairs(shared_data, tmp_path / "corrections", count=count)
    stems = sorted(p.stem for p in find_pairs(root))
    write_manifest(root, {s: statuses[i % len(statuses)] for i, s in enumerate(stems)})
    return root, stems


def _finetune_args(data, start, *more):
    return ["finetune", "--data", str(data), "--model", "microaunet", "--checkpoint", str(start),
            "--size", "64", "--batch", "4", "--threads", "1", "--json", *more]


def test_finetune_writes_a_checkpoint_that_loads(shared_data, tiny_data, tmp_path, capsys):
    start = _train_small(tiny_data, tmp_path / "start")
    data, _ = _corrections(shared_data, tmp_path)
    # a hold-out split (cross-validation, the default for small sets, is tested in test_finetune_recipe.py)
    assert main(_finetune_args(data, start, "--epochs", "1", "--validation", "holdout")) == 0
    result = _last_json(capsys)
    path = Path(result["checkpoint"])
    assert path.is_file() and path.parent == models.checkpoint.user_checkpoint_dir()
    header, _ = read_checkpoint(path, expected_architecture="microaunet")
    assert header["training"]["init_checkpoint"] == start and header["training"]["val_stems_count"] == 1
    model = models.create_model("microaunet", checkpoint=path)
    assert model(torch.rand(1, 3, 64, 64))["logits"].shape == (1, 1, 64, 64)
    # 6 items give 1 validation item: measured, but no before/after is claimed, and it is not the default
    assert result["validation"] == {**result["validation"], "n": 1, "corrected": 1, "accepted": 0}
    assert result["measured"]["before"]["n"] == result["measured"]["after"]["n"] == 1
    assert not result["claim"] and result["before"] == result["after"] == {}
    assert not result["preferred"] and f"fewer than {MIN_VAL_ITEMS}" in result["reason"]
    # the anchor is the start checkpoint's own validation split (its data folder is here)
    anchor = result["anchor"]
    assert "start checkpoint's validation split" in anchor["source"] and anchor["n"] == 1
    assert anchor["before"]["n"] == anchor["after"]["n"] == 1


def test_guard_keeps_the_previous_default_when_validation_gets_worse(shared_data, tmp_path, capsys, no_shipped):
    data, stems = _corrections(shared_data, tmp_path, count=10)
    kinds = item_kinds(data)
    val = choose_validation(kinds, 0.5, seed=0)  # what finetune will choose
    assert len(val) == MIN_VAL_ITEMS and any(kinds[s] == "corrected" for s in val)
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
    args = _finetune_args(data, start, "--epochs", "3", "--batch", "5", "--lr", "0.1", "--val-fraction", "0.5",
                          "--validation", "holdout")
    assert main(args) == 0
    result = _last_json(capsys)
    assert result["claim"] and sorted(result["validation"]["stems"]) == val
    assert result["before"]["dice"] == pytest.approx(1.0)
    assert result["after"]["dice"] < result["before"]["dice"]
    assert not result["preferred"] and "fell" in result["reason"]
    assert Path(result["checkpoint"]).is_file()  # written, but not made the default
    assert default_checkpoint("microaunet") is None
    # no training split in the start checkpoint: the anchor is the accepted items outside validation
    assert result["anchor"]["source"].startswith("accepted items outside validation")
    assert main(args + ["--force"]) == 0
    forced = _last_json(capsys)
    assert forced["preferred"] and default_checkpoint("microaunet") == Path(forced["checkpoint"]).resolve()


@pytest.mark.parametrize("case, words", [
    ("all empty", "masks is empty"),
    ("self-scored", "against its own output"),
    ("too few", f"at least {MIN_ITEMS}"),
])
def test_finetune_refuses_sets_it_cannot_learn_from_honestly(shared_data, tmp_path, capsys, case, words):
    count = MIN_ITEMS - 1 if case == "too few" else 6
    statuses = ("accepted",) if case == "self-scored" else ("accepted", "corrected")
    data, stems = _corrections(shared_data, tmp_path, count=count, statuses=statuses)
    if case == "all empty":
        set_masks(data, stems, 0)
    start = tmp_path / "start.pt"
    models.save_checkpoint(models.create_model("microaunet", checkpoint=False), start, architecture="microaunet")
    assert main(_finetune_args(data, start, "--epochs", "1")) == 2
    assert words in capsys.readouterr().err
    assert not list(models.checkpoint.user_checkpoint_dir().glob("*.pt"))  # nothing trained, nothing written


def test_validation_always_holds_corrected_items_and_accepted_only_beside_them():
    kinds = {**{f"a{i}": "accepted" for i in range(20)}, **{f"c{i}": "corrected" for i in range(5)}}
    val = choose_validation(kinds, 0.2, seed=3)
    assert len(val) == 5 and {kinds[s] for s in val} == {"accepted", "corrected"}
    assert choose_validation(kinds, 0.2, seed=3) == val  # seeded
    assert choose_validation({f"a{i}": "accepted" for i in range(9)}, 0.2, 0) == []
    assert "c0" in choose_validation({"c0": "corrected", **{f"a{i}": "accepted" for i in range(30)}}, 0.2, 0)


def test_equal_figures_on_a_degenerate_set_never_replace_the_default():
    kinds = {f"c{i}": "corrected" for i in range(10)}
    val = sorted(kinds)[:5]
    problem = claim_problem(val, kinds, empty=val)  # every validation mask empty: both score 1
    assert "empty" in problem
    perfect = {"dice": 1.0, "n": 5}
    assert decide(perfect, perfect, {}, problem, force=False)[0] is False
    assert decide(perfect, perfect, {}, problem, force=True)[0] is True
    assert decide(perfect, perfect, {}, "", force=False)[0] is True
    forgot = {"before": {"dice": 0.8}, "after": {"dice": 0.7}}
    preferred, reason = decide({"dice": 0.5}, {"dice": 0.6}, forgot, "", force=False)
    assert not preferred and "anchor" in reason


def test_a_gain_within_the_spread_between_items_does_not_become_the_default():
    """The claim's words said "not shown to help" while the decision made it the default."""
    from napari_polyp.training.intervals import paired_interval

    before = [0.60, 0.70, 0.80, 0.65, 0.75, 0.70, 0.72]
    unsure = paired_interval(before, [0.70, 0.66, 0.84, 0.60, 0.80, 0.74, 0.70])
    shown = paired_interval(before, [b + 0.05 + 0.01 * (i % 2) for i, b in enumerate(before)])
    assert unsure.low < 0 < shown.low
    preferred, reason = decide({"dice": 0.70}, {"dice": 0.72}, {}, "", force=False, gain=unsure)
    assert not preferred and "not shown" in reason and "checkpoint list" in reason
    assert decide({"dice": 0.70}, {"dice": 0.72}, {}, "", force=True, gain=unsure)[0]
    assert decide({"dice": 0.70}, {"dice": 0.755}, {}, "", force=False, gain=shown) == (True, "validation Dice did not fall")


def test_predict_writes_masks_for_a_folder_and_a_video(tiny_data, tmp_path, capsys):
    ckpt = _train_small(tiny_data, tmp_path / "run")
    video_mod = pytest.importorskip("napari_polyp.io.video")
    frames = [np.asarray(Image.open(p).convert("RGB").resize((64, 48))) for p in sorted((tiny_data / "images").iterdir())[:3]]
    video = video_mod.write_video(tmp_path / "clip.mp4", frames, fps=5)
    out = tmp_path / "masks"
    assert main(["predict", "--model", "microaunet", "--checkpoint", ckpt, str(tiny_data / "images"), str(video),
                 "--out", str(out), "--quiet", "--json"]) == 0
    assert _last_json(capsys)["written"] == 8 + 3
    mask = np.asarray(Image.open(sorted(out.glob("*.png"))[0]))
    assert mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 255}
    from napari_polyp.io.mask_store import MaskStore

    assert MaskStore.open(out / "clip.zarr").written() == [0, 1, 2]  # a video's masks: one store, a chunk a frame


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
