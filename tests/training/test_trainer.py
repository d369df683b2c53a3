import json

import pytest
import torch

import models
from models.checkpoint import read_checkpoint
from napari_polyp.training import TrainConfig, iter_train, train
from napari_polyp.training.data import find_pairs, split_stems


def _config(data, out, **kw):
    base = dict(model="microaunet", data=str(data), out=str(out), size=64, batch=4, num_threads=1, seed=0)
    base.update(kw)
    return TrainConfig(**base)


def test_split_is_seeded_sorted_and_stable():
    stems = [f"s{i:02d}" for i in range(20)]
    train_a, val_a = split_stems(stems, 0.1, seed=0)
    train_b, val_b = split_stems(list(reversed(stems)), 0.1, seed=0)
    assert (train_a, val_a) == (train_b, val_b)
    assert len(val_a) == 2 and not set(val_a) & set(train_a)
    assert split_stems(stems, 0.1, seed=1)[1] != val_a


def test_a_few_steps_lower_the_loss(tiny_data, tmp_path):
    losses = [e.loss for e in iter_train(_config(tiny_data, tmp_path / "run", epochs=8, batch=7, augment="none",
                                                 lr=3e-3)) if e.kind == "step"]
    assert len(losses) == 8
    assert sum(losses[-2:]) / 2 < losses[0]


def test_an_optimiser_override_replaces_the_papers_and_is_recorded(tiny_data, tmp_path):
    from napari_polyp.commands import train as train_command
    from napari_polyp.training import augment, presets

    help_copies = (train_command.OPTIMIZERS, train_command.SCHEDULES, tuple(train_command.AUGMENTATIONS))
    assert help_copies == (presets.OPTIMIZERS, presets.SCHEDULES, augment.PRESETS)  # what --help lists, torch-free
    assert presets.get_preset("ea-dk").optimizer == "sgd"  # [P]
    done = train(_config(tiny_data, tmp_path / "run", model="ea-dk", variant={"variant": "efficientnet_lite0"},
                         optimizer="adamw", lr=5e-4, max_steps=1, augment="none"))
    header, _ = read_checkpoint(done.checkpoint, expected_architecture="ea-dk")
    assert header["training"]["preset"]["optimizer"] == "adamw" and header["training"]["preset"]["lr"] == 5e-4
    assert header["variant"] == {"variant": "efficientnet_lite0"}


def test_checkpoints_carry_the_header_and_split(tiny_data, tmp_path):
    done = train(_config(tiny_data, tmp_path / "run", epochs=1))
    header, _ = read_checkpoint(done.checkpoint, expected_architecture="microaunet")
    training = header["training"]
    assert training["split_seed"] == 0 and training["val_stems_count"] == 1 == len(training["val_stems"])
    assert training["epochs"] == 1 and training["wall_time_s"] > 0
    assert set(header["metrics"]) >= {"dice", "iou", "precision", "recall"}
    split = json.loads((tmp_path / "run" / "split.json").read_text())
    assert split["val_stems"] == training["val_stems"]
    models.create_model("microaunet", checkpoint=done.checkpoint)  # loads through the public API


def test_resume_continues_from_the_saved_step_and_matches_an_unbroken_run(tiny_data, tmp_path):
    # 7 training pairs, batch 4 -> 2 steps per epoch; stop after 3 steps (mid-epoch 2)
    first = train(_config(tiny_data, tmp_path / "run", epochs=2, max_steps=3))
    assert first.stopped_early and first.step == 3
    state = torch.load(tmp_path / "run" / "last.state.pt", weights_only=True)
    assert (state["epoch"], state["step_in_epoch"], state["global_step"]) == (1, 1, 3)
    steps = [e.step for e in iter_train(_config(tiny_data, tmp_path / "run", epochs=2, resume=True)) if e.kind == "step"]
    assert steps == [4]
    unbroken = train(_config(tiny_data, tmp_path / "unbroken", epochs=2))
    assert unbroken.step == 4
    _, resumed_w = read_checkpoint(tmp_path / "run" / "last.pt")
    _, unbroken_w = read_checkpoint(tmp_path / "unbroken" / "last.pt")
    for key in unbroken_w:
        torch.testing.assert_close(resumed_w[key], unbroken_w[key], rtol=1e-5, atol=1e-6)


