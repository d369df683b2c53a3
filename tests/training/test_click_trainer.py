"""train-clicks: a short run writes a click-refiner checkpoint and resumes where it stopped."""
import json

import pytest

import models
from napari_polyp.errors import UserError
from napari_polyp.training.click_trainer import ClickTrainConfig, parse_data, train_clicks


def test_a_short_run_writes_a_checkpoint_and_resumes(tiny_data, tmp_path):
    config = ClickTrainConfig(data=(f"polyp={tiny_data}",), out=str(tmp_path / "run"), size=64, batch=3,
                              max_steps=2, val_every=1, init=None, teachers={}, device="cpu", threads=1)
    result = train_clicks(config)
    header = models.peek_header(result["best_checkpoint"])
    assert header["architecture"] == "click-refiner" and header["training"]["size"] == 64
    assert len(header["metrics"]["polyp/empty"]["dice"]) == 6  # 0..5 clicks
    config.max_steps, config.resume = 3, True
    assert train_clicks(config)["steps"] == 3
    assert json.loads(json.dumps(models.peek_header(tmp_path / "run" / "last.pt")["training"]))["steps"] == 3


def test_data_must_name_its_task():
    with pytest.raises(UserError, match="TASK=FOLDER"):
        parse_data(["somewhere"])


def test_freeze_bn_keeps_batch_norm_statistics_in_training_mode():
    import torch.nn as nn

    from napari_polyp.training.click_trainer import train_mode

    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU())
    train_mode(net, True, freeze_bn=True)
    assert net.training and net[0].training and not net[1].training
    train_mode(net, True, freeze_bn=False)
    assert net[1].training
