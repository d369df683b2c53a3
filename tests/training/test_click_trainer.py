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


def test_no_click_batches_train_and_are_validated(tiny_data, tmp_path):
    config = ClickTrainConfig(data=(f"polyp={tiny_data}",), out=str(tmp_path / "run"), size=64, batch=3,
                              max_steps=2, val_every=1, init=None, teachers={}, device="cpu", threads=1,
                              no_click_share=1.0)
    header = models.peek_header(train_clicks(config)["best_checkpoint"])
    scores = header["metrics"]["polyp/no-click"]
    assert 0 <= scores["prior"] <= 1 and 0 <= scores["refined"] <= 1 and scores["n"] >= 1
    assert header["training"]["recipe"]["no_click_share"] == 1.0


def test_a_no_click_batch_reads_empty_click_discs(tiny_data):
    import torch

    from napari_polyp.training.click_trainer import Simulator, load_sets

    config = ClickTrainConfig(data=(f"polyp={tiny_data}",), out="", size=64, batch=3, init=None, teachers={},
                              device="cpu", no_click_share=1.0)
    sim = Simulator(config, load_sets(config, torch.device("cpu")), {}, torch.device("cpu"))
    chosen, x, y = sim.make_batch(0)
    inputs = sim.simulate(None, x, y, sim.start_masks(chosen.task, x, y), amp=False)
    assert inputs.shape[1] == 6 and float(inputs[:, 4:].abs().sum()) == 0  # no click disc
    assert float(inputs[:, 3].sum()) > 0  # the deformed mask is the prior


def test_band_starts_are_near_the_truth_and_recorded_in_the_recipe(tiny_data, tmp_path):
    import torch

    from napari_polyp.training.click_simulation import dice
    from napari_polyp.training.click_trainer import Simulator, load_sets

    config = ClickTrainConfig(data=(f"polyp={tiny_data}",), out=str(tmp_path / "run"), size=64, batch=4,
                              max_steps=1, val_every=1, init=None, teachers={}, device="cpu", threads=1,
                              empty_share=0.0, teacher_share=0.0, band_share=1.0, binary_share=0.0)
    sim = Simulator(config, load_sets(config, torch.device("cpu")), {}, torch.device("cpu"))
    chosen, x, y = sim.make_batch(0)
    start = sim.start_masks(chosen.task, x, y)
    present = y.flatten(1).sum(1) > 0
    assert float(dice(start[present], y[present]).min()) > 0.7  # perturb_masks' starts go far lower
    header = models.peek_header(train_clicks(config)["best_checkpoint"])
    assert header["training"]["recipe"]["band_share"] == 1.0
