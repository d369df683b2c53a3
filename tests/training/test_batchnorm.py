"""Batch-norm layers held in eval mode while the rest trains (training/batchnorm.py)."""
import torch
import torch.nn as nn

from napari_polyp.training.batchnorm import freeze_batchnorm, train_mode


def _net():
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4))


def test_train_mode_with_freeze_bn_leaves_only_the_batch_norm_layers_in_eval_mode():
    net = _net()
    train_mode(net, True, freeze_bn=True)
    assert net.training and net[0].training and not net[1].training and not net[4].training
    train_mode(net, True, freeze_bn=False)
    assert net[1].training and net[4].training
    train_mode(net, False, freeze_bn=True)
    assert not net.training and not net[0].training


def test_a_frozen_network_keeps_its_statistics_through_a_forward_pass_and_still_trains():
    net = _net()
    net.train()
    assert freeze_batchnorm(net) == 2
    before = net[1].running_mean.clone()
    net(torch.randn(2, 3, 8, 8) * 5 + 3).mean().backward()
    assert torch.equal(net[1].running_mean, before)
    assert net[1].weight.grad is not None  # scale and shift still learn
