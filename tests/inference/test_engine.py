"""Inference engines (napari_polyp/inference/engine.py): ONNX Runtime matches torch, exports are cached
by what they depend on, and anything wrong falls back to torch with one message."""
import sys
import warnings

import numpy as np
import pytest
import torch

import models
from napari_polyp.inference import engine as E
from napari_polyp.inference import Predictor

# Tiny inputs keep exports quick; dino-keys needs a multiple of its 14-px patch.
PARITY_SIZE = {"dino-keys": 56}
VARIANT = {"pefnet": {"variant": "tiny"}}  # ConvNeXt-T: the same graph as B, a 5x smaller export
# Tolerance (float32, same weights, batch of 2): |Δ| <= ATOL + RTOL * |torch|.
ATOL, RTOL = 1e-4, 1e-3


@pytest.fixture(autouse=True)
def _fresh_warnings(monkeypatch):
    monkeypatch.setattr(E, "_warned", set())


def _net(name, seed=0, **kwargs):
    torch.manual_seed(seed)
    return models.create_model(name, checkpoint=False, **VARIANT.get(name, {}), **kwargs).eval()


# every network, and the EfficientNet-Lite0 variants that the shipped PEFNet and EA-DK files use
# (TF "same" padding is computed from the input size: the graph must keep that dynamic)
PARITY_CASES = [(name, {}) for name in models.list_models()] + [
    ("pefnet", {"variant": "efficientnet_lite0"}), ("ea-dk", {"variant": "efficientnet_lite0"})]


@pytest.mark.parametrize("name,kwargs", PARITY_CASES, ids=lambda v: v if isinstance(v, str) else v.get("variant", ""))
def test_onnxruntime_matches_torch(name, kwargs, tmp_path):
    torch.manual_seed(0)
    model = models.create_model(name, checkpoint=False, **{**VARIANT.get(name, {}), **kwargs}).eval()
    size = PARITY_SIZE.get(name, 64)
    runner = E.load_or_export(model, name, size, threads=1, directory=tmp_path)
    assert runner.engine == "onnxruntime" and runner.input_size == size
    assert not any(m.training for m in model.modules())  # exporting leaves the network in eval mode
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))  # batch is dynamic
    with torch.inference_mode():
        expected = model(x)
    got = runner(x)
    assert set(got["attention"]) == set(expected["attention"]) == set(models.base_card(name).attention_maps)
    pairs = [("logits", got["logits"], expected["logits"])] + [
        (k, got["attention"][k], expected["attention"][k]) for k in expected["attention"]]
    for label, ort_out, torch_out in pairs:
        assert ort_out.shape == torch_out.shape, label
        torch.testing.assert_close(ort_out, torch_out.float(), atol=ATOL, rtol=RTOL, msg=f"{name} {label}")