def test_should_stop_cancels_cleanly_and_keeps_a_checkpoint(tiny_data, tmp_path):
    calls = []
    done = train(_config(tiny_data, tmp_path / "run", epochs=5), should_stop=lambda: calls.append(1) or len(calls) >= 1)
    assert done.stopped_early and done.step == 1
    assert (tmp_path / "run" / "best.pt").is_file()


def test_corrections_dataset_uses_accepted_and_corrected_items_only(tiny_data):
    from .conftest import write_manifest

    stems = [p.stem for p in find_pairs(tiny_data)]
    statuses = dict(zip(stems, ["accepted", "corrected", "rejected", "unreviewed"] * 2))
    write_manifest(tiny_data, statuses)
    used = [p.stem for p in find_pairs(tiny_data)]
    assert used == sorted(s for s, st in statuses.items() if st in ("accepted", "corrected"))


def test_distillation_runs_two_steps_with_a_teacher(tiny_data, tmp_path):
    teacher = train(_config(tiny_data, tmp_path / "teacher", epochs=1, teacher_kind="malunet"))
    header, _ = read_checkpoint(teacher.checkpoint)
    assert header["architecture"] == "microaunet-teacher" and header["variant"] == {"kind": "malunet"}
    done = train(_config(tiny_data, tmp_path / "student", epochs=1, teacher=teacher.checkpoint))
    assert done.step == 2
    models.create_model("microaunet", checkpoint=done.checkpoint)


def test_dino_keys_trains_on_cached_features_and_records_its_backbone(tiny_data, tmp_path):
    from safetensors.torch import save_file

    done = train(_config(tiny_data, tmp_path / "run", model="dino-keys", size=56, epochs=1))
    header, state = read_checkpoint(done.checkpoint, expected_architecture="dino-keys")
    assert header["training"]["augment"] == "views identity, hflip (cached frozen features)"
    assert not any(k.startswith("backbone.") for k in state)
    # the same random backbone (seed 0), saved where create_model can be pointed at it
    torch.manual_seed(0)
    backbone = models.create_model("dino-keys", checkpoint=False).backbone
    assert header["backbone_sha256"] == models.checkpoint.weights_sha256(backbone.state_dict())
    weights = tmp_path / "vit_small_patch14_dinov2.test.safetensors"
    save_file({k: v.contiguous() for k, v in backbone.state_dict().items()}, str(weights))
    loaded = models.create_model("dino-keys", checkpoint=done.checkpoint, backbone_weights=weights)
    assert loaded.backbone_sha256() == header["backbone_sha256"]


def test_dino_keys_trains_on_token_windows(tiny_data, tmp_path):
    done = train(_config(tiny_data, tmp_path / "run", model="dino-keys", size=56, epochs=1, crop_tokens=2))
    header, _ = read_checkpoint(done.checkpoint, expected_architecture="dino-keys")
    assert header["training"]["augment"] == "views identity, hflip (cached frozen features), 2-token windows"
    assert done.step >= 1 and 0.0 <= done.metrics["dice"] <= 1.0  # validation ran on whole images


