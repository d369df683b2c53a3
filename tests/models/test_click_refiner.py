"""The click refiner network: its input, its start (it keeps the mask), its ONNX graph."""
import numpy as np
import pytest
import torch

import models
from models.click_refiner import IN_CHANNELS, MASK_WEIGHT_START
from napari_polyp.inference import engine as E


def _refiner(seed=0):
    torch.manual_seed(seed)
    return models.create_model("click-refiner", checkpoint=False).eval()


def test_it_is_registered_apart_from_the_segmentation_networks():
    assert "click-refiner" not in models.list_models()
    assert models.list_models(models.CLICK_REFINER) == ["click-refiner"]
    assert models.base_card("click-refiner").kind == models.CLICK_REFINER


def test_params_match_the_card_and_any_input_size_works():
    model = _refiner()
    assert sum(p.numel() for p in model.parameters()) == models.base_card("click-refiner").params
    for hw in ((64, 64), (75, 53)):
        assert model(torch.randn(1, IN_CHANNELS, *hw))["logits"].shape == (1, 1, *hw)


def test_at_its_start_it_keeps_the_current_mask():
    """The click maps enter through a zero-initialised convolution and the mask is added to
    the logits: an untrained refiner leans towards the mask it is given."""
    model = _refiner()
    with torch.inference_mode():
        assert float(model.map_stem.weight.abs().sum()) == 0.0
        assert float(model.mask_weight) == MASK_WEIGHT_START
        x = torch.zeros(1, IN_CHANNELS, 64, 64)
        x[:, 3, 16:48, 16:48] = 1.0
        logits = model(x)["logits"][0, 0]
    assert float(logits[32, 32] - logits[2, 2]) == pytest.approx(2 * MASK_WEIGHT_START, abs=2.0)


def test_onnxruntime_matches_torch(tmp_path):
    model = _refiner(seed=3)
    runner = E.make_runner(model, "click-refiner", 64, "onnxruntime", torch.device("cpu"), threads=1,
                           directory=tmp_path)
    assert runner.engine == "onnxruntime" and runner.input_size == 64
    x = torch.from_numpy(np.random.default_rng(0).normal(size=(2, IN_CHANNELS, 64, 64)).astype(np.float32))
    with torch.inference_mode():
        expected = model(x)["logits"]
    torch.testing.assert_close(runner(x)["logits"], expected, rtol=1e-3, atol=1e-4)
