"""The papers' losses (training/losses.py): zero for a perfect prediction, growing with the error."""
import pytest
import torch

from napari_polyp.training.losses import LOSSES, deep_supervision, resize_target, soft_dice_loss


def _target():
    target = torch.zeros(2, 1, 16, 16)
    target[0, :, 4:12, 4:12] = 1
    target[1, :, :8] = 1
    return target


def _logits_with_errors(target, wrong_pixels: int, confidence: float = 20.0):
    """Confident logits that agree with ``target`` except on its first ``wrong_pixels`` pixels per image."""
    logits = (target * 2 - 1) * confidence
    flat = logits.view(logits.shape[0], -1)
    flat[:, :wrong_pixels] *= -1
    return logits


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_a_perfect_prediction_costs_nothing(name):
    target = _target()
    assert LOSSES[name](_logits_with_errors(target, 0), target).item() == pytest.approx(0.0, abs=1e-3)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_the_loss_grows_with_the_number_of_wrong_pixels(name):
    target = _target()
    losses = [LOSSES[name](_logits_with_errors(target, n), target).item() for n in (0, 8, 32, 128)]
    assert losses == sorted(losses) and losses[-1] > losses[0] + 0.1


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_the_gradient_points_towards_the_target(name):
    target = _target()
    logits = torch.zeros_like(target, requires_grad=True)
    LOSSES[name](logits, target).backward()
    # descending the gradient raises foreground logits and lowers background ones
    assert (logits.grad[target == 1] < 0).all() and (logits.grad[target == 0] > 0).all()


def test_soft_dice_of_an_empty_target_and_empty_prediction_is_zero():
    target = torch.zeros(1, 1, 8, 8)
    assert soft_dice_loss(torch.full_like(target, -20.0), target).item() == pytest.approx(0.0, abs=1e-6)


def test_a_soft_target_is_accepted_by_bce_dice():
    target = torch.full((1, 1, 8, 8), 0.3)
    assert torch.isfinite(LOSSES["bce_dice"](torch.zeros_like(target), target))


def test_resize_target_keeps_the_foreground_share():
    target = _target()
    small = resize_target(target, (4, 4))
    assert small.shape == (2, 1, 4, 4)
    assert torch.allclose(small.mean(dim=(1, 2, 3)), target.mean(dim=(1, 2, 3)))
    assert resize_target(target, (16, 16)) is target


def test_deep_supervision_adds_each_side_output_against_the_target_at_its_size():
    target = _target()
    main = _logits_with_errors(target, 0)
    aux = torch.zeros(2, 1, 4, 4)  # an undecided side output costs something
    loss_fn = LOSSES["bce_dice"]
    alone = deep_supervision({"logits": main}, target, loss_fn)
    both = deep_supervision({"logits": main, "aux_logits": [aux]}, target, loss_fn)
    assert alone.item() == pytest.approx(loss_fn(main, target).item())
    assert both.item() == pytest.approx(alone.item() + loss_fn(aux, resize_target(target, (4, 4))).item())