@pytest.mark.parametrize("adapter_start", [None, 6])
def test_dino_keys_with_trained_adapters_exports_its_adapted_graph(tmp_path, adapter_start):
    model = _net("dino-keys", adapter_rank=2, adapter_start=adapter_start)
    with torch.no_grad():
        for p in model.adapters.parameters():
            p.normal_(0, 0.05, generator=torch.Generator().manual_seed(2))
    runner = E.load_or_export(model, "dino-keys", 56, threads=1, directory=tmp_path)
    x = torch.randn(1, 3, 56, 56, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        expected = model(x)
    got = runner(x)
    torch.testing.assert_close(got["logits"], expected["logits"], atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(got["attention"]["cls_attention"], expected["attention"]["cls_attention"],
                               atol=ATOL, rtol=RTOL)


def test_predictor_engines_agree_with_flip_tta():
    image = np.random.default_rng(0).integers(0, 255, (48, 40, 3), dtype=np.uint8)
    model = _net("microaunet")
    by_torch = Predictor("microaunet", model=model, device="cpu", engine="torch", tta=True)
    by_ort = Predictor("microaunet", model=model, device="cpu", engine="onnxruntime", tta=True, threads=1)
    assert (by_torch.engine, by_ort.engine) == ("torch", "onnxruntime") and by_ort.engine_note == ""
    a, b = by_torch.predict(image), by_ort.predict(image)
    np.testing.assert_allclose(b.probability, a.probability, atol=1e-4)
    np.testing.assert_allclose(b.attention["lscab_spatial"], a.attention["lscab_spatial"], atol=1e-4)


def test_auto_is_onnxruntime_on_cpu_and_torch_elsewhere(tmp_path):
    model = _net("microaunet")
    assert E.make_runner(model, "microaunet", 64, "auto", torch.device("cpu"), directory=tmp_path).engine == "onnxruntime"
    assert E.make_runner(model, "microaunet", 64, "torch", torch.device("cpu")).engine == "torch"
    assert E.make_runner(model, "microaunet", 64, "auto", torch.device("meta")).engine == "torch"
    with pytest.raises(ValueError, match="engine must be one of"):
        E.make_runner(model, "microaunet", 64, "tensorrt")
    assert 1 <= E.physical_cores() <= (__import__("os").cpu_count() or 1)


def test_cached_export_is_reused_and_a_new_checkpoint_exports_again(tmp_path, monkeypatch):
    first = tmp_path / "a.pt"
    models.save_checkpoint(_net("microaunet", seed=1), first, architecture="microaunet")
    model = models.create_model("microaunet", checkpoint=first)
    path = E.load_or_export(model, "microaunet", 64, directory=tmp_path / "cache").path

    def no_export(*args, **kwargs):
        raise AssertionError("exported again although a valid cached file is there")

    with monkeypatch.context() as patch:
        patch.setattr(E, "export", no_export)
        again = E.load_or_export(models.create_model("microaunet", checkpoint=first), "microaunet", 64,
                                 directory=tmp_path / "cache")
    assert again.path == path

    second = tmp_path / "b.pt"  # fine-tuned: other weights, so another graph
    models.save_checkpoint(_net("microaunet", seed=2), second, architecture="microaunet")
    other = E.load_or_export(models.create_model("microaunet", checkpoint=second), "microaunet", 64,
                             directory=tmp_path / "cache")
    assert other.path != path and other.path.is_file()
    assert E.export_key(model, "microaunet", 128) != E.export_key(model, "microaunet", 64)  # input size
    assert E.export_key(model, "microaunet", 64, opset=18) != E.export_key(model, "microaunet", 64)
    x = torch.rand(1, 3, 64, 64)
    assert not torch.allclose(other(x)["logits"], again(x)["logits"])


def test_a_corrupt_cached_export_is_exported_again(tmp_path):
    model = _net("microaunet")
    path = E.load_or_export(model, "microaunet", 64, directory=tmp_path).path
    path.write_bytes(b"not an onnx file")
    with pytest.warns(E.EngineFallbackWarning, match="cannot be used"):
        runner = E.load_or_export(model, "microaunet", 64, directory=tmp_path)
    assert runner.path == path and runner(torch.rand(1, 3, 64, 64))["logits"].shape == (1, 1, 64, 64)


def test_an_export_of_other_weights_under_the_same_name_is_refused(tmp_path):
    path = E.load_or_export(_net("microaunet", seed=1), "microaunet", 64, directory=tmp_path).path
    key = E.export_key(_net("microaunet", seed=2), "microaunet", 64)
    with pytest.raises(ValueError, match="metadata does not match"):
        E.open_export(path, key, threads=1)


def _fallback_warnings(record):
    return [w for w in record if issubclass(w.category, E.EngineFallbackWarning)]


def test_without_onnxruntime_torch_runs_with_one_message(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime -> ImportError
    image = np.full((32, 32, 3), 100, np.uint8)
    model = _net("microaunet")
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        predictors = [Predictor("microaunet", model=model, device="cpu", engine=e) for e in ("auto", "onnxruntime")]
        for p in predictors:
            p.predict(image)
    assert [p.engine for p in predictors] == ["torch", "torch"]
    [message] = _fallback_warnings(record)
    assert "onnxruntime cannot be imported" in str(message.message)
    assert "onnxruntime" in predictors[0].engine_note


def test_a_cached_graph_runs_without_the_exporter(monkeypatch):
    model = _net("microaunet")
    assert Predictor("microaunet", model=model, device="cpu", engine="onnxruntime", threads=1).engine == "onnxruntime"
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx -> ImportError
    assert Predictor("microaunet", model=model, device="cpu", engine="onnxruntime", threads=1).engine == "onnxruntime"
    with warnings.catch_warnings(record=True) as record:  # another network has no cached graph: torch
        warnings.simplefilter("always")
        other = Predictor("microaunet", model=_net("microaunet", seed=3), device="cpu", engine="onnxruntime")
    [message] = _fallback_warnings(record)
    assert other.engine == "torch" and "onnx cannot be imported" in str(message.message)


def test_a_failed_export_runs_torch_with_one_message(monkeypatch, tmp_path):
    def broken_export(*args, **kwargs):
        raise RuntimeError("Exporting the operator 'aten::weird' is not supported")

    monkeypatch.setattr(torch.onnx, "export", broken_export)
    image = np.random.default_rng(1).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    model = _net("microaunet")
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        for _ in range(2):
            predictor = Predictor("microaunet", model=model, device="cpu", engine="auto")
    [message] = _fallback_warnings(record)
    assert "export failed" in str(message.message) and "aten::weird" in str(message.message)
    assert predictor.engine == "torch"
    plain = Predictor("microaunet", model=model, device="cpu", engine="torch").predict(image).probability
    np.testing.assert_array_equal(predictor.predict(image).probability, plain)
    assert not list(E.cache_dir().glob("*.onnx*"))  # no half-written file left behind


def test_the_default_engine_comes_from_the_environment(monkeypatch):
    model = _net("microaunet")
    monkeypatch.setenv(E.ENGINE_ENV, "onnxruntime")
    assert Predictor("microaunet", model=model, device="cpu", threads=1).engine == "onnxruntime"
    monkeypatch.setenv(E.ENGINE_ENV, "torch")
    assert Predictor("microaunet", model=model, device="cpu").engine == "torch"
    monkeypatch.delenv(E.ENGINE_ENV)
    assert E.default_engine() == "auto"


def test_bench_names_its_engine(capsys):
    import json

    from napari_polyp import cli

    for engine in ("torch", "onnxruntime"):
        assert cli.main(["bench", "--model", "microaunet", "--size", "64", "--engine", engine, "--threads", "1",
                         "--json"]) == 0
        result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert result["engine"] == engine and result["threads"] == 1 and result["median_ms"] > 0
        assert (result["export_s"] is None) == (engine == "torch")


def test_the_cache_keeps_the_most_recently_used_exports_within_its_budget(tmp_path):
    import os
    import time

    files = []
    for i in range(4):
        path = tmp_path / f"net-{i}.onnx"
        path.write_bytes(b"x" * 100)
        os.utime(path, (time.time() - 100 + i, time.time() - 100 + i))  # 3 is the newest
        files.append(path)
    removed = E.prune_cache(tmp_path, keep=files[0], budget=250)
    assert sorted(removed) == [files[1]] and files[0].exists() and files[2].exists() and files[3].exists()


# -- the cache verifies each graph it serves by the sha256 recorded at export (issue 25) ----------------
def _graph_with_metadata_of(source, target, metadata_from):
    """``source``'s graph saved at ``target`` with the metadata of ``metadata_from``: what anyone can
    do, since the metadata is only text inside the file."""
    import onnx

    graph, donor = onnx.load(str(source)), onnx.load(str(metadata_from))
    del graph.metadata_props[:]
    graph.metadata_props.extend(donor.metadata_props)
    onnx.save(graph, str(target))


def _mismatch_warnings(record):
    return [w for w in _fallback_warnings(record) if "cannot be used" in str(w.message)]


def test_a_tampered_cached_graph_is_exported_again_with_one_message(tmp_path):
    import onnx
    from onnx import numpy_helper

    model = _net("microaunet", seed=1)
    path = E.load_or_export(model, "microaunet", 64, threads=1, directory=tmp_path).path
    graph = onnx.load(str(path))  # same metadata, one weight changed: what the cache trusted before
    weight = graph.graph.initializer[0]
    weight.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weight) * 0 + 7, weight.name))
    onnx.save(graph, str(path))
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        runner = E.load_or_export(model, "microaunet", 64, threads=1, directory=tmp_path)
        again = E.load_or_export(model, "microaunet", 64, threads=1, directory=tmp_path)
    [message] = _mismatch_warnings(record)
    assert str(path) in str(message.message) and "sha256 differs" in str(message.message)
    x = torch.rand(1, 3, 64, 64)
    with torch.inference_mode():
        expected = model(x)["logits"]
    torch.testing.assert_close(runner(x)["logits"], expected, atol=ATOL, rtol=RTOL)
    assert again.path == path


