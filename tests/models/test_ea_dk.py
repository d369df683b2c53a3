"""EA-DK (models/ea_dk.py): stage attention, kernel updates, deep supervision, variants."""
import pytest
import torch

import models
from models import count_params
from models.ea_dk import ENCODERS, EncoderAttention, GatedKernelUpdate, apply_kernel


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return models.create_model("ea-dk", checkpoint=False)


def test_stage_importance_is_a_distribution_over_the_five_stages(model):
    out = model.eval()(torch.randn(2, 3, 64, 64))
    importance = out["stage_importance"]
    assert importance.shape == (2, 5)
    assert (importance >= 0).all()
    assert torch.allclose(importance.sum(dim=1), torch.ones(2), atol=1e-5)


def test_attention_maps_cover_kernel_init_and_every_refined_stage(model):
    with torch.no_grad():
        out = model.eval()(torch.randn(1, 3, 64, 64))
    assert set(out["attention"]) == {"kernel_init", "stage1", "stage2", "stage3", "stage4"}
    assert out["attention"]["kernel_init"].shape[-2:] == (64, 64)  # upsampled to the input
    assert out["attention"]["stage1"].shape[-2:] == (64, 64)  # the finest prediction
    assert out["attention"]["stage4"].shape[-2:] == (8, 8)  # stride 8
    assert "aux_logits" not in out


def test_training_mode_supervises_all_five_predictions(model):
    out = model.train()(torch.randn(2, 3, 64, 64))
    sizes = [tuple(a.shape[-2:]) for a in out["aux_logits"]]
    assert sizes == [(4, 4), (8, 8), (16, 16), (32, 32)]  # P5..P2; P1 is "logits"
    model.eval()


def test_encoder_attention_rows_are_softmaxes():
    ea = EncoderAttention([8, 16, 32], dim=32, heads=4)
    feats = [torch.randn(3, c, 5, 5) for c in (8, 16, 32)]
    g, attn = ea(feats)
    assert g.shape == (3, 32) and attn.shape == (3, 3, 3)
    assert torch.allclose(attn.sum(dim=-1), torch.ones(3, 3), atol=1e-5)


def test_kernel_update_pools_where_the_previous_prediction_fires():
    update = GatedKernelUpdate(4)
    feat = torch.zeros(1, 4, 8, 8)
    feat[:, :, :4] = 1.0  # top half carries features
    on_top = torch.full((1, 1, 8, 8), -20.0)
    on_top[..., :4, :] = 20.0
    assert torch.allclose(update.masked_pool(feat, on_top), torch.ones(1, 4), atol=1e-4)
    assert torch.allclose(update.masked_pool(feat, -on_top), torch.zeros(1, 4), atol=1e-4)
    new_kernel = update(torch.randn(2, 4), torch.randn(2, 4, 8, 8), torch.randn(2, 1, 4, 4))
    assert new_kernel.shape == (2, 4) and (new_kernel >= 0).all()


def test_apply_kernel_is_a_per_sample_1x1_conv():
    kernel, feat = torch.randn(2, 6), torch.randn(2, 6, 3, 5)
    expected = torch.stack([torch.nn.functional.conv2d(feat[i:i + 1], kernel[i].view(1, 6, 1, 1))[0]
                            for i in range(2)])
    assert torch.allclose(apply_kernel(kernel, feat), expected, atol=1e-5)


def test_predictions_can_be_background(model):
    # <K, D> with a ReLU'd kernel and ReLU'd features is never negative; the signed mask kernel fixes it.
    with torch.no_grad():
        for mk in model.mask_kernels:
            mk.bias.fill_(-5.0)
        out = model.eval()(torch.randn(1, 3, 64, 64))
        for mk in model.mask_kernels:
            mk.bias.zero_()
    assert (out["logits"] < 0).any()


def test_plain_res2net_variant_and_bad_name():
    with torch.device("meta"):
        plain = models.get_entry("ea-dk").builder(backbone="res2net50_26w_4s")
    assert abs(count_params(plain) - models.base_card("ea-dk").params) < 0.05e6
    with pytest.raises(ValueError):
        models.get_entry("ea-dk").builder(backbone="resnet50")


def test_efficientnet_lite0_variant_attends_over_its_five_stages():
    torch.manual_seed(0)
    model = models.create_model("ea-dk", checkpoint=False, variant="efficientnet_lite0")
    assert model.backbone.feature_info.reduction() == [2, 4, 8, 16, 32]  # the five stages EA attends to
    assert model.backbone_name.startswith("tf_efficientnet_lite0") and count_params(model) < 6e6
    out = model.train()(torch.randn(2, 3, 64, 64))
    assert [tuple(a.shape[-2:]) for a in out["aux_logits"]] == [(4, 4), (8, 8), (16, 16), (32, 32)]
    assert out["stage_importance"].shape == (2, 5)


def test_card_lists_every_encoder():
    assert set(models.base_card("ea-dk").variants) == set(ENCODERS)  # the trainer checks names against the card
