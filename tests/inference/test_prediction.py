"""A network served from its cached ONNX graph without torch (napari_polyp/inference/prediction.py)."""
import dataclasses
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import models
from models.checkpoint import save_checkpoint
from napari_polyp.inference import Predictor, preprocess
from napari_polyp.inference.prediction import TTA_FLIPS, network_input, served_predictor, tta_fits


@pytest.mark.parametrize("name", ["microaunet", "eam-net"])  # min-max and ImageNet normalisation
def test_network_input_is_preprocess_in_numpy(name):
    card = models.base_card(name)
    images = np.random.default_rng(0).integers(0, 256, (2, 150, 170, 3), dtype=np.uint8)
    np.testing.assert_allclose(network_input(images, card), preprocess(images, card).numpy(), atol=1e-3, rtol=0)


def test_tta_is_on_by_default_only_where_all_views_fit_the_budget():
    card = models.base_card("microaunet")
    budget = models.MAX_DEFAULT_CPU_MS
    assert tta_fits(dataclasses.replace(card, cpu_ms=budget / len(TTA_FLIPS)))
    assert not tta_fits(dataclasses.replace(card, cpu_ms=budget / len(TTA_FLIPS) + 1))
    assert not tta_fits(dataclasses.replace(card, cpu_ms=100.0), max_cpu_ms=250.0)


@pytest.fixture
def trained_microaunet(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "micro.pt"
    save_checkpoint(models.create_model("microaunet", checkpoint=False), path, architecture="microaunet",
                    metrics={"dice": 0.5})
    return path


def test_served_predictions_match_the_torch_network(trained_microaunet):
    assert served_predictor("microaunet", checkpoint=trained_microaunet) is None  # nothing exported yet
    image = np.random.default_rng(1).integers(0, 256, (90, 120, 3), dtype=np.uint8)
    for tta in (False, True):
        built = Predictor("microaunet", checkpoint=trained_microaunet, device="cpu", engine="onnxruntime", threads=1,
                          tta=tta)
        served = served_predictor("microaunet", checkpoint=trained_microaunet, threads=1, tta=tta)
        assert served is not None and served.engine == "onnxruntime" and served.trained
        expected, got = built.predict(image), served.predict(image)
        np.testing.assert_allclose(got.probability, expected.probability, atol=1e-3)
        assert set(got.attention) == set(expected.attention) == {"lscab_spatial"}
        np.testing.assert_allclose(got.attention["lscab_spatial"], expected.attention["lscab_spatial"], atol=1e-3)
        assert got.checkpoint_sha256 == expected.checkpoint_sha256
    assert served.predict(image, attention=False).attention == {}


def test_another_checkpoint_file_is_not_served(trained_microaunet):
    Predictor("microaunet", checkpoint=trained_microaunet, device="cpu", engine="onnxruntime", threads=1)
    torch.manual_seed(1)
    save_checkpoint(models.create_model("microaunet", checkpoint=False), trained_microaunet, architecture="microaunet")
    assert served_predictor("microaunet", checkpoint=trained_microaunet) is None


def test_serving_imports_no_torch(trained_microaunet):
    Predictor("microaunet", checkpoint=trained_microaunet, device="cpu", engine="onnxruntime", threads=1)
    code = ("import sys, numpy as np\n"
            "from napari_polyp.inference.prediction import served_predictor\n"
            f"p = served_predictor('microaunet', checkpoint={str(trained_microaunet)!r}, threads=1)\n"
            "mask = p.predict(np.full((40, 50, 3), 120, np.uint8)).mask()\n"
            "print(mask.shape, 'torch' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ))
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["(40,", "50)", "False"]


def test_only_a_trained_network_on_the_cpu_in_onnxruntime_is_served(trained_microaunet, monkeypatch):
    from napari_polyp.inference import engine
    from napari_polyp.inference.prediction import ServedPredictor, served_if_on_cpu

    path = str(trained_microaunet)
    assert served_if_on_cpu("microaunet", path, "cpu", "auto", 1) is None  # nothing exported yet
    Predictor("microaunet", checkpoint=path, device="cpu", engine="auto", threads=1)
    assert isinstance(served_if_on_cpu("microaunet", path, "cpu", "auto", 1), ServedPredictor)
    assert served_if_on_cpu("microaunet", path, "cpu", "torch", 1) is None
    assert served_if_on_cpu("microaunet", path, "cuda", "auto", 1) is None
    assert served_if_on_cpu("microaunet", False, "cpu", "auto", 1) is None  # random weights
    monkeypatch.setattr(engine.os.path, "exists", lambda p: p == "/dev/nvidiactl")  # a machine with a GPU
    assert served_if_on_cpu("microaunet", path, "auto", "auto", 1) is None


def test_the_widgets_get_the_served_network(trained_microaunet):
    from napari_polyp.inference.prediction import ServedPredictor
    from napari_polyp.inference.predictors import default_predictor_factory

    first = default_predictor_factory("microaunet", str(trained_microaunet), "cpu", "auto", 1)
    assert isinstance(first, Predictor)  # built, and its graph exported
    again = default_predictor_factory("microaunet", str(trained_microaunet), "cpu", "auto", 1)
    assert isinstance(again, ServedPredictor)
