"""Counting parameters and FLOPs (shared by the cards' figures, bench and tests)."""
from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

# torch's counter knows the CUDA attention kernels but not the CPU one, so ViT
# attention would go uncounted on CPU; count it with torch's own SDPA formula.
def _cpu_sdpa_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


_EXTRA_FORMULAS = {}
if hasattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu"):
    _EXTRA_FORMULAS[torch.ops.aten._scaled_dot_product_flash_attention_for_cpu] = _cpu_sdpa_flops


def count_params(model: torch.nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


@torch.inference_mode()
def count_flops(model: torch.nn.Module, size: int, batch: int = 1) -> int:
    """Forward FLOPs (a multiply-add counts 2) at ``size``×``size``, eval mode.

    torch.utils.flop_counter counts matmuls and convolutions (the bulk of the
    work); element-wise ops are not counted, as in fvcore and the papers.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    x = torch.randn(batch, getattr(model, "in_channels", 3), size, size, device=device)  # the refiner reads 6
    counter = FlopCounterMode(display=False, custom_mapping=_EXTRA_FORMULAS)
    with counter:
        model(x)
    model.train(was_training)
    return int(counter.get_total_flops())
