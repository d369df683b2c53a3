"""Training presets (training/presets.py): the schedules' shapes, the optimisers, and that each
preset names a loss and an augmentation that exist."""
import math

import pytest
import torch

from napari_polyp.training import augment
from napari_polyp.training.losses import LOSSES
from napari_polyp.training.presets import DEFAULT, PRESETS, SCHEDULES, Preset, get_preset, lr_at, make_optimizer


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_names_a_known_loss_optimizer_schedule_and_augmentation(name):
    preset = PRESETS[name]
    assert preset.loss in LOSSES and preset.schedule in SCHEDULES and preset.augment in augment.PRESETS
    assert make_optimizer(preset, [torch.nn.Parameter(torch.zeros(1))]).defaults["lr"] == preset.lr


def test_a_network_name_finds_its_preset_in_either_spelling_and_an_unknown_one_the_default():
    assert get_preset("ea-dk") is PRESETS["ea-dk"] and get_preset("ea_dk") is PRESETS["ea-dk"]
    assert get_preset("no-such-net") is DEFAULT


def test_overrides_replace_fields_and_none_leaves_them():
    preset = get_preset("microaunet", lr=5e-4, epochs=None)
    assert preset.lr == 5e-4 and preset.epochs == PRESETS["microaunet"].epochs
    assert PRESETS["microaunet"].lr == 1e-3  # the table itself is unchanged


def test_cosine_falls_from_lr_to_min_lr_through_the_midpoint():
    preset = Preset(schedule="cosine", lr=1e-3, min_lr=1e-5)
    assert lr_at(preset, 0, 100) == pytest.approx(1e-3)
    assert lr_at(preset, 50, 100) == pytest.approx((1e-3 + 1e-5) / 2)
    assert lr_at(preset, 100, 100) == pytest.approx(1e-5)
    assert lr_at(preset, 150, 100) == pytest.approx(1e-5)  # past the end: held at the floor
    steps = [lr_at(preset, e, 100) for e in range(0, 101, 5)]
    assert steps == sorted(steps, reverse=True)


def test_poly_decays_to_zero_with_its_power():
    preset = Preset(schedule="poly", lr=4e-4, poly_power=0.9)
    assert lr_at(preset, 0, 100) == pytest.approx(4e-4)
    assert lr_at(preset, 50, 100) == pytest.approx(4e-4 * 0.5 ** 0.9)
    assert lr_at(preset, 100, 100) == 0.0


def test_warm_restarts_come_back_to_lr_at_t0_then_after_periods_growing_by_mult():
    preset = Preset(schedule="cosine_restarts", lr=1e-3, min_lr=0.0, restart_t0=10, restart_mult=2)
    assert lr_at(preset, 5, 150) == pytest.approx(1e-3 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert lr_at(preset, 9.999, 150) < 1e-7  # the end of the first period
    assert lr_at(preset, 10, 150) == pytest.approx(1e-3)  # restart
    assert lr_at(preset, 20, 150) == pytest.approx(5e-4)  # halfway through the second period (20 epochs)
    assert lr_at(preset, 30, 150) == pytest.approx(1e-3)  # restart after 10 + 20


def test_constant_is_constant_and_an_unknown_schedule_or_optimizer_is_refused():
    assert {lr_at(Preset(schedule="constant", lr=3e-4), e, 10) for e in (0, 5, 10)} == {3e-4}
    with pytest.raises(ValueError, match="schedule"):
        lr_at(Preset(schedule="linear"), 1, 10)
    with pytest.raises(ValueError, match="optimizer"):
        make_optimizer(Preset(optimizer="lion"), [torch.nn.Parameter(torch.zeros(1))])


@pytest.mark.parametrize("name, kind", [("sgd", torch.optim.SGD), ("adam", torch.optim.Adam),
                                        ("adamw", torch.optim.AdamW)])
def test_the_optimizer_trains_only_what_requires_a_gradient(name, kind):
    trained, frozen = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(3), requires_grad=False)
    optimizer = make_optimizer(Preset(optimizer=name, weight_decay=1e-4), [trained, frozen])
    assert isinstance(optimizer, kind)
    (params,) = [group["params"] for group in optimizer.param_groups]
    assert len(params) == 1 and params[0] is trained
    assert optimizer.param_groups[0]["weight_decay"] == 1e-4
