"""The fine-tune recipe and its cross-validated claim (training/finetune.py: Recipe, fit, choose_folds)."""
import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

import models
from models.checkpoint import read_checkpoint
from napari_polyp.training import TrainConfig, train
from napari_polyp.training import finetune as ft
from napari_polyp.training.data import Pair, PairArrays, find_pairs

from .conftest import copy_pairs, write_manifest


def _arrays(n: int, size: int, value: int, mask_value: int = 1, split: str = "") -> PairArrays:
    """n images of ``value``; split "left"/"top": that half black, the other white."""
    out = PairArrays.__new__(PairArrays)
    out.pairs = [Pair(f"{value}-{i}", Path(f"{i}.png"), Path(f"{i}.png")) for i in range(n)]
    out.size = size
    out.images = np.full((n, size, size, 3), value, np.uint8)
    if split:
        out.images[:] = 255
        if split == "left":
            out.images[:, :, : size // 2] = 0
        else:
            out.images[:, : size // 2] = 0
    out.masks = np.zeros((n, size, size), np.uint8)
    out.masks[:, size // 4: size // 2, size // 4: size // 2] = mask_value
    return out


def test_replay_mixes_the_right_share():
    assert ft.replay_count(4, 0.25, pool=100) == 1
    assert ft.replay_count(8, 0.5, pool=100) == 4
    assert ft.replay_count(4, 0.9, pool=100) == 3  # one place is always left for the new items
    assert ft.replay_count(4, 0.05, pool=100) == 1  # a share > 0 replays at least one
    assert ft.replay_count(4, 0.25, pool=0) == ft.replay_count(4, 0.0, pool=100) == 0
    plan = ft.batch_plan(n_items=10, n_pool=50, batch=4, replay=0.25, steps=20, seed=0)
    assert len(plan) == 20 and all(len(new) == 3 and len(old) == 1 for new, old in plan)
    drawn = [i for new, _ in plan for i in new]
    assert sorted(drawn[:10]) == list(range(10)) and sorted(drawn[10:20]) == list(range(10))  # passes
    assert all(0 <= i < 50 for _, old in plan for i in old)
    assert ft.batch_plan(10, 50, 4, 0.25, 20, seed=0) == plan  # seeded
    # fewer items than places, and no pool: each batch holds every item once, nothing replayed
    assert all(sorted(new) == [0, 1] and not old for new, old in ft.batch_plan(2, 0, 4, 0.25, 3, seed=0))


def test_replayed_images_reach_the_network_in_their_share():
    """New items are black on the left, replayed ones black on top: every batch the network sees
    holds both, in the share."""
    model = models.create_model("microaunet", checkpoint=False)
    seen = []

    def left_darker(_module, args):  # per image: is the left half darker than the right one?
        x = args[0].detach()
        seen.append(x[..., : x.shape[-1] // 2].mean(dim=(1, 2, 3)) < x[..., x.shape[-1] // 2:].mean(dim=(1, 2, 3)))

    model.register_forward_pre_hook(left_darker)
    recipe = ft.Recipe(batch=4, replay=0.5, augment="none", steps=3, lr=1e-4)
    facts = ft.fit(model, "microaunet", _arrays(6, 32, 0, split="left"), recipe, 3,
                   replay=_arrays(9, 32, 0, split="top"))
    assert facts["steps"] == 3 and facts["replay_per_batch"] == 2
    assert len(seen) == 3 and all(len(new) == 4 and int(new.sum()) == 2 for new in seen)
    three = ft.fit(models.create_model("microaunet", checkpoint=False), "microaunet",
                   _arrays(6, 32, 0, split="left"), dataclasses.replace(recipe, replay=0.25), 1,
                   replay=_arrays(9, 32, 0, split="top"))
    assert three["replay_per_batch"] == 1


def test_frozen_batchnorm_keeps_running_statistics():
    torch.manual_seed(0)
    model = models.create_model("ea-dk", checkpoint=False, variant="efficientnet_lite0")
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert norms
    stats = {k: v.clone() for k, v in model.state_dict().items()
             if k.endswith(("running_mean", "running_var", "num_batches_tracked"))}
    affine = norms[0].weight.detach().clone()
    data = _arrays(4, 64, 90)
    data.images[:, :, :, 0] = 200  # not grey: a batch unlike ImageNet's statistics
    recipe = ft.Recipe(batch=2, replay=0.0, augment="none", lr=1e-2, warmup=0)
    facts = ft.fit(model, "ea-dk", data, recipe, 2)
    assert facts["frozen_bn"] == len(norms)
    after = model.state_dict()
    assert all(torch.equal(after[k], v) for k, v in stats.items())  # running statistics untouched
    assert not torch.equal(norms[0].weight.detach(), affine)  # its scale still trains
    # and BatchNorm in training mode does change them (the check above is not vacuous)
    trained = ft.fit(model, "ea-dk", data, dataclasses.replace(recipe, freeze_bn=False), 1)
    assert trained["frozen_bn"] == 0
    assert any(not torch.equal(model.state_dict()[k], v) for k, v in stats.items() if "running_mean" in k)


def test_folds_keep_neighbouring_frames_together_and_cover_every_item_once():
    kinds = {**{f"c{i}": "corrected" for i in range(7)}, **{f"a{i}": "accepted" for i in range(13)}}
    folds = ft.choose_folds(kinds, 5)
    assert len(folds) == 5 and sorted(s for f in folds for s in f) == sorted(kinds)
    assert all(len(f) in (3, 4, 5) for f in folds)
    assert sum(any(kinds[s] == "corrected" for s in f) for f in folds) == 5  # corrected items in every fold
    frames = {f"clip_{i}": "corrected" for i in range(2, 14)}  # frames 2..13 of a video, saved in order
    by_fold = ft.choose_folds(frames, 4)
    assert by_fold[0] == ["clip_2", "clip_3", "clip_4"] and by_fold[-1] == ["clip_11", "clip_12", "clip_13"]
    assert len(ft.choose_folds({f"c{i}": "corrected" for i in range(3)}, 5)) == 3  # k <= items
    assert ft.choose_folds({f"a{i}": "accepted" for i in range(9)}, 5) == []  # nothing honest to score
    # a typical 20-item set is cross-validated; a hold-out of 20+ items is kept for large sets
    assert ft.choose_scheme({f"c{i}": "corrected" for i in range(20)}, 0.2) == "cv"
    assert ft.choose_scheme({f"c{i}": "corrected" for i in range(100)}, 0.2) == "holdout"
    assert ft.choose_scheme({f"c{i}": "corrected" for i in range(100)}, 0.2, "cv") == "cv"


def _scene_looks(sizes, seed=0):
    """Thumbnails of consecutive frames: a scene's frames differ a little, scenes much."""
    rng = np.random.default_rng(seed)
    looks, i = {}, 0
    for size in sizes:
        base = rng.uniform(0, 1, (24, 24, 3))
        for _ in range(size):
            looks[f"frame{i}"] = np.clip(base + rng.normal(0, 0.02, base.shape), 0, 1)
            i += 1
    return looks


def test_folds_hold_whole_scenes_when_the_items_show_several():
    looks = _scene_looks([6, 6, 6, 2])  # four polyps, as etis20 holds them
    kinds = {s: "corrected" for s in looks}
    folds = ft.choose_folds(kinds, 5, looks)
    assert [len(f) for f in folds] == [6, 6, 6, 2]
    assert folds[0] == [f"frame{i}" for i in range(6)]
    merged = ft.choose_folds(kinds, 3, looks)  # more scenes than folds: neighbours merged, none cut
    assert len(merged) == 3 and sorted(s for f in merged for s in f) == sorted(kinds)
    scene_of = {f"frame{i}": i // 6 for i in range(20)}
    for fold in merged:  # each fold: whole scenes, neighbours
        scenes = {scene_of[s] for s in fold}
        assert sum(scene_of[s] in scenes for s in kinds) == len(fold) and max(scenes) - min(scenes) == len(scenes) - 1
    independent = {f"img{i}": np.random.default_rng(i).uniform(0, 1, (24, 24, 3)) for i in range(12)}
    even = ft.choose_folds({s: "corrected" for s in independent}, 5, independent)
    assert len(even) == 5 and all(len(f) in (2, 3) for f in even)  # no scene stands out: as without looks


def test_lr_warms_up_then_anneals():
    recipe = ft.Recipe(lr=1e-3, warmup=4)
    lrs = [ft.lr_at_step(recipe, s, 40) for s in range(40)]
    assert lrs[0] < lrs[3] < lrs[4] == pytest.approx(1e-3) and lrs[-1] < 1e-5
    assert ft.lr_at_step(recipe, 0, 3) == pytest.approx(1e-3)  # a 3-step run has no warm-up


def test_a_small_set_makes_a_cross_validated_claim(shared_data, tmp_path):
    """10 reference masks (no manifest: all corrected), 5 folds of 2: every item scored out-of-fold,
    so the 10 items make a claim where a 20 % hold-out (2 items) could not; the checkpoint written
    is trained on all 10."""
    start_data = copy_pairs(shared_data, tmp_path / "start-data", count=8)
    start = train(TrainConfig(model="microaunet", data=str(start_data), out=str(tmp_path / "start"), size=64,
                              batch=4, epochs=1, num_threads=1)).checkpoint
    data = copy_pairs(shared_data, tmp_path / "corrections", count=18)
    for image in sorted((data / "images").iterdir())[:8]:  # the 8 the start trained on: not corrections
        image.unlink()
        (data / "masks" / f"{image.stem}.png").unlink()
    events = []
    result = ft.finetune(data, "microaunet", checkpoint=start, size=64, steps=3, num_threads=1, device="cpu",
                         on_event=events.append, anchor_limit=4)
    validation = result["validation"]
    assert validation["scheme"] == "cv" and validation["folds"] == validation["folds_done"] == 5
    assert validation["n"] == validation["corrected"] == 10 and len(validation["items"]) == 10
    assert result["claim"] and result["before"]["n"] == result["after"]["n"] == 10
    assert result["measured"]["after"] == result["after"]
    assert sum(len(f["stems"]) for f in validation["fold_reports"]) == 10
    # the folds and the final run each trained 3 steps; events: baseline, steps, one "epoch" per fold, done
    kinds = [e.kind for e in events]
    assert kinds.count("baseline") == 1 and kinds.count("epoch") == 5 and kinds.count("step") == 18
    assert kinds[-1] == "done" and events[-1].checkpoint == result["checkpoint"]
    steps = [e for e in events if e.kind == "step"]
    assert steps[-1].step == 18 and steps[-1].total_epochs == 6 and steps[-1].steps_per_epoch == 3
    header, _ = read_checkpoint(result["checkpoint"], expected_architecture="microaunet")
    training = header["training"]
    assert training["train_count"] == 10 and training["val_stems_count"] == 0 and training["validation"] == "cv"
    assert training["steps"] == 3 and training["recipe"]["optimizer"] == "adamw" and training["recipe"]["freeze_bn"]
    # the start's own data is the anchor, and the fine-tuned checkpoint passes it on to the next fine-tune
    assert "start checkpoint's validation split" in result["anchor"]["source"]
    assert training["origin"]["data"] == str(Path(start_data).resolve())
    chained, source = ft.anchor_pairs(header, data, ft.item_kinds(data), [], 4)
    assert "start checkpoint's validation split" in source and chained
    # without the start's data here, cross-validation leaves no item to anchor on (the network written
    # is trained on all of them): none, said so, rather than items it was trained on
    moved = dict(header, training={**header["training"], "origin": {"data": str(tmp_path / "gone"), "val_stems": []}})
    assert ft.anchor_pairs(moved, data, ft.item_kinds(data), [], 4, cross_validated=True)[0] == []
    assert "cross-validation" in ft.anchor_pairs(moved, data, ft.item_kinds(data), [], 4, cross_validated=True)[1]
    # replay came from the start's training items (its data folder minus its validation split)
    assert result["replay"].startswith("7 of the start checkpoint's training items")
    assert training["recipe"]["pull"] == 0  # replayed: no pull
    assert Path(result["checkpoint"]).is_file() and (Path(result["run_dir"]) / "result.json").is_file()
    assert "out-of-fold" in ft.summary(result)
    # the claim carries how sure it is: the mean gain over the 10 items and its paired interval
    gain = validation["gain"]
    per_item_gain = np.mean([r["after"] - r["before"] for r in validation["items"]])
    assert gain["n"] == 10 and gain["low"] <= gain["mean"] <= gain["high"]
    assert gain["mean"] == pytest.approx(per_item_gain, abs=1e-3)
    assert "95% interval, the items resampled" in ft.summary(result)


def test_four_items_cross_validated_make_no_claim(shared_data, tmp_path):
    """Accepted items join the folds beside a corrected one; 4 items scored out-of-fold are fewer
    than MIN_VAL_ITEMS: the figures are measured, not claimed."""
    data = copy_pairs(shared_data, tmp_path / "corrections", count=4)
    stems = sorted(p.stem for p in find_pairs(data))
    write_manifest(data, {s: ("corrected" if i == 0 else "accepted") for i, s in enumerate(stems)})
    start = tmp_path / "start.pt"
    models.save_checkpoint(models.create_model("microaunet", checkpoint=False), start, architecture="microaunet")
    result = ft.finetune(data, "microaunet", checkpoint=start, size=64, steps=1, num_threads=1, device="cpu")
    assert result["validation"]["n"] == 4 and result["validation"]["corrected"] == 1
    assert not result["claim"] and result["before"] == result["after"] == {}
    assert result["measured"]["before"]["n"] == 4 and f"fewer than {ft.MIN_VAL_ITEMS}" in result["reason"]
    assert not result["preferred"]
    # no start data on this machine: no replay, the weights pulled towards the start instead
    assert result["recipe"]["pull"] == ft.NO_REPLAY_PULL and "pulled back towards the start" in result["replay"]


def test_training_the_head_leaves_the_encoder_alone():
    torch.manual_seed(0)
    model = models.create_model("ea-dk", checkpoint=False, variant="efficientnet_lite0")
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    recipe = ft.Recipe(batch=2, replay=0.0, augment="none", lr=1e-2, warmup=0, train="head")
    ft.fit(model, "ea-dk", _arrays(2, 64, 90), recipe, 1)
    moved = {k for k, v in model.named_parameters() if not torch.equal(v.detach(), before[k])}
    assert moved and not any(k.startswith("backbone.") for k in moved)
    assert all(p.requires_grad for p in model.parameters())  # as it was before


def _distance_from(model, start) -> float:
    return float(sum(((p.detach() - start[k]) ** 2).sum() for k, p in model.named_parameters()))


def test_pull_keeps_the_weights_nearer_their_start():
    distances = {}
    for pull in (0.0, 0.5):
        torch.manual_seed(0)
        model = models.create_model("ea-dk", checkpoint=False, variant="efficientnet_lite0")
        start = {k: v.detach().clone() for k, v in model.named_parameters()}
        recipe = ft.Recipe(batch=2, replay=0.0, augment="none", lr=1e-2, warmup=0, pull=pull)
        ft.fit(model, "ea-dk", _arrays(2, 64, 90), recipe, 3)
        distances[pull] = _distance_from(model, start)
    assert 0 < distances[0.5] < 0.8 * distances[0.0]


def test_a_full_pull_returns_every_weight_to_its_start():
    model = torch.nn.Linear(3, 2)
    start = {k: v.detach().clone() for k, v in model.named_parameters()}
    with torch.no_grad():
        model.weight.add_(1.0)
    ft.pull_towards(model, start, 1.0)
    assert _distance_from(model, start) == 0.0