def test_a_foreign_graph_with_copied_metadata_is_refused(tmp_path):
    model, other = _net("microaunet", seed=1), _net("microaunet", seed=2)
    path = E.load_or_export(model, "microaunet", 64, threads=1, directory=tmp_path / "cache").path
    foreign = E.load_or_export(other, "microaunet", 64, threads=1, directory=tmp_path / "elsewhere").path
    _graph_with_metadata_of(foreign, path, metadata_from=path)  # planted: the network's key, other weights
    with pytest.raises(E.CachedGraphMismatch, match="sha256 differs"):
        E.verified_graph(path)
    with pytest.warns(E.EngineFallbackWarning, match="cannot be used"):
        runner = E.load_or_export(model, "microaunet", 64, threads=1, directory=tmp_path / "cache")
    x = torch.rand(1, 3, 64, 64)
    with torch.inference_mode():
        torch.testing.assert_close(runner(x)["logits"], model(x)["logits"], atol=ATOL, rtol=RTOL)


def test_a_graph_the_cache_did_not_export_is_refused(tmp_path):
    model = _net("microaunet", seed=1)
    planted_dir = tmp_path / "planted"
    path = E.load_or_export(model, "microaunet", 64, threads=1, directory=tmp_path / "cache").path
    planted = planted_dir / path.name
    planted_dir.mkdir()
    planted.write_bytes(path.read_bytes())  # a perfect copy, but not in this cache's index
    with pytest.raises(E.CachedGraphMismatch, match="not in the cache's index.json"):
        E.verified_graph(planted)
    with pytest.warns(E.EngineFallbackWarning, match="cannot be used"):
        E.load_or_export(model, "microaunet", 64, threads=1, directory=planted_dir)
    assert E.verified_graph(planted)  # exported again, and recorded


def test_the_torch_free_served_path_verifies_its_graph_too(tmp_path):
    checkpoint = tmp_path / "a.pt"
    models.save_checkpoint(_net("microaunet", seed=1), checkpoint, architecture="microaunet")
    model = models.create_model("microaunet", checkpoint=checkpoint)
    built = E.make_runner(model, "microaunet", 64, "onnxruntime", torch.device("cpu"), threads=1)
    assert built.engine == "onnxruntime"
    served = E.served_runner("microaunet", checkpoint, 64, threads=1)
    assert served is not None and served.path == built.path
    foreign = E.load_or_export(_net("microaunet", seed=5), "microaunet", 64, threads=1, directory=tmp_path / "x").path
    _graph_with_metadata_of(foreign, built.path, metadata_from=built.path)
    assert E.served_runner("microaunet", checkpoint, 64, threads=1) is None  # not run: the build path exports again
    with pytest.warns(E.EngineFallbackWarning, match="sha256 differs"):
        rebuilt = E.make_runner(model, "microaunet", 64, "onnxruntime", torch.device("cpu"), threads=1)
    assert rebuilt.engine == "onnxruntime"
    assert E.served_runner("microaunet", checkpoint, 64, threads=1) is not None