def test_dino_keys_adapters_start_from_a_frozen_run_and_train_on_cached_tokens(tiny_data, tmp_path):
    from safetensors.torch import save_file

    frozen = train(_config(tiny_data, tmp_path / "frozen", model="dino-keys", size=56, epochs=1))
    torch.manual_seed(0)  # the frozen run's random backbone, where the tuned run can load it
    weights = tmp_path / "vit_small_patch14_dinov2.test.safetensors"
    save_file({k: v.contiguous() for k, v in models.create_model("dino-keys", checkpoint=False).backbone.state_dict().items()},
              str(weights))
    tuned = train(_config(tiny_data, tmp_path / "tuned", model="dino-keys", size=56, epochs=1, crop_tokens=2,
                          variant={"adapter_rank": 2}, init_checkpoint=str(frozen.checkpoint),
                          backbone_weights=str(weights), feature_cache=str(tmp_path / "cache")))
    header, state = read_checkpoint(tuned.checkpoint, expected_architecture="dino-keys")
    assert header["variant"]["adapter_rank"] == 2
    assert any(k.startswith("adapters.") for k in state) and not any(k.startswith("backbone.") for k in state)
    assert {p.name.split("-")[0] for p in (tmp_path / "cache").iterdir()} == {"train", "val"}
    assert all(p.name.endswith("keys2-5-8-tokens8") for p in (tmp_path / "cache").iterdir())
    moved = [k for k in state if k.startswith("adapters.") and k.endswith("up.weight") and state[k].abs().sum() > 0]
    assert moved  # the adapters (zero at the start) trained


def test_ema_saves_the_average_and_resumes_like_an_unbroken_run(tiny_data, tmp_path):
    first = train(_config(tiny_data, tmp_path / "run", epochs=2, max_steps=3, ema_decay=0.9))
    state = torch.load(tmp_path / "run" / "last.state.pt", weights_only=True)
    _, saved = read_checkpoint(tmp_path / "run" / "last.pt")
    assert first.step == 3 and state["ema"]["updates"] == 3
    # last.pt holds the average, the state the network's own weights: they differ
    assert any(not torch.allclose(saved[k].float(), v.float()) for k, v in state["raw_weights"].items())
    train(_config(tiny_data, tmp_path / "run", epochs=2, resume=True, ema_decay=0.9))
    train(_config(tiny_data, tmp_path / "unbroken", epochs=2, ema_decay=0.9))
    header, resumed_w = read_checkpoint(tmp_path / "run" / "last.pt")
    _, unbroken_w = read_checkpoint(tmp_path / "unbroken" / "last.pt")
    assert header["training"]["ema_decay"] == 0.9
    for key in unbroken_w:
        torch.testing.assert_close(resumed_w[key], unbroken_w[key], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("variant, message", [
    ({"adapter_rank": 4, "adapter_start": 20}, "adapter_start must be a block from 0 to 11"),
    ({"no_such_option": 1}, "no_such_option"),
])
def test_a_variant_the_network_refuses_is_one_line_naming_it(tiny_data, tmp_path, variant, message):
    from napari_polyp.errors import UserError

    config = TrainConfig(model="dino-keys", data=str(tiny_data), out=str(tmp_path / "run"), size=56,
                         num_threads=1, epochs=1, variant=variant)
    with pytest.raises(UserError, match=f"--variant .*{message}"):
        train(config)
    assert not (tmp_path / "run" / "last.pt").exists()


def test_freeze_bn_keeps_the_start_checkpoints_statistics_through_training_and_validation(tiny_data, tmp_path):
    start = train(_config(tiny_data, tmp_path / "start", max_steps=1, augment="none"))
    _, before = read_checkpoint(start.checkpoint, expected_architecture="microaunet")
    runs = {}
    for frozen in (True, False):
        done = train(_config(tiny_data, tmp_path / f"run-{frozen}", epochs=2, augment="none", lr=1e-3,
                             init_checkpoint=start.checkpoint, freeze_bn=frozen))
        header, runs[frozen] = read_checkpoint(done.checkpoint, expected_architecture="microaunet")
        assert header["training"]["freeze_bn"] is frozen
    statistics = [k for k in before if k.endswith(("running_mean", "running_var"))]
    assert statistics
    assert all(torch.equal(runs[True][k], before[k]) for k in statistics)
    assert not all(torch.equal(runs[False][k], before[k]) for k in statistics)
    weights = [k for k in before if k.endswith("weight") and before[k].is_floating_point()]
    assert not all(torch.equal(runs[True][k], before[k]) for k in weights)  # the rest did train
